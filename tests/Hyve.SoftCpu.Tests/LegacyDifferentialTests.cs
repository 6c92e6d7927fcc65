// The instructions 64-bit mode dropped (and ENTER with its nesting levels, and LEAVE, on 32-bit
// stacks), against the host CPU: the host runs them as 32-bit code
// in its compatibility-mode segment (NativeCpu.Run32), the software CPU in 32-bit protected mode
// at CPL 3 with the same flat selectors, from the same registers, flags and data. Every register
// (ESP included), the flags the SDM defines and the data area must agree.
using System;
using System.Collections.Generic;
using Hyve.TestSupport;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Verification;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.SoftCpu.Tests;

public sealed class LegacyDifferentialTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_SOFTCPU_CASES", 20_000);
    private static readonly int Seed = TestEnvironment.Int("HYVE_SEED", 20261122);

    private const ushort UserData = 0x2B;
    private const ulong Code = 0x10000;
    private const ulong Gdt = 0x5000;

    [Fact]
    public void LegacyInstructionsMatchTheHostCpuInCompatibilityMode()
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        using var native = new NativeCpu();
        using var memory = new GuestMemory();
        memory.AddRam(0, 0x20_0000);
        memory.AddRam(native.DataAddress, (ulong)native.Data.Length);
        var vcpu = new VmxVcpu(new SoftProcessor(memory, new VmClock()), 0xF000_0000) { Memory = memory };
        // The host's selectors: 0x23 32-bit code and 0x2B data, both DPL 3.
        memory.WriteRam(Gdt + 0x20, BitConverter.GetBytes(0x00CF_FB00_0000_FFFFUL));
        memory.WriteRam(Gdt + 0x28, BitConverter.GetBytes(0x00CF_F300_0000_FFFFUL));
        var rng = new Random(Seed + 32);
        var counts = new Dictionary<Mnemonic, int>();
        int failures = 0;
        string first = "";
        byte[] before = new byte[native.Data.Length], soft = new byte[native.Data.Length];
        for (int k = 0; k < Cases; k++)
        {
            byte[] insn = Generate(rng, native, out int espOffset);
            Assert.Equal(DecodeStatus.Ok, Decoder.Decode(insn, Bitness.Bits32, out Instruction d));
            counts[d.Mnemonic] = counts.GetValueOrDefault(d.Mnemonic) + 1;

            rng.NextBytes(before);
            // Far pointers in the data area name the flat data selector (the only one the host
            // lets a load take without faulting).
            for (int at = 4; at + 2 <= before.Length; at += 8)
                BitConverter.TryWriteBytes(before.AsSpan(at), UserData);
            ulong boundIndex = d.Mnemonic == Mnemonic.Bound
                ? InBounds(rng, before, (int)(BitConverter.ToUInt32(insn, insn.Length - 4) - (uint)native.DataAddress), insn[0] == 0x66)
                : 0;
            var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & (Rflags.Status | Rflags.DF)) };
            for (int r = 0; r < 8; r++)
                st.In[r] = rng.Next(4) == 0 ? (uint)rng.Next(-2, 3) : (uint)rng.Next() ^ ((uint)rng.Next(4) << 30);
            st.In[4] = native.DataAddress + (ulong)espOffset;
            if (d.Mnemonic == Mnemonic.Bound)
                st.In[RegisterInfo.GprNumber(d.GetRegister(0)).N] = boundIndex;
            if (d.Mnemonic is Mnemonic.Enter or Mnemonic.Leave)
                st.In[5] = native.DataAddress + 0x200 + 4 * (ulong)rng.Next(0x300); // frames inside the data area

            string? diff = RunBoth(vcpu, memory, native, insn, ref st, before, soft);
            ulong defined = Defined(d.Mnemonic);
            if (diff == null && (vcpu.Rflags & defined) != (st.FlagsOut & defined))
                diff = $"flags: cpu {st.FlagsOut & defined:X} soft {vcpu.Rflags & defined:X}";
            if (diff != null && failures++ == 0)
                first = $"{Convert.ToHexString(insn)} ({Formatter.Format(in d, Code)}): {diff}";
        }
        output.WriteLine($"{Cases} cases, seed {Seed + 32} (HYVE_SEED + 32): {failures} failed {first}");
        output.WriteLine(string.Join(", ", counts));
        Assert.True(counts.Count == 18, $"{counts.Count} of the 18 mnemonics were generated");
        Assert.True(failures == 0, $"{failures} failed; first: {first}");
    }

    // One legacy instruction with random operands; memory operands are absolute addresses in the
    // data area, and ESP points into its middle (so PUSHA and POPA stay inside it).
    private static byte[] Generate(Random rng, NativeCpu native, out int espOffset)
    {
        espOffset = 0xF00 + 4 * rng.Next(64);
        uint Mem(int at) => (uint)native.DataAddress + (uint)at;
        int reg = rng.Next(8);
        bool o16 = rng.Next(2) == 0;
        var b = new List<byte>();
        switch (rng.Next(14))
        {
            case 12:                                                              // enter size, level (any byte: 0-31 is used)
                if (o16) b.Add(0x66);
                b.AddRange([0xC8, (byte)rng.Next(256), (byte)rng.Next(2), (byte)rng.Next(256)]);
                break;
            case 13: if (o16) b.Add(0x66); b.Add(0xC9); break;                   // leave
            case 0: if (o16) b.Add(0x66); b.Add(0x60); break;                     // pusha(d)
            case 1: if (o16) b.Add(0x66); b.Add(0x61); break;                     // popa(d)
            case 2: b.Add(rng.Next(2) == 0 ? (byte)0x27 : (byte)0x2F); break;     // daa, das
            case 3: b.Add(rng.Next(2) == 0 ? (byte)0x37 : (byte)0x3F); break;     // aaa, aas
            case 4: b.AddRange([0xD4, (byte)(rng.Next(4) == 0 ? 10 : rng.Next(1, 256))]); break; // aam (never 0: #DE)
            case 5: b.AddRange([0xD5, (byte)(rng.Next(4) == 0 ? 10 : rng.Next(256))]); break;     // aad
            case 6: b.Add(0xD6); break;                                           // salc
            case 7:                                                               // arpl r/m16, r16
                {
                    int rm = rng.Next(8);
                    if (rm == 4)
                        rm = 0;
                    if (rng.Next(2) == 0)
                        b.AddRange([0x63, (byte)(0xC0 | (reg << 3) | rm)]);
                    else
                        b.AddRange([0x63, (byte)(0x05 | (reg << 3)), .. BitConverter.GetBytes(Mem(0x200 + 2 * rng.Next(64)))]);
                    break;
                }
            case 8:                                                               // bound r, m (in bounds)
                if (o16) b.Add(0x66);
                b.AddRange([0x62, (byte)(0x05 | ((reg == 4 ? 0 : reg) << 3)), .. BitConverter.GetBytes(Mem(0x400 + 8 * rng.Next(32)))]);
                break;
            default:                                                              // lds, les, lss, with 32- or 16-bit offsets
                {
                    if (o16) b.Add(0x66);
                    byte[] op = rng.Next(3) switch { 0 => [0xC5], 1 => [0xC4], _ => [0x0F, 0xB2] };
                    b.AddRange(op);
                    // At an 8-byte slot: offset at +0 (or +2 for 16-bit), selector 0x2B at +4.
                    int slot = 0x600 + 8 * rng.Next(64);
                    b.Add((byte)(0x05 | (reg << 3)));
                    b.AddRange(BitConverter.GetBytes(Mem(o16 ? slot + 2 : slot)));
                    break;
                }
        }
        return [.. b];
    }

    // BOUND's bounds, at offset at of the data area, around a random index it returns, so the
    // host does not fault (#BR is a signal there; the out-of-bounds case is the SDM's, below).
    private static ulong InBounds(Random rng, byte[] data, int at, bool o16)
    {
        long index = o16 ? (short)rng.Next() : rng.Next(int.MinValue, int.MaxValue);
        long lower = Math.Max(index - rng.Next(0, 1000), o16 ? short.MinValue : int.MinValue);
        long upper = Math.Min(index + rng.Next(0, 1000), o16 ? short.MaxValue : int.MaxValue);
        if (o16)
        {
            BitConverter.TryWriteBytes(data.AsSpan(at), (short)lower);
            BitConverter.TryWriteBytes(data.AsSpan(at + 2), (short)upper);
            return (ulong)index & 0xFFFF;
        }
        BitConverter.TryWriteBytes(data.AsSpan(at), (int)lower);
        BitConverter.TryWriteBytes(data.AsSpan(at + 4), (int)upper);
        return (ulong)index & 0xFFFF_FFFF;
    }

    private static ulong Defined(Mnemonic m) => m switch
    {
        Mnemonic.Daa or Mnemonic.Das => Rflags.Status & ~Rflags.OF,
        Mnemonic.Aaa or Mnemonic.Aas => Rflags.CF | Rflags.AF,
        Mnemonic.Aam or Mnemonic.Aad => Rflags.SF | Rflags.ZF | Rflags.PF,
        _ => Rflags.Status | Rflags.DF,
    };

    // The instruction, then OUT 0x80, AL (IOPL 3 lets CPL 3 code out) on the software CPU; the
    // instruction alone on the host. Registers, then the data area, are compared.
    private static string? RunBoth(VmxVcpu vcpu, GuestMemory memory, NativeCpu native, byte[] insn, ref FullState st, byte[] before, byte[] soft)
    {
        memory.WriteRam(Code, [.. insn, 0xE6, 0x80]);
        HostCpuHarness.LoadData(memory, native, before);
        vcpu.Gdtr = new TableRegister(Gdt, 0x2F);
        vcpu.Idtr = new TableRegister(0, 0);
        vcpu.SetSegment(Register.CS, new Segment(0x23, 0, 0xFFFF_FFFF, 0xC0FB));
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            vcpu.SetSegment(s, new Segment(UserData, 0, 0xFFFF_FFFF, 0xC0F3));
        vcpu.Control = new ControlState(PagingState.Cr0PE | 0x10, 0, 0, PagingState.Cr4OSFXSR, 0);
        for (int r = 0; r < 8; r++)
            vcpu.SetGpr(r, st.In[r]);
        vcpu.Rip = Code;
        vcpu.Rflags = st.FlagsIn | (3UL << 12);
        BackendExit exit = vcpu.Run();
        native.Run32(insn, ref st);
        if (exit.Kind != BackendExitKind.Io)
            return $"exit {exit.Kind} ({exit.Reason}) at 0x{vcpu.Rip:X}";
        for (int r = 0; r < 8; r++)
        {
            if ((uint)vcpu.GetGpr(r) != st.Out[r])
                return $"r{r}: cpu {st.Out[r]:X} soft {(uint)vcpu.GetGpr(r):X}";
        }
        return HostCpuHarness.DataDifference(memory, native, soft);
    }
}
