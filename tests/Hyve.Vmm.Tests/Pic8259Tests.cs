// The 8259A pair against the datasheet: initialization, masks, edge and level triggering,
// priorities, EOI forms, rotation, auto-EOI, register reads, poll, cascade and spurious IRQ 7.
using Hyve.Vmm.Devices;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class Pic8259Tests
{
    private readonly PortHooks _ports = new();
    private readonly Pic8259 _pic;
    private int _changes;

    public Pic8259Tests()
    {
        _pic = new Pic8259(() => _changes++);
        _pic.Register(_ports);
    }

    // The PC BIOS programming: vectors 0x08 and 0x70, cascade on IRQ 2, 8086 mode.
    private void Initialize(bool autoEoi = false)
    {
        _ports.Out(0x20, 0x11); _ports.Out(0x21, 0x08); _ports.Out(0x21, 0x04); _ports.Out(0x21, (byte)(autoEoi ? 0x03 : 0x01));
        _ports.Out(0xA0, 0x11); _ports.Out(0xA1, 0x70); _ports.Out(0xA1, 0x02); _ports.Out(0xA1, 0x01);
    }

    [Fact]
    public void EdgeRequestsAreLatchedAndMasksHoldThemBack()
    {
        Initialize();
        _ports.Out(0x21, 0xFE);               // only IRQ 0 unmasked
        Assert.Equal(0xFE, _ports.In(0x21));
        _pic.SetIrq(1, true);
        Assert.False(_pic.Intr);        // masked
        _pic.SetIrq(0, true);
        Assert.True(_pic.Intr);
        Assert.Equal(0x08, _pic.Acknowledge());
        _pic.SetIrq(0, false);
        _pic.SetIrq(0, true);           // a new edge while IRQ 0 is in service
        Assert.False(_pic.Intr);        // same priority: held until EOI
        _ports.Out(0x20, 0x20);                // non-specific EOI
        Assert.True(_pic.Intr);
        _ports.Out(0x21, 0x00);
        Assert.Equal(0x08, _pic.Acknowledge());
        _ports.Out(0x20, 0x20);
        Assert.Equal(0x09, _pic.Acknowledge()); // IRQ 1 was latched while masked
        Assert.True(_changes > 0);
    }

    [Fact]
    public void LevelTriggeredLinesFollowTheirLevel()
    {
        Initialize();
        _ports.Out(0x4D1, 0x0E);               // IRQs 9-11 level-triggered
        Assert.Equal(0x0E, _ports.In(0x4D1));
        _ports.Out(0x4D0, 0xFF);
        Assert.Equal(0xF8, _ports.In(0x4D0));  // IRQ 0-2 cannot be level-triggered
        _pic.SetIrq(10, true);
        Assert.Equal(0x72, _pic.PeekVector());
        _pic.SetIrq(10, false);
        // The request went away with the level, but the master had latched the cascade edge: an
        // acknowledge now gets the slave's spurious IRQ 15, as on the real part.
        Assert.Equal(0x77, _pic.PeekVector());
        _ports.Out(0xA0, 0x0A);
        Assert.Equal(0x00, _ports.In(0xA0)); // nothing requested on the slave
        _pic.SetIrq(10, true);
        Assert.Equal(0x72, _pic.Acknowledge());
        _ports.Out(0xA0, 0x20);
        _ports.Out(0x20, 0x20);
        Assert.Equal(0x72, _pic.PeekVector()); // still high: requested again
    }

    [Fact]
    public void PriorityEoiFormsAndRegisterReads()
    {
        Initialize();
        _pic.SetIrq(5, true);
        _pic.SetIrq(3, true);
        Assert.Equal(0x0B, _pic.Acknowledge());      // IRQ 3 outranks IRQ 5
        _ports.Out(0x20, 0x0A);                              // OCW3: read IRR
        Assert.Equal(0x20, _ports.In(0x20));
        _ports.Out(0x20, 0x0B);                              // OCW3: read ISR
        Assert.Equal(0x08, _ports.In(0x20));
        _pic.SetIrq(1, true);
        Assert.Equal(0x09, _pic.Acknowledge());      // IRQ 1 nests over IRQ 3
        _ports.Out(0x20, 0x63);                              // specific EOI for IRQ 3
        Assert.Equal(0x02, _ports.In(0x20));                 // IRQ 1 still in service
        _ports.Out(0x20, 0x20);
        Assert.Equal(0x00, _ports.In(0x20));
        Assert.Equal(0x0D, _pic.Acknowledge());
        _ports.Out(0x20, 0xA0);                              // rotate on non-specific EOI: IRQ 5 becomes the lowest
        _pic.SetIrq(4, true);
        _pic.SetIrq(6, true);
        Assert.Equal(0x0E, _pic.Acknowledge());      // IRQ 6 now outranks IRQ 4
        _ports.Out(0x20, 0xC7);                              // set priority: IRQ 7 lowest, IRQ 0 highest again
        _ports.Out(0x20, 0x66);
        Assert.Equal(0x0C, _pic.Acknowledge());
    }

    [Fact]
    public void AutoEoiPollAndSpuriousInterrupts()
    {
        Initialize(autoEoi: true);
        _pic.SetIrq(4, true);
        Assert.Equal(0x0C, _pic.Acknowledge());
        _ports.Out(0x20, 0x0B);
        Assert.Equal(0x00, _ports.In(0x20));                 // nothing stays in service
        Assert.Equal(0x0F, _pic.Acknowledge());      // nothing pending: spurious IRQ 7

        _pic.SetIrq(6, true);
        _ports.Out(0x20, 0x0C);                              // OCW3 poll
        Assert.Equal(0x86, _ports.In(0x20));
        Assert.Equal(-1, _pic.PeekVector());
    }

    [Fact]
    public void TheSlaveCascadesThroughIrqTwo()
    {
        Initialize();
        _pic.SetIrq(12, true);
        Assert.True(_pic.Intr);
        Assert.Equal(0x74, _pic.Acknowledge());
        _pic.SetIrq(8, true);                         // higher priority on the slave, but the master's IRQ 2 is in service
        Assert.False(_pic.Intr);
        _ports.Out(0xA0, 0x20);
        _ports.Out(0x20, 0x20);
        Assert.Equal(0x70, _pic.Acknowledge());
        _ports.Out(0xA1, 0xFF);                              // the whole slave masked
        _pic.SetIrq(9, true);
        _ports.Out(0xA0, 0x20);
        _ports.Out(0x20, 0x20);
        Assert.False(_pic.Intr);
    }
}
