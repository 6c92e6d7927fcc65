// The instruction-set coverage table (docs/isa.md), measured rather than written: every
// instruction form the decoder knows is found by decoding every opcode of the one-byte, 0F,
// 0F 38 and 0F 3A maps under each mandatory prefix, REX.W and ModRM shape (and of the three VEX
// maps under each VEX.pp, W and L), in 64-bit mode and
// (for the forms 64-bit mode lacks) in 32-bit mode; each form's first encoding is then run once
// on the software CPU, which counts the instructions it does not implement. Iced names each
// form's ISA extension (its first CPUID feature).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;
using Decoder = Hyve.X86.Decoding.Decoder;

namespace Hyve.SoftCpu.Tests;

internal static class IsaCoverage
{
    /// <summary>One instruction form: its extension, mnemonic, a sample encoding, the mode it was
    /// run in, whether the software CPU executes it, and for a form with a memory operand whether
    /// the vmm's emulator completes it when that operand is device memory (null: no memory operand).</summary>
    public sealed record Form(string Extension, string Mnemonic, string Sample, int Bits, bool Executes, bool? Emulates);

    private static readonly byte[][] Maps = [[], [0x0F], [0x0F, 0x38], [0x0F, 0x3A]];
    private static readonly byte?[] MandatoryPrefixes = [null, 0x66, 0xF3, 0xF2];

    /// <summary>Every form the decoder knows, measured; <paramref name="crashes"/> lists the
    /// encodings on which the software CPU threw instead of answering (a defect: there should be
    /// none).</summary>
    public static List<Form> Measure(out List<string> crashes)
    {
        crashes = [];
        var samples = new Dictionary<Opcode, (byte[] Bytes, int Bits, Instruction Insn)>();
        foreach (int bits in new[] { 64, 32 })
            Enumerate(bits, samples);
        using var memory = new GuestMemory();
        memory.AddRam(0, 0x40_0000);
        var processor = new SoftProcessor(memory, new VmClock());
        var vcpu = new VmxVcpu(processor, 0xF000_0000) { Memory = memory, Quantum = 1000 };
        var forms = new List<Form>();
        foreach ((Opcode opcode, (byte[] bytes, int bits, Instruction insn)) in samples.OrderBy(s => s.Key))
        {
            long before = processor.Unimplemented;
            try
            {
                Run(vcpu, memory, bytes, bits);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A host exception is a defect of the software CPU: the test lists them.
                crashes.Add($"{Convert.ToHexString(bytes)} ({bits}-bit): {e.GetType().Name}: {e.Message}");
                vcpu = new VmxVcpu(processor = new SoftProcessor(memory, new VmClock()), 0xF000_0000) { Memory = memory, Quantum = 1000 };
                continue;
            }
            forms.Add(new Form(Extension(bytes, bits), insn.Mnemonic.ToString().ToLowerInvariant(), Convert.ToHexString(bytes), bits,
                processor.Unimplemented == before, Emulates(bytes, bits, in insn)));
        }
        return forms;
    }

