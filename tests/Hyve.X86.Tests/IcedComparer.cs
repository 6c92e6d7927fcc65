// Compares one Hyve decode with Iced's decode of the same bytes, field by field.
using System;
using System.Collections.Generic;
using Hyve.X86.Decoding;
using Iced.Intel;
using HDecoder = Hyve.X86.Decoding.Decoder;
using HInstruction = Hyve.X86.Decoding.Instruction;
using HRegister = Hyve.X86.Register;
using IRegister = Iced.Intel.Register;

namespace Hyve.X86.Tests;

/// <summary>Differential comparison against Iced (the reference decoder).</summary>
public static class IcedComparer
{
    private static readonly IRegister[] RegMap = BuildRegMap();

    private static IRegister[] BuildRegMap()
    {
        var map = new IRegister[(int)HRegister.YMM15 + 1];
        for (int i = 1; i < map.Length; i++)
            map[i] = Enum.Parse<IRegister>(((HRegister)i).ToString());
        return map;
    }

    /// <summary>Iced register for ours.</summary>
    public static IRegister ToIced(HRegister r) => RegMap[(int)r];

    /// <summary>Decodes <paramref name="bytes"/> with both decoders; returns null when they agree, else a description.</summary>
    public static string? Compare(ReadOnlySpan<byte> bytes, int bitness, ulong ip, out Iced.Intel.Instruction iced, out HInstruction ours)
    {
        var reader = new ByteArrayCodeReader(bytes.ToArray());
        var dec = Iced.Intel.Decoder.Create(bitness, reader, ip);
        dec.Decode(out iced);
        HDecoder.Decode(bytes, (Bitness)bitness, out ours);
        return Diff(in iced, dec.LastError, in ours, bytes, bitness, ip);
    }

    // The first byte after legacy prefixes and REX.
    private static int OpcodeByte(ReadOnlySpan<byte> bytes, int bitness)
    {
        foreach (byte b in bytes)
        {
            bool prefix = b is 0x26 or 0x2E or 0x36 or 0x3E or 0x64 or 0x65 or 0x66 or 0x67 or 0xF0 or 0xF2 or 0xF3
                || (bitness == 64 && (b & 0xF0) == 0x40);
            if (!prefix)
                return b;
        }
        return -1;
    }

