// A vCPU whose registers are plain fields, for driving the emulation context in tests and
// benchmarks.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Emulation;
using Hyve.X86;

namespace Hyve.TestSupport;

/// <summary>A vCPU whose registers are plain fields.</summary>
public sealed class MockCpu : IVieCpu
{
    public ulong[] Gpr { get; } = new ulong[16];

    /// <summary>Segments that differ from a flat data segment (CS defaults to 64-bit code).</summary>
    public Dictionary<Register, Segment> Segments { get; } = [];

    public UInt128[] Xmm { get; } = new UInt128[16];

    public ulong[] Mm { get; } = new ulong[8];

    public ulong Rip { get; set; } = 0x40_0000;

    public ulong Rflags { get; set; } = Hyve.X86.Rflags.Fixed1;

    public ulong GetGpr(int n) => Gpr[n];

    public void SetGpr(int n, ulong value) => Gpr[n] = value;

    public Segment GetSegment(Register segment) =>
        Segments.TryGetValue(segment, out Segment s) ? s : segment == Register.CS ? Segment.Code64 : Segment.FlatData;

    public UInt128 GetXmm(int n) => Xmm[n];

    public void SetXmm(int n, UInt128 value) => Xmm[n] = value;

    public ulong GetMm(int n) => Mm[n];

    public void SetMm(int n, ulong value) => Mm[n] = value;

    public UInt128[] YmmHigh { get; } = new UInt128[16];

    public ulong Xcr0 { get; set; } = 7;

    public bool TryGetYmmHigh(int n, out UInt128 value)
    {
        value = YmmHigh[n];
        return true;
    }

    public bool TrySetYmmHigh(int n, UInt128 value)
    {
        YmmHigh[n] = value;
        return true;
    }

    public Hyve.Vmm.Backend.TableRegister Gdtr { get; set; } = new(0x12_3456_7000, 0x7F);

    public Hyve.Vmm.Backend.TableRegister Idtr { get; set; } = new(0x12_3456_8000, 0xFFF);

    public bool TrySetSegment(Register segment, in Segment value)
    {
        Segments[segment] = value;
        return true;
    }

    public ushort Tr { get; set; } = 0x40;

    public ushort Ldtr { get; set; } = 0x50;

    public bool TryGetSystemSelector(bool ldtr, out ushort selector)
    {
        selector = ldtr ? Ldtr : Tr;
        return true;
    }

    public bool TryGetDescriptorTable(bool idt, out Hyve.Vmm.Backend.TableRegister table)
    {
        table = idt ? Idtr : Gdtr;
        return true;
    }
}