    // The first encoding of each form: prefixes, map, opcode, every ModRM register form and a
    // memory form per ModRM.reg, and zero bytes for whatever follows (the decoder measures it).
    private static void Enumerate(int bits, Dictionary<Opcode, (byte[], int, Instruction)> samples)
    {
        Bitness mode = bits == 64 ? Bitness.Bits64 : Bitness.Bits32;
        var buf = new List<byte>(24);
        foreach (byte[] map in Maps)
        {
            for (int op = 0; op < 256; op++)
            {
                if (map.Length == 0 && (op is 0x0F or 0x26 or 0x2E or 0x36 or 0x3E or 0x64 or 0x65 or 0x66 or 0x67 or 0xF0 or 0xF2 or 0xF3
                    || (bits == 64 && op is >= 0x40 and <= 0x4F)))
                    continue;
                foreach (byte? prefix in MandatoryPrefixes)
                {
                    for (int w = 0; w < (bits == 64 ? 2 : 1); w++)
                    {
                        for (int modrm = 0; modrm < 256; modrm++)
                        {
                            if (modrm < 0xC0 && (modrm & 0xC7) != 0)
                                continue; // memory forms: [rax] for each ModRM.reg
                            buf.Clear();
                            if (prefix is byte p)
                                buf.Add(p);
                            if (w == 1)
                                buf.Add(0x48);
                            buf.AddRange(map);
                            buf.Add((byte)op);
                            buf.Add((byte)modrm);
                            for (int k = 0; k < 12; k++)
                                buf.Add(0);
                            byte[] bytes = [.. buf];
                            if (Decoder.Decode(bytes, mode, out Instruction i) != DecodeStatus.Ok || samples.ContainsKey(i.Opcode))
                                continue;
                            samples[i.Opcode] = (bytes[..i.Length], bits, i);
                        }
                    }
                }
            }
        }
        // The VEX maps, in the three-byte form: every VEX.pp, W and L, VEX.vvvv naming register 0
        // (the value a form without a vvvv operand requires).
        for (int vmap = 1; vmap <= 3; vmap++)
        {
            for (int op = 0; op < 256; op++)
            {
                for (int wlpp = 0; wlpp < 16; wlpp++)
                {
                    for (int modrm = 0; modrm < 256; modrm++)
                    {
                        if (modrm < 0xC0 && (modrm & 0xC7) != 0)
                            continue;
                        byte[] bytes = [0xC4, (byte)(0xE0 | vmap), (byte)(((wlpp & 8) << 4) | 0x78 | (wlpp & 7)), (byte)op, (byte)modrm,
                            0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                        // The gathers' VSIB memory needs a SIB byte: [rax + xmm4].
                        byte[] vsib = [.. bytes[..4], (byte)(modrm | 4), 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                        foreach (byte[] candidate in modrm < 0xC0 ? new[] { bytes, vsib } : [bytes])
                        {
                            if (Decoder.Decode(candidate, mode, out Instruction i) != DecodeStatus.Ok || samples.ContainsKey(i.Opcode))
                                continue;
                            samples[i.Opcode] = (candidate[..i.Length], bits, i);
                        }
                    }
                }
            }
        }
    }

    // One step from a fresh state at CPL 0: x87 and SSE usable, every general register pointing
    // into RAM (so memory operands reach RAM), RCX small (REP ends), no usable IDT (any fault
    // ends the run), a short time slice (a loop ends).
    private static void Run(VmxVcpu vcpu, GuestMemory memory, byte[] bytes, int bits)
    {
        HostCpuHarness.EnterMode(vcpu, memory, bits, PagingState.Cr4OSFXSR | (1UL << 10));
        vcpu.Control = vcpu.Control with { Cr0 = vcpu.Control.Cr0 | 0x22 }; // MP, NE
        vcpu.Gdtr = new TableRegister(0, 0);
        memory.WriteRam(0x10000, [.. bytes, 0xF4]);
        for (int r = 0; r < 16; r++)
            vcpu.SetGpr(r, 0x20_0000);
        vcpu.SetGpr(1, 2);
        vcpu.SetGpr(4, 0x30_0000);
        vcpu.Rflags = Rflags.Fixed1;
        Vmcs.Write(vcpu.State, VmcsField.ExceptionBitmap, 0xFFFF_FFFF);
        vcpu.Run();
    }

    // The vmm's emulator on the form with every register pointing at device memory (the memory
    // operand is there), each device read answered with zeros: true when it completes (or raises
    // what the architecture gives), false when it falls back; null without a memory operand.
    private static bool? Emulates(byte[] bytes, int bits, in Instruction insn)
    {
        Bitness mode = bits == 64 ? Bitness.Bits64 : Bitness.Bits32;
        bool memoryOperand = false;
        for (int k = 0; k < insn.OperandCount; k++)
            memoryOperand |= insn.GetOperandKind(k) == OperandKind.Memory;
        if (!memoryOperand || insn.Mnemonic is Mnemonic.Lea or Mnemonic.Nop or Mnemonic.Reservednop)
            return null;
        const ulong Device = 0xFE00_0000;
        var cpu = new Hyve.TestSupport.MockCpu();
        if (bits == 32)
            cpu.Segments[Register.CS] = Segment.Code32;
        for (int r = 0; r < 16; r++)
            cpu.Gpr[r] = Device;
        cpu.Gpr[1] = 2;
        // An absolute address (MOV's moffs) is the address itself; anything else is a register's.
        ulong at = insn.MemoryBase == Register.None && insn.MemoryIndex == Register.None && !insn.IsIpRelative
            ? (ulong)insn.Displacement & (bits == 64 ? ulong.MaxValue : 0xFFFF_FFFFUL) : Device;
        var vie = new Hyve.Vmm.Emulation.Vie();
        vie.Begin(at, at, true, mode, bytes);
        for (int pass = 0; pass < 64; pass++)
        {
            switch (vie.Emulate(cpu, Hyve.Vmm.Emulation.NoVmmDevices.Instance))
            {
                case Hyve.Vmm.Emulation.VieStatus.Fallback:
                    return false;
                case Hyve.Vmm.Emulation.VieStatus.NeedsDevice:
                    if (vie.PendingIsInout)
                        vie.FulfillInout(vie.PendingInout);
                    else
                        vie.Fulfill(vie.Pending);
                    break;
                default:
                    return true;
            }
        }
        return true;
    }

    // Extensions with no CPUID bit: the architecture itself.
    private static readonly HashSet<string> Architectural =
        ["(none)", "INTEL8086", "INTEL186", "INTEL286", "INTEL386", "INTEL486", "X64", "MULTIBYTENOP", "FPU287", "FPU387", "PAUSE", "CPUID"];

    // Where CPUID reports each of Iced's extensions: leaf, subleaf, register (0-3: EAX, EBX, ECX,
    // EDX) and bit, from the SDM and AMD's manual. Extensions not listed have a bit Hyve never sets.
    private static readonly Dictionary<string, (uint Leaf, uint Subleaf, int Register, int Bit)> CpuidBits = new()
    {
        ["FPU"] = (1, 0, 3, 0),
        ["TSC"] = (1, 0, 3, 4),
        ["MSR"] = (1, 0, 3, 5),
        ["CX8"] = (1, 0, 3, 8),
        ["SEP"] = (1, 0, 3, 11),
        ["CMOV"] = (1, 0, 3, 15),
        ["CLFSH"] = (1, 0, 3, 19),
        ["MMX"] = (1, 0, 3, 23),
        ["FXSR"] = (1, 0, 3, 24),
        ["SSE"] = (1, 0, 3, 25),
        ["SSE2"] = (1, 0, 3, 26),
        ["SSE3"] = (1, 0, 2, 0),
        ["PCLMULQDQ"] = (1, 0, 2, 1),
        ["MONITOR"] = (1, 0, 2, 3),
        ["VMX"] = (1, 0, 2, 5),
        ["SMX"] = (1, 0, 2, 6),
        ["SSSE3"] = (1, 0, 2, 9),
        ["CMPXCHG16B"] = (1, 0, 2, 13),
        ["SSE4_1"] = (1, 0, 2, 19),
        ["SSE4_2"] = (1, 0, 2, 20),
        ["MOVBE"] = (1, 0, 2, 22),
        ["POPCNT"] = (1, 0, 2, 23),
        ["AES"] = (1, 0, 2, 25),
        ["XSAVE"] = (1, 0, 2, 26),
        ["XSAVEOPT"] = (0xD, 1, 0, 0),
        ["RDRAND"] = (1, 0, 2, 30),
        ["FSGSBASE"] = (7, 0, 1, 0),
        ["BMI1"] = (7, 0, 1, 3),
        ["BMI2"] = (7, 0, 1, 8),
        ["AVX"] = (1, 0, 2, 28),
        ["AVX2"] = (7, 0, 1, 5),
        ["FMA"] = (1, 0, 2, 12),
        ["F16C"] = (1, 0, 2, 29),
        ["INVPCID"] = (7, 0, 1, 10),
        ["RTM"] = (7, 0, 1, 11),
        ["RDSEED"] = (7, 0, 1, 18),
        ["ADX"] = (7, 0, 1, 19),
        ["SMAP"] = (7, 0, 1, 20),
        ["CLFLUSHOPT"] = (7, 0, 1, 23),
        ["CLWB"] = (7, 0, 1, 24),
        ["SHA"] = (7, 0, 1, 29),
        ["PKU"] = (7, 0, 2, 3),
        ["WAITPKG"] = (7, 0, 2, 5),
        ["GFNI"] = (7, 0, 2, 8),
        ["RDPID"] = (7, 0, 2, 22),
        ["CLDEMOTE"] = (7, 0, 2, 25),
        ["MOVDIRI"] = (7, 0, 2, 27),
        ["MOVDIR64B"] = (7, 0, 2, 28),
        ["ENQCMD"] = (7, 0, 2, 29),
        ["SERIALIZE"] = (7, 0, 3, 14),
        ["TSXLDTRK"] = (7, 0, 3, 16),
        ["PCONFIG"] = (7, 0, 3, 18),
        ["LZCNT"] = (0x8000_0001, 0, 2, 5),
        ["SSE4A"] = (0x8000_0001, 0, 2, 6),
        ["PREFETCHW"] = (0x8000_0001, 0, 2, 8),
        ["MONITORX"] = (0x8000_0001, 0, 2, 29),
        ["SKINIT_or_SVM"] = (0x8000_0001, 0, 2, 2),
        ["SYSCALL"] = (0x8000_0001, 0, 3, 11),
        ["RDTSCP"] = (0x8000_0001, 0, 3, 27),
        ["D3NOW"] = (0x8000_0001, 0, 3, 31),
    };

    /// <summary>Whether <paramref name="policy"/>'s CPUID reports <paramref name="extension"/>
    /// (always, for the architectural sets).</summary>
    public static bool Reported(string extension, CpuidPolicy policy)
    {
        if (Architectural.Contains(extension))
            return true;
        if (!CpuidBits.TryGetValue(extension, out var at))
            return false;
        var (eax, ebx, ecx, edx) = policy.Query(at.Leaf, at.Subleaf, 0);
        uint word = at.Register switch { 0 => eax, 1 => ebx, 2 => ecx, _ => edx };
        return ((word >> at.Bit) & 1) != 0;
    }

    private static string ReportedAt(string extension) =>
        Architectural.Contains(extension) ? "always"
        : Reported(extension, new CpuidPolicy { Level = CpuLevel.V1 }) ? "v1, v2, v3"
        : Reported(extension, new CpuidPolicy { Level = CpuLevel.V2 }) ? "v2, v3"
        : Reported(extension, new CpuidPolicy { Level = CpuLevel.V3 }) ? "v3" : "no";

    // Iced's name for the form's ISA extension: its first CPUID feature.
    private static string Extension(byte[] bytes, int bits)
    {
        var decoder = Iced.Intel.Decoder.Create(bits, new Iced.Intel.ByteArrayCodeReader(bytes));
        decoder.Decode(out Iced.Intel.Instruction i);
        Iced.Intel.CpuidFeature[] features = i.CpuidFeatures;
        return features.Length == 0 ? "(none)" : features[0].ToString();
    }

    /// <summary>The table as docs/isa.md holds it.</summary>
    public static string Markdown(List<Form> forms)
    {
        var sb = new StringBuilder();
        sb.Append("""
            # Instruction-set coverage

            Generated by `tests/Hyve.SoftCpu.Tests/IsaCoverage.cs` (the test
            `IsaCoverageTests.TheTableIsCurrent` fails when this file is stale; run it with
            `HYVE_WRITE_ISA=1` to rewrite it). Every instruction form the decoder knows is found by
            decoding every opcode of the one-byte, 0F, 0F 38 and 0F 3A maps and of the three VEX maps
            (C4 encodings), and its first encoding is
            run once on the software CPU: "executes" means the CPU ran it (with whatever result or
            fault the architecture gives), "#UD" that the CPU does not implement it and raised #UD, as
            a processor without the feature does. Extensions are Iced's names (the first CPUID feature
            of the form). EVEX and XOP encodings, and VEX encodings outside the decoder's tables, are
            not listed.
            "CPUID" says at which of the levels `hyve run --cpu-features` offers (v2 is the default)
            CPUID reports the extension; the software CPU raises #UD for the instructions of an
            extension its CPUID does not report, and the test fails when a reported extension has a
            form that does not execute.

            The emulator columns count the forms with a memory operand and, of those, the ones the
            vmm's instruction emulator completes when that operand is device memory (every register
            pointing there, each device read answered with zeros); the others fall back to the
            device half with their bytes (`InstEmul`).

            ## Summary

            | extension | CPUID | forms | executed | with a memory operand | emulated on device memory |
            |---|---|---:|---:|---:|---:|

            """);
        foreach (var g in forms.GroupBy(f => f.Extension).OrderBy(g => g.Key, StringComparer.Ordinal))
            sb.Append($"| {g.Key} | {ReportedAt(g.Key)} | {g.Count()} | {g.Count(f => f.Executes)} | {g.Count(f => f.Emulates != null)} | {g.Count(f => f.Emulates == true)} |\n");
        sb.Append($"| **all** | | {forms.Count} | {forms.Count(f => f.Executes)} | {forms.Count(f => f.Emulates != null)} | {forms.Count(f => f.Emulates == true)} |\n");
        sb.Append("\n## Forms the software CPU does not execute\n\n| extension | mnemonic | sample (mode) |\n|---|---|---|\n");
        foreach (Form f in forms.Where(f => !f.Executes).OrderBy(f => f.Extension, StringComparer.Ordinal).ThenBy(f => f.Mnemonic, StringComparer.Ordinal).ThenBy(f => f.Sample, StringComparer.Ordinal))
            sb.Append($"| {f.Extension} | {f.Mnemonic} | `{f.Sample}` ({f.Bits}-bit) |\n");
        sb.Append("\n## Forms the CPU executes whose device-memory form the emulator does not complete\n\n| extension | mnemonic | sample (mode) |\n|---|---|---|\n");
        foreach (Form f in forms.Where(f => f.Executes && f.Emulates == false).OrderBy(f => f.Extension, StringComparer.Ordinal).ThenBy(f => f.Mnemonic, StringComparer.Ordinal).ThenBy(f => f.Sample, StringComparer.Ordinal))
            sb.Append($"| {f.Extension} | {f.Mnemonic} | `{f.Sample}` ({f.Bits}-bit) |\n");
        return sb.ToString();
    }
}
