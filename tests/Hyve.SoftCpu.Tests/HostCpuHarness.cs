// The software CPU and the host CPU side by side: a 64-bit vCPU over identity-mapped RAM, and a
// run of the same code on both from the same registers.
using System;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Verification;
using Hyve.Vmm.Vmx;
using Hyve.X86;

namespace Hyve.SoftCpu.Tests;

internal static class HostCpuHarness
{
    // Runs code (then HLT) on the software vCPU and natively, both from st's inputs: an exit other
    // than the HLT, or the first general register (with xmm, also SSE register) that differs.
    public static string? RunBoth(VmxVcpu vcpu, GuestMemory memory, NativeCpu native, byte[] code, ref FullState st, bool xmm = false)
    {
        memory.WriteRam(0x10000, [.. code, 0xF4]);
        for (int r = 0; r < 16; r++)
        {
            if (r != 4)
                vcpu.SetGpr(r, st.In[r]);
            if (xmm)
                vcpu.Area.Xmm[r] = st.XmmIn[r];
        }
        vcpu.SetGpr(4, 0x8000);
        vcpu.Rip = 0x10000;
        vcpu.Rflags = st.FlagsIn;
        BackendExit exit = vcpu.Run();
        native.Run(code, ref st);
        if (exit.Kind != BackendExitKind.Hlt)
            return $"exit {exit.Kind} ({exit.Reason})";
        for (int r = 0; r < 16; r++)
        {
            if (r != 4 && vcpu.GetGpr(r) != st.Out[r])
                return $"r{r}: cpu {st.Out[r]:X} soft {vcpu.GetGpr(r):X}";
            if (xmm && vcpu.Area.Xmm[r] != st.XmmOut[r])
                return $"xmm{r}: cpu {st.XmmOut[r]:X32} soft {vcpu.Area.Xmm[r]:X32}";
        }
        return null;
    }

    // Puts a vCPU in 64-bit mode (the first 2 MiB identity-mapped through page tables at 0x1000,
    // which this writes), 32-bit protected mode or real mode (CS base 0x10000), with flat data
    // segments (real mode: base 0), code at 0x10000 and no IDT.
    public static void EnterMode(VmxVcpu vcpu, GuestMemory memory, int bits, ulong cr4)
    {
        switch (bits)
        {
            case 64:
                memory.WriteRam(0x1000, BitConverter.GetBytes(0x2003UL));
                memory.WriteRam(0x2000, BitConverter.GetBytes(0x3003UL));
                memory.WriteRam(0x3000, BitConverter.GetBytes(0x83UL));
                vcpu.SetSegment(Register.CS, Segment.Code64);
                vcpu.Control = new ControlState(PagingState.Cr0PE | PagingState.Cr0PG | 0x10, 0, 0x1000, PagingState.Cr4PAE | cr4,
                    PagingState.EferLME | PagingState.EferLMA);
                break;
            case 32:
                vcpu.SetSegment(Register.CS, Segment.Code32);
                vcpu.Control = new ControlState(PagingState.Cr0PE | 0x10, 0, 0, cr4, 0);
                break;
            default:
                vcpu.SetSegment(Register.CS, Segment.Real(0x1000));
                vcpu.Control = new ControlState(0x10, 0, 0, 0, 0);
                break;
        }
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            vcpu.SetSegment(s, bits == 16 ? Segment.Real(0) : Segment.FlatData);
        vcpu.Idtr = new TableRegister(0, 0);
        vcpu.Rip = bits == 16 ? 0UL : 0x10000UL;
    }