    /// <summary>Field differences between two decodes of <paramref name="bytes"/> at <paramref name="ip"/>, or null.</summary>
    public static string? Diff(in Iced.Intel.Instruction iced, DecoderError icedError, in HInstruction ours, ReadOnlySpan<byte> bytes, int bitness, ulong ip)
    {
        bool icedValid = iced.Code != Code.INVALID;
        if (!icedValid)
        {
            // Iced may report NoMoreBytes for an encoding that is invalid before its end (0F 01 F8 outside
            // 64-bit mode); Hyve's NoMoreBytes must always be Iced's.
            if (ours.Status == DecodeStatus.NoMoreBytes)
                return icedError == DecoderError.NoMoreBytes ? null : $"NoMoreBytes, Iced says {icedError}";
            if (ours.Status is DecodeStatus.Invalid or DecodeStatus.TooLong)
                return null;
            // Hyve does not model which VEX/EVEX/XOP encodings are reserved; it reports them all Unsupported.
            if (ours.Status == DecodeStatus.Unsupported && OpcodeByte(bytes, bitness) is 0xC4 or 0xC5 or 0x62 or 0x8F)
                return null;
            return $"valid-vs-invalid ours={ours.Status}/{ours.Mnemonic}";
        }
        // EVEX, XOP and the VEX forms outside Hyve's tables are Unsupported with Iced's length; the VEX
        // forms in its tables are compared like any other instruction.
        if (iced.Encoding is EncodingKind.VEX or EncodingKind.EVEX or EncodingKind.XOP or EncodingKind.MVEX
            && ours.Status == DecodeStatus.Unsupported)
        {
            return ours.Length == iced.Length ? null : $"vex-length {ours.Length}!={iced.Length}";
        }
        if (iced.Encoding is EncodingKind.EVEX or EncodingKind.XOP or EncodingKind.MVEX)
            return $"evex-not-unsupported ours={ours.Status}";
        if (ours.Status != DecodeStatus.Ok)
            return $"invalid-vs-valid ({ours.Status})";
        if (ours.Length != iced.Length)
            return $"length {ours.Length}!={iced.Length}";
        if (ours.Mnemonic.ToString() != iced.Mnemonic.ToString())
            return $"mnemonic {ours.Mnemonic}";
        if (iced.OpCode.OperandSize != 0 && iced.OpCode.OperandSize != ours.OperandSize * 8)
            return $"opsize {ours.OperandSize * 8}!={iced.OpCode.OperandSize}";
        if (iced.OpCode.AddressSize != 0 && iced.OpCode.AddressSize != ours.AddressSize * 8)
            return $"adsize {ours.AddressSize * 8}!={iced.OpCode.AddressSize}";
        if (ours.OperandCount != iced.OpCount)
            return $"opcount {ours.OperandCount}!={iced.OpCount}";
        bool hasMem = false;
        for (int i = 0; i < iced.OpCount; i++)
        {
            OpKind ik = iced.GetOpKind(i);
            OperandKind ok = ours.GetOperandKind(i);
            if (ok.ToString() != ik.ToString())
                return $"op{i}-kind {ok}!={ik}";
            switch (ik)
            {
                case OpKind.Register:
                    if (ToIced(ours.GetRegister(i)) != iced.GetOpRegister(i))
                        return $"op{i}-reg {ours.GetRegister(i)}!={iced.GetOpRegister(i)}";
                    break;
                case OpKind.Immediate8:
                case OpKind.Immediate16:
                case OpKind.Immediate32:
                case OpKind.Immediate64:
                case OpKind.Immediate8to16:
                case OpKind.Immediate8to32:
                case OpKind.Immediate8to64:
                case OpKind.Immediate32to64:
                    {
                        ulong mask = ik switch
                        {
                            OpKind.Immediate8 => 0xFF,
                            OpKind.Immediate16 or OpKind.Immediate8to16 => 0xFFFF,
                            OpKind.Immediate32 or OpKind.Immediate8to32 => 0xFFFF_FFFF,
                            _ => ulong.MaxValue,
                        };
                        if ((ours.Immediate & mask) != (iced.GetImmediate(i) & mask))
                            return $"op{i}-imm {ours.Immediate:X}!={iced.GetImmediate(i):X}";
                        break;
                    }
                case OpKind.Immediate8_2nd:
                    if (ours.Immediate2 != iced.Immediate8_2nd)
                        return $"op{i}-imm2";
                    break;
                case OpKind.NearBranch16:
                case OpKind.NearBranch32:
                case OpKind.NearBranch64:
                    if (ours.NearBranchTarget(ip) != iced.NearBranchTarget)
                        return $"op{i}-target {ours.NearBranchTarget(ip):X}!={iced.NearBranchTarget:X}";
                    break;
                case OpKind.FarBranch16:
                case OpKind.FarBranch32:
                    if (ours.Immediate != (ik == OpKind.FarBranch16 ? iced.FarBranch16 : iced.FarBranch32) || ours.Immediate2 != iced.FarBranchSelector)
                        return $"op{i}-far";
                    break;
                case OpKind.Memory:
                case OpKind.MemorySegSI:
                case OpKind.MemorySegESI:
                case OpKind.MemorySegRSI:
                case OpKind.MemorySegDI:
                case OpKind.MemorySegEDI:
                case OpKind.MemorySegRDI:
                case OpKind.MemoryESDI:
                case OpKind.MemoryESEDI:
                case OpKind.MemoryESRDI:
                    hasMem = true;
                    break;
            }
        }
        if (hasMem)
        {
            bool explicitMem = false;
            bool segMem = false;
            for (int i = 0; i < iced.OpCount; i++)
            {
                explicitMem |= iced.GetOpKind(i) == OpKind.Memory;
                segMem |= iced.GetOpKind(i) is OpKind.Memory or OpKind.MemorySegSI or OpKind.MemorySegESI or OpKind.MemorySegRSI
                    or OpKind.MemorySegDI or OpKind.MemorySegEDI or OpKind.MemorySegRDI;
            }
            if (ours.MemorySize != iced.MemorySize.GetSize())
                return $"memsize {ours.MemorySize}!={iced.MemorySize.GetSize()} ({iced.MemorySize})";
            IRegister expectedSeg = iced.MemorySegment;
            if (bitness == 64 && iced.SegmentPrefix is IRegister.ES or IRegister.CS or IRegister.SS or IRegister.DS)
            {
                // Iced reports the ignored prefix; the processor uses the default segment.
                expectedSeg = explicitMem && iced.MemoryBase is IRegister.RSP or IRegister.RBP or IRegister.ESP or IRegister.EBP
                    ? IRegister.SS : IRegister.DS;
            }
            if (segMem && ToIced(ours.MemorySegment) != expectedSeg)
                return $"memseg {ours.MemorySegment}!={expectedSeg}";
            if (explicitMem)
            {
                if (ToIced(ours.MemoryBase) != iced.MemoryBase)
                    return $"base {ours.MemoryBase}!={iced.MemoryBase}";
                if (ToIced(ours.MemoryIndex) != iced.MemoryIndex)
                    return $"index {ours.MemoryIndex}!={iced.MemoryIndex}";
                if (ours.MemoryIndex != HRegister.None && ours.MemoryScale != iced.MemoryIndexScale)
                    return $"scale {ours.MemoryScale}!={iced.MemoryIndexScale}";
                if (ours.IsIpRelative)
                {
                    if (ours.IpRelativeTarget(ip) != iced.MemoryDisplacement64)
                        return "rip-target";
                }
                else
                {
                    ulong mask = ours.AddressSize == 2 ? 0xFFFF : ours.AddressSize == 4 ? 0xFFFF_FFFF : ulong.MaxValue;
                    if (((ulong)ours.Displacement & mask) != (iced.MemoryDisplacement64 & mask))
                        return $"disp {ours.Displacement:X}!={iced.MemoryDisplacement64:X}";
                    // Iced reports a disp32 under 64-bit addressing as 8 bytes (its sign-extended width).
                    int dsize = ours.AddressSize == 8 && ours.DisplacementSize == 4 ? 8 : ours.DisplacementSize;
                    if (dsize != iced.MemoryDisplSize)
                        return $"dispsize {ours.DisplacementSize}!={iced.MemoryDisplSize}";
                }
            }
        }
        if (ToIced(ours.SegmentPrefix) != iced.SegmentPrefix)
            return $"segprefix {ours.SegmentPrefix}!={iced.SegmentPrefix}";
        if (((ours.Prefixes & Prefixes.Lock) != 0) != iced.HasLockPrefix)
            return "lock-prefix";
        if (((ours.Prefixes & Prefixes.Rep) != 0) != iced.HasRepPrefix)
            return $"rep-prefix {ours.Prefixes}";
        if (((ours.Prefixes & Prefixes.Repne) != 0) != iced.HasRepnePrefix)
            return $"repne-prefix {ours.Prefixes}";
        return null;
    }

