// The run loop on a VMX vCPU: guest state through the VMCS, exits read from its exit fields,
// events injected through the entry fields; the processor is a script that acts as the
// hardware would (stores guest state and exit information).
using System;
using System.Collections.Generic;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Emulation;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VmxVcpuTests : IDisposable
{
    private const ulong Mmio = 0xFE00_0000;

    private sealed class ScriptedProcessor : IVmxProcessor
    {
        public Queue<Action<VmxState, VmxGuestArea>> Script { get; } = new();

        public List<uint> Delivered { get; } = [];

        public int Entries { get; private set; }

        public void Enter(VmxState state, VmxGuestArea area, bool resume)
        {
            Entries++;
            Assert.Equal(Entries > 1, resume); // VMLAUNCH first, VMRESUME after
            VmcsRegion r = state.Current!;
            uint info = (uint)r.Load(VmcsField.EntryInterruptionInfo);
            if ((info & (1u << 31)) != 0)
            {
                Delivered.Add(info);
                r.Store(VmcsField.EntryInterruptionInfo, info & ~(1u << 31));
            }
            r.Store(VmcsField.IdtVectoringInfo, 0);
            if (Script.Count > 0)
                Script.Dequeue()(state, area);
            else
                r.Store(VmcsField.ExitReason, VmxExitReason.TripleFault);
        }

        public void RequestExit()
        {
        }
    }

    private readonly GuestMemory _memory = new();
    private readonly ScriptedProcessor _cpu = new();
    private readonly Vm _vm;

    public VmxVcpuTests()
    {
        _memory.AddRam(0, 0x10_0000);
        _vm = new Vm(new VmxBackend(_memory, _ => _cpu), 1, _memory);
        var v = (VmxVcpu)_vm.Vcpus[0].Cpu;
        // 64-bit flat state, as a loader would set it.
        v.SetSegment(Register.CS, Segment.Code64);
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            v.SetSegment(s, Segment.FlatData);
        v.Control = new ControlState(PagingState.Cr0PE | PagingState.Cr0WP, 0, 0, PagingState.Cr4PAE | PagingState.Cr4OSFXSR,
            PagingState.EferLME | PagingState.EferLMA);
        v.Rip = 0x1000;
    }

    public void Dispose() => _vm.Dispose();

    private VmxVcpu Cpu => (VmxVcpu)_vm.Vcpus[0].Cpu;

    private static void Exit(VmxState s, uint reason, ulong qualification = 0, int length = 0)
    {
        VmcsRegion r = s.Current!;
        r.Store(VmcsField.ExitReason, reason);
        r.Store(VmcsField.ExitQualification, qualification);
        r.Store(VmcsField.ExitInstructionLength, (ulong)length);
    }

    [Fact]
    public void StateLivesInTheVmcs()
    {
        Assert.Equal(Segment.Code64, Cpu.GetSegment(Register.CS));
        Assert.Equal(0xA09BUL, Vmcs.Read(Cpu.State, VmcsField.GuestCsAccessRights));
        Assert.NotEqual(0UL, Vmcs.Read(Cpu.State, VmcsField.EntryControls) & VmxConversions.EntryIa32eMode);
        Cpu.SetGpr(4, 0x8000);
        Assert.Equal(0x8000UL, Vmcs.Read(Cpu.State, VmcsField.GuestRsp));
        Cpu.Control = Cpu.Control with { Efer = 0, Cr2 = 0x1234 };
        Assert.Equal(0UL, Vmcs.Read(Cpu.State, VmcsField.EntryControls) & VmxConversions.EntryIa32eMode);
        Assert.Equal(0x1234UL, Cpu.Area.Cr2);
        Assert.True(Cpu.TrySetMsr(Msr.Lstar, 0xFFFF_FFFF_8100_0000));
        Assert.Equal(0xFFFF_FFFF_8100_0000UL, Cpu.Area.Lstar);
        Assert.True(Cpu.TrySetMsr(Msr.GsBase, 0x5000));
        Assert.Equal(0x5000UL, Cpu.GetSegment(Register.GS).Base);
    }

    [Fact]
    public void IoExitRoundTripThroughTheVmcs()
    {
        Cpu.SetGpr(0, 0x5A);
        _cpu.Script.Enqueue((s, _) => Exit(s, VmxExitReason.IoInstruction, 0x40 | (0x80UL << 16), 2)); // out 0x80, al
        _cpu.Script.Enqueue((s, _) => Exit(s, VmxExitReason.Hlt, 0, 1));
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(new InoutAccess(0x80, 1, false, 0x5A), exit.Inout);
        Cpu.Rflags = Rflags.Fixed1; // interrupts off: the HLT goes to the device half
        exit = _vm.Vcpus[0].Run(VmEntry.FulfillInout(exit.Inout));
        Assert.Equal(VmExitCode.Hlt, exit.Code);
        Assert.Equal(0x1003UL, Cpu.Rip); // past the OUT (2) and the HLT (1)
        Assert.Equal(2, _cpu.Entries);
    }

    [Fact]
    public void EptViolationOnDeviceMemoryIsEmulatedFromTheFetchedInstruction()
    {
        _memory.WriteRam(0x1000, [0x89, 0x08]); // mov [rax], ecx
        Cpu.SetGpr(0, Mmio + 8);
        Cpu.SetGpr(1, 0xC0FFEE);
        _cpu.Script.Enqueue((s, _) =>
        {
            Exit(s, VmxExitReason.EptViolation, 0x182);
            s.Current!.Store(VmcsField.GuestPhysicalAddress, Mmio + 8);
            s.Current!.Store(VmcsField.GuestLinearAddress, Mmio + 8);
        });
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(new MmioAccess(Mmio + 8, 4, true, 0xC0FFEE), exit.Mmio);
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.FulfillMmio(exit.Mmio)).Code);
        Assert.Equal(0x1002UL, Cpu.Rip);
    }

    [Fact]
    public void InterruptsAreInjectedThroughTheEntryFields()
    {
        _vm.Vcpus[0].Apic.WriteRegister(0xF0, 0x1FF);
        _vm.Vcpus[0].Apic.Accept(0x41, level: false);
        Cpu.Rflags = Rflags.Fixed1 | Rflags.IF;
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Equal([0x8000_0041u], _cpu.Delivered);
    }

    [Fact]
    public void AClosedWindowAsksForAnInterruptWindowExit()
    {
        _vm.Vcpus[0].Apic.WriteRegister(0xF0, 0x1FF);
        _vm.Vcpus[0].Apic.Accept(0x41, level: false);
        Cpu.Rflags = Rflags.Fixed1; // IF clear
        _cpu.Script.Enqueue((s, _) =>
        {
            Assert.NotEqual(0UL, s.Current!.Load(VmcsField.PrimaryProcessorControls) & VmxVcpu.InterruptWindowExiting);
            Cpu.Rflags = Rflags.Fixed1 | Rflags.IF; // the guest executed STI... and the window opened
            Exit(s, VmxExitReason.InterruptWindow);
        });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Equal([0x8000_0041u], _cpu.Delivered);
        Assert.Equal(0UL, Vmcs.Read(Cpu.State, VmcsField.PrimaryProcessorControls) & VmxVcpu.InterruptWindowExiting);
    }

    [Fact]
    public void AWithdrawnRequestStopsTheInterruptWindowExits()
    {
        // A level-triggered IRQ 5 through the 8259 (LINT0 in ExtINT mode) while IF is clear: the
        // window is asked for. The line falls before the guest sets IF (the device was serviced
        // by polling); the next entry must not ask for the window any more, or every instruction
        // with IF set would exit for a window with nothing to deliver.
        foreach (var (port, value) in new (ushort, uint)[] { (0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, 0x00), (0x4D0, 0x20) })
            Assert.True(_vm.Devices.Ports.TryOut(port, 1, value));
        _vm.Vcpus[0].Apic.WriteRegister(0xF0, 0x1FF);
        _vm.Vcpus[0].Apic.WriteRegister(0x350, 0x700);
        _vm.SetIsaIrq(5, true);
        Cpu.Rflags = Rflags.Fixed1;
        _cpu.Script.Enqueue((s, _) =>
        {
            Assert.NotEqual(0UL, s.Current!.Load(VmcsField.PrimaryProcessorControls) & VmxVcpu.InterruptWindowExiting);
            _vm.SetIsaIrq(5, false);
            Exit(s, VmxExitReason.ExternalInterrupt);
        });
        _cpu.Script.Enqueue((s, _) =>
        {
            Assert.Equal(0UL, s.Current!.Load(VmcsField.PrimaryProcessorControls) & VmxVcpu.InterruptWindowExiting);
            s.Current!.Store(VmcsField.ExitReason, VmxExitReason.TripleFault);
        });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Empty(_cpu.Script);
        Assert.Empty(_cpu.Delivered);
    }

    [Fact]
    public void AnInterruptedDeliveryIsInjectedAgain()
    {
        _cpu.Script.Enqueue((s, _) =>
        {
            Exit(s, VmxExitReason.EptViolation, 0x81); // a paging-structure access: not MMIO
            s.Current!.Store(VmcsField.IdtVectoringInfo, 0x8000_030E); // #PF delivery was under way
        });
        VmExit exit = _vm.Vcpus[0].Run(VmEntry.Default);
        Assert.Equal(VmExitCode.Vmx, exit.Code);
        Assert.Equal(VmxExitReason.EptViolation, exit.Reason);
        Assert.Equal(0x8000_030EUL, Vmcs.Read(Cpu.State, VmcsField.EntryInterruptionInfo));
    }
}
