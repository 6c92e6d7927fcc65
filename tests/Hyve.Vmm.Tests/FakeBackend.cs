// A backend whose vCPUs produce scripted exits: the run loop's tests drive it instead of a CPU.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Backend;
using Hyve.X86;

namespace Hyve.Vmm.Tests;

public sealed class FakeBackend : IBackend
{
    public List<FakeVcpu> Vcpus { get; } = [];

    public string Name => "fake";

    /// <summary>A VM on this backend with 1 MiB of RAM at 0; with <paramref name="enableApics"/> every
    /// local APIC is software-enabled (spurious vector 0xFF).</summary>
    public Vm NewVm(int cpus, bool enableApics = false)
    {
        var memory = new GuestMemory();
        memory.AddRam(0, 0x10_0000);
        var vm = new Vm(this, cpus, memory);
        if (enableApics)
        {
            foreach (Vcpu v in vm.Vcpus)
                v.Apic.WriteRegister(0xF0, 0x1FF);
        }
        return vm;
    }

    public IBackendVcpu CreateVcpu(int id)
    {
        var v = new FakeVcpu();
        Vcpus.Add(v);
        return v;
    }
}

/// <summary>A vCPU with plain register fields; each Run takes the next scripted step, which may
/// look at and change the state before it returns an exit. With nothing scripted it reports a
/// triple fault, so a test that runs too far stops.</summary>
public sealed class FakeVcpu : IBackendVcpu
{
    public ulong[] Gpr { get; } = new ulong[16];

    public Dictionary<Register, Segment> Segments { get; } = new()
    {
        [Register.CS] = Segment.Code64,
        [Register.SS] = Segment.FlatData,
        [Register.DS] = Segment.FlatData,
        [Register.ES] = Segment.FlatData,
        [Register.FS] = Segment.FlatData,
        [Register.GS] = Segment.FlatData,
    };

    public Queue<Func<FakeVcpu, BackendExit>> Script { get; } = new();

    public List<Event> Injected { get; } = [];

    public Dictionary<uint, ulong> KeptMsrs { get; } = [];

    public bool WindowRequested { get; private set; }

    public int ExitRequests { get; private set; }

    public ulong Rip { get; set; } = 0x1000;

    public ulong Rflags { get; set; } = Hyve.X86.Rflags.Fixed1 | Hyve.X86.Rflags.IF;

    public ControlState Control { get; set; } = new(PagingState.Cr0PE | PagingState.Cr0WP, 0, 0, PagingState.Cr4PAE | PagingState.Cr4OSFXSR,
        PagingState.EferLME | PagingState.EferLMA);

    public TableRegister Gdtr { get; set; }

    public TableRegister Idtr { get; set; }

    public bool InterruptWindowOpen => (Rflags & Hyve.X86.Rflags.IF) != 0;

    public bool NmiWindowOpen => true;

    public ulong GetGpr(int n) => Gpr[n];

    public void SetGpr(int n, ulong value) => Gpr[n] = value;

    public Segment GetSegment(Register segment) => Segments[segment];

    public void SetSegment(Register segment, in Segment value) => Segments[segment] = value;

    public UInt128 GetXmm(int n) => 0;

    public void SetXmm(int n, UInt128 value)
    {
    }

    public ulong GetMm(int n) => 0;

    public void SetMm(int n, ulong value)
    {
    }

    public bool TryGetMsr(uint msr, out ulong value) => KeptMsrs.TryGetValue(msr, out value);

    public bool TrySetMsr(uint msr, ulong value)
    {
        KeptMsrs[msr] = value;
        return true;
    }

    public void Inject(in Event e) => Injected.Add(e);

    public ulong Xcr0 { get; set; } = 1;

    public void SetXcr0(ulong value) => Xcr0 = value;

    public void RequestInterruptWindow(bool on) => WindowRequested = on;

    public void RequestExit() => ExitRequests++;

    /// <summary>When set, the exit every run returns once the script is empty (RIP goes back to 0x1000).</summary>
    public BackendExit? Forever { get; set; }

    public BackendExit Run()
    {
        if (Script.Count > 0)
            return Script.Dequeue()(this);
        if (Forever is { } f)
        {
            Rip = 0x1000;
            return f;
        }
        return new BackendExit { Kind = BackendExitKind.TripleFault };
    }

    /// <summary>An MMIO exit for the instruction <paramref name="hex"/> at RIP touching <paramref name="gpa"/>.</summary>
    public static BackendExit Mmio(ulong gpa, string hex)
    {
        var e = new BackendExit { Kind = BackendExitKind.Mmio, Gpa = gpa, Gla = gpa, GlaValid = true };
        byte[] b = Convert.FromHexString(hex);
        b.CopyTo(e.Bytes);
        e.ByteCount = (byte)b.Length;
        return e;
    }
}

/// <summary>A local APIC stand-in: a queue of pending vectors and an NMI flag.</summary>
public sealed class FakeInterrupts : IInterruptSource
{
    public SortedSet<int> Pending { get; } = [];

    public List<int> Accepted { get; } = [];

    public bool NmiPending { get; set; }

    public void AcceptNmi() => NmiPending = false;

    public int PendingInterrupt => Pending.Count > 0 ? Pending.Max : -1;

    public void AcceptInterrupt(int vector)
    {
        Pending.Remove(vector);
        Accepted.Add(vector);
    }
}