    /// <summary>Collects mismatches by category with one example each, for readable failure messages.</summary>
    public sealed class Report
    {
        private readonly Dictionary<string, (int Count, string Example)> _groups = new(StringComparer.Ordinal);

        /// <summary>Total mismatches.</summary>
        public long Mismatches { get; private set; }

        /// <summary>Total compared.</summary>
        public long Compared { get; set; }

        /// <summary>Records one mismatch.</summary>
        public void Add(int bitness, ReadOnlySpan<byte> bytes, in Iced.Intel.Instruction iced, in HInstruction ours, string diff)
        {
            Mismatches++;
            string key = $"{bitness} {iced.Code} | {Head(diff)}";
            string hex = Convert.ToHexString(bytes[..Math.Max(1, Math.Min(bytes.Length, Math.Max(iced.Length, (int)ours.Length)))]);
            _groups[key] = _groups.TryGetValue(key, out var g) ? (g.Count + 1, g.Example) : (1, $"{hex} ours={ours.Mnemonic}/{ours.Opcode} {diff}");
        }

        private static string Head(string diff)
        {
            int sp = diff.IndexOf(' ', StringComparison.Ordinal);
            return sp < 0 ? diff : diff[..sp];
        }

        /// <summary>The largest groups, one per line.</summary>
        public string Summary(int max = 60)
        {
            var list = new List<KeyValuePair<string, (int Count, string Example)>>(_groups);
            list.Sort((a, b) => b.Value.Count.CompareTo(a.Value.Count));
            var sb = new System.Text.StringBuilder();
            sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"{Mismatches} mismatches in {Compared} compared, {list.Count} groups\n");
            for (int i = 0; i < Math.Min(max, list.Count); i++)
                sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"{list[i].Value.Count,8}  {list[i].Key}  e.g. {list[i].Value.Example}\n");
            return sb.ToString();
        }
    }
}
