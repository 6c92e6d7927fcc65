// PUSH and POP through the emulation context: a device-memory operand with the stack in RAM,
// and the stack itself in device memory.
using System;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VieStackTests
{
    private const ulong Mmio = MockGuestMemory.MmioBase + 0x40;

    private static VieStatus Run(string hex, ulong gpa, ulong gla, MockCpu cpu, MockGuestMemory memory, MockDeviceHalf half)
    {
        var vie = new Vie();
        Assert.True(vie.Begin(gpa, gla, glaValid: true, Bitness.Bits64, Convert.FromHexString(hex)));
        VieStatus st;
        while ((st = vie.Emulate(cpu, new MockVmmDevices(), memory)) == VieStatus.NeedsDevice)
            Assert.Equal(FulfillResult.Ok, vie.Fulfill(half.Answer(vie.Pending)));
        return st;
    }

    [Fact]
    public void PushAndPopOfADeviceOperandUseTheRamStack()
    {
        var cpu = new MockCpu();
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        cpu.Gpr[0] = Mmio;      // RAX: the operand
        cpu.Gpr[4] = 0x8000;    // RSP
        half.Store(Mmio, 0x1122_3344_5566_7788, 8);
        Assert.Equal(VieStatus.Done, Run("FF30", Mmio, Mmio, cpu, memory, half)); // push qword [rax]
        Assert.Equal(0x7FF8UL, cpu.Gpr[4]);
        Assert.Equal(0x1122_3344_5566_7788UL, BitConverter.ToUInt64(memory.Ram, 0x7FF8));
        Assert.Equal(0x40_0002UL, cpu.Rip);

        BitConverter.GetBytes(0xCAFE_F00D_0000_0001UL).CopyTo(memory.Ram, 0x7FF8);
        Assert.Equal(VieStatus.Done, Run("8F00", Mmio, Mmio, cpu, memory, half)); // pop qword [rax]
        Assert.Equal(0x8000UL, cpu.Gpr[4]);
        Assert.Equal(new MmioAccess(Mmio, 8, true, 0xCAFE_F00D_0000_0001), half.Requests[^1]);
        Assert.Equal(2, half.Requests.Count); // one read for the push, one write for the pop
    }

    [Fact]
    public void AStackInDeviceMemoryTakesPushesAndPops()
    {
        var cpu = new MockCpu();
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        cpu.Gpr[4] = Mmio + 0x10;
        cpu.Gpr[1] = 0xAAAA_BBBB_CCCC_DDDD;
        Assert.Equal(VieStatus.Done, Run("51", Mmio + 8, Mmio + 8, cpu, memory, half)); // push rcx
        Assert.Equal(new MmioAccess(Mmio + 8, 8, true, 0xAAAA_BBBB_CCCC_DDDD), half.Requests[^1]);
        Assert.Equal(Mmio + 8, cpu.Gpr[4]);

        Assert.Equal(VieStatus.Done, Run("6880FFFFFF", Mmio, Mmio, cpu, memory, half)); // push -128 (imm32)
        Assert.Equal(new MmioAccess(Mmio, 8, true, 0xFFFF_FFFF_FFFF_FF80), half.Requests[^1]);

        Assert.Equal(VieStatus.Done, Run("5A", Mmio, Mmio, cpu, memory, half)); // pop rdx
        Assert.Equal(0xFFFF_FFFF_FFFF_FF80UL, cpu.Gpr[2]);
        Assert.Equal(Mmio + 8, cpu.Gpr[4]);

        Assert.Equal(VieStatus.Done, Run("5C", Mmio + 8, Mmio + 8, cpu, memory, half)); // pop rsp
        Assert.Equal(0xAAAA_BBBB_CCCC_DDDDUL, cpu.Gpr[4]); // the popped value, not the incremented pointer
    }

    [Fact]
    public void PushOfADeviceOperandOntoADeviceStackReadsThenWrites()
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = Mmio;
        cpu.Gpr[4] = Mmio + 0x100; // the stack is device memory too
        var half = new MockDeviceHalf();
        half.Store(Mmio, 0x55, 8);
        Assert.Equal(VieStatus.Done, Run("FF30", Mmio, Mmio, cpu, new MockGuestMemory(), half));
        Assert.Equal([new MmioAccess(Mmio, 8, false, 0), new MmioAccess(Mmio + 0xF8, 8, true, 0x55)], half.Requests);
        Assert.Equal(Mmio + 0xF8, cpu.Gpr[4]);
    }

    [Fact]
    public void AStackSlotThatIsNotTheFaultingAddressFallsBack()
    {
        var cpu = new MockCpu();
        cpu.Gpr[4] = Mmio + 0x10;
        Assert.Equal(VieStatus.Fallback, Run("51", Mmio, Mmio, cpu, new MockGuestMemory(), new MockDeviceHalf())); // slot is Mmio+8
    }
}