    // A software vCPU in 64-bit mode over 2 MiB of RAM, identity-mapped by one large page.
    public static VmxVcpu LongModeVcpu(GuestMemory memory, ulong cr4)
    {
        memory.AddRam(0, 0x20_0000);
        var vcpu = new VmxVcpu(new SoftProcessor(memory, new VmClock()), 0xF000_0000) { Memory = memory };
        memory.WriteRam(0x1000, BitConverter.GetBytes(0x2003UL));
        memory.WriteRam(0x2000, BitConverter.GetBytes(0x3003UL));
        memory.WriteRam(0x3000, BitConverter.GetBytes(0x83UL));
        vcpu.SetSegment(Register.CS, Segment.Code64);
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            vcpu.SetSegment(s, Segment.FlatData);
        vcpu.Control = new ControlState(PagingState.Cr0PE | PagingState.Cr0PG, 0, 0x1000, cr4, PagingState.EferLME | PagingState.EferLMA);
        return vcpu;
    }

    /// <summary>Runs <paramref name="hex"/> then HLT at 0x10000 in the given mode (as
    /// <see cref="EnterMode"/> sets it up, RSP 0x8000, then <paramref name="setup"/>) with every
    /// exception exiting: the vector it stopped at, or -1 for the HLT.</summary>
    public static int RunToStop(VmxVcpu vcpu, GuestMemory memory, string hex, int bits, ulong cr4, Action<VmxVcpu>? setup = null)
    {
        memory.WriteRam(0x10000, [.. Convert.FromHexString(hex), 0xF4]);
        EnterMode(vcpu, memory, bits, cr4);
        vcpu.SetGpr(4, 0x8000);
        setup?.Invoke(vcpu);
        Vmcs.Write(vcpu.State, VmcsField.ExceptionBitmap, 0xFFFF_FFFF);
        return ExitVector(vcpu, vcpu.Run());
    }

    /// <summary>The vector of the exception an exit reports, or -1 for a HLT (and, unless
    /// <paramref name="exceptionOnly"/>, for any other exit; with it, another exit fails the test).</summary>
    public static int ExitVector(VmxVcpu vcpu, in BackendExit exit, bool exceptionOnly = true)
    {
        if (exit.Kind == BackendExitKind.Hlt)
            return -1;
        ulong info = Vmcs.Read(vcpu.State, VmcsField.ExitInterruptionInfo);
        bool exception = (info & (1UL << 31)) != 0;
        Xunit.Assert.True(exception || !exceptionOnly, $"exit {exit.Kind} ({exit.Reason}) is not an exception");
        return exception ? (int)(info & 0xFF) : -1;
    }

    /// <summary>Puts <paramref name="bytes"/> in the native data area and in the vCPU's RAM at the
    /// same address (where <see cref="MapHostData"/> or the caller placed RAM).</summary>
    public static void LoadData(GuestMemory memory, NativeCpu native, byte[] bytes)
    {
        bytes.CopyTo(native.Data);
        memory.WriteRam(native.DataAddress, bytes);
    }

    /// <summary>The first byte where the vCPU's copy of the data area differs from the host's
    /// (read into <paramref name="soft"/>), or null.</summary>
    public static string? DataDifference(GuestMemory memory, NativeCpu native, byte[] soft)
    {
        memory.ReadRam(native.DataAddress, soft);
        int at = native.Data.CommonPrefixLength(soft);
        return at == soft.Length ? null : $"data +0x{at:X}: cpu {native.Data[at]:X2} soft {soft[at]:X2}";
    }

    /// <summary>Makes the native data area addressable by the vCPU at the same address (RAM there,
    /// mapped by a large page), so the same code and registers reach the same operands.</summary>
    public static void MapHostData(GuestMemory memory, NativeCpu native)
    {
        ulong data = native.DataAddress;
        if (data < 0x20_0000)
            throw new InvalidOperationException($"native data at {data:X} overlaps the guest's low RAM");
        memory.AddRam(data, (ulong)native.Data.Length);
        for (ulong at = data; at < data + (ulong)native.Data.Length; at += 0x1000)
        {
            ulong gib = at >> 30;
            if (gib == 0)
                memory.WriteRam(0x3000 + 8 * ((at >> 21) & 511), BitConverter.GetBytes((at & ~0x1F_FFFFUL) | 0x83));
            else
                memory.WriteRam(0x2000 + 8 * gib, BitConverter.GetBytes((gib << 30) | 0x83));
        }
    }
}
