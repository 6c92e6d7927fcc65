// The VMX layer's exit decoding and event fields, from VMCS contents a processor would store.
using Hyve.Vmm.Backend;
using Hyve.Vmm.Emulation;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VmxExitsTests
{
    private readonly VmxState _state = new();
    private readonly VmcsRegion _region = new(0x9000);
    private readonly MockGuestMemory _memory = new();

    public VmxExitsTests()
    {
        Vmcs.Initialize(_state, _region);
        Vmcs.Load(_state, _region);
    }

    private BackendExit Exit(uint reason, ulong qualification = 0, int length = 0)
    {
        _region.Store(VmcsField.ExitReason, reason);
        _region.Store(VmcsField.ExitQualification, qualification);
        _region.Store(VmcsField.ExitInstructionLength, (ulong)length);
        return VmxExits.Decode(_state, _memory);
    }

    [Fact]
    public void EptViolationsOnDeviceMemoryBecomeMmioExits()
    {
        _region.Store(VmcsField.GuestPhysicalAddress, MockGuestMemory.MmioBase + 0x10);
        _region.Store(VmcsField.GuestLinearAddress, 0xFFFF_8000_0000_0010);
        BackendExit e = Exit(VmxExitReason.EptViolation, 0x182); // write, GLA valid, final translation
        Assert.Equal(BackendExitKind.Mmio, e.Kind);
        Assert.Equal(MockGuestMemory.MmioBase + 0x10, e.Gpa);
        Assert.Equal(0xFFFF_8000_0000_0010UL, e.Gla);
        Assert.True(e.GlaValid);
        BackendExit fetch = Exit(VmxExitReason.EptViolation, 0x184); // a fetch: the vmm answers #UD
        Assert.Equal((BackendExitKind.DeviceFetch, MockGuestMemory.MmioBase + 0x10), (fetch.Kind, fetch.Gpa));
        Assert.Equal(BackendExitKind.Unhandled, Exit(VmxExitReason.EptViolation, 0x82).Kind);  // a paging-structure access
        _region.Store(VmcsField.GuestPhysicalAddress, 0x1000);                                   // RAM
        Assert.Equal(BackendExitKind.Unhandled, Exit(VmxExitReason.EptViolation, 0x182).Kind);
        Assert.Equal(BackendExitKind.Unhandled, Exit(VmxExitReason.EptViolation, 0x184).Kind); // a fetch from RAM
    }

    [Fact]
    public void IoExitsDecodeWithTheirLength()
    {
        _region.Store(VmcsField.ExitInstructionInfo, (2u << 7) | (3u << 15)); // 64-bit addressing, DS
        BackendExit e = Exit(VmxExitReason.IoInstruction, 0x30 | (0x3F8UL << 16), 2); // rep outsb to 0x3F8
        Assert.Equal(BackendExitKind.Io, e.Kind);
        Assert.Equal(new IoExit(0x3F8, 1, false, true, true, false, 8, Register.DS, 2), e.Io);
    }

    [Theory]
    [InlineData(VmxExitReason.Hlt, BackendExitKind.Hlt)]
    [InlineData(VmxExitReason.Pause, BackendExitKind.Pause)]
    [InlineData(VmxExitReason.Cpuid, BackendExitKind.Cpuid)]
    [InlineData(VmxExitReason.Rdmsr, BackendExitKind.Rdmsr)]
    [InlineData(VmxExitReason.Wrmsr, BackendExitKind.Wrmsr)]
    [InlineData(VmxExitReason.TripleFault, BackendExitKind.TripleFault)]
    [InlineData(VmxExitReason.InterruptWindow, BackendExitKind.InterruptWindow)]
    [InlineData(VmxExitReason.ExternalInterrupt, BackendExitKind.Interrupted)]
    [InlineData(VmxExitReason.CrAccess, BackendExitKind.Unhandled)]
    public void SimpleExits(uint reason, BackendExitKind kind)
    {
        BackendExit e = Exit(reason, 0, 2);
        Assert.Equal(kind, e.Kind);
        Assert.Equal(2, e.InstructionLength);
        Assert.Equal(reason, e.Reason);
    }

    [Fact]
    public void EventsInAndOut()
    {
        Assert.Equal(0x8000_0B0Eu, VmxExits.EntryInterruptionInfo(new Event(14, EventType.HardwareException, 2, true)));
        Assert.Equal(0x8000_0030u, VmxExits.EntryInterruptionInfo(new Event(0x30, EventType.External)));
        VmxExits.Inject(_state, new Event(14, EventType.HardwareException, 6, true));
        Assert.Equal(0x8000_0B0EUL, Vmcs.Read(_state, VmcsField.EntryInterruptionInfo));
        Assert.Equal(6UL, Vmcs.Read(_state, VmcsField.EntryExceptionErrorCode));
        VmxExits.Inject(_state, new Event(0x80, EventType.SoftwareInterrupt), instructionLength: 2);
        Assert.Equal(2UL, Vmcs.Read(_state, VmcsField.EntryInstructionLength));

        Assert.Null(VmxExits.InterruptedDelivery(_state));
        _region.Store(VmcsField.IdtVectoringInfo, 0x8000_0B0D);   // #GP with an error code was being delivered
        _region.Store(VmcsField.IdtVectoringErrorCode, 0x18);
        Assert.Equal(new Event(13, EventType.HardwareException, 0x18, true), VmxExits.InterruptedDelivery(_state));
    }
}
