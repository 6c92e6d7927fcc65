// Terminal input on its way into COM1: held while no driver listens (a driver's set-up would
// throw it away), then delivered one character time apart on the VM's clock (the first one
// character time after the driver starts listening), never past a full receive buffer. Character times are hand-derived from the 16550's divisor and frame.
using System.Collections.Generic;
using System.Threading;
using Hyve.Vmm;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class SerialInputTests
{
    private readonly VmClock _clock = new();
    private readonly SerialInput _input;
    private readonly Uart16550 _uart;
    private readonly List<bool> _irq = [];

    public SerialInputTests()
    {
        _input = new SerialInput(_clock, new Lock());
        _uart = new Uart16550(_ => { }, _irq.Add, _input.ReceiverChanged);
        _input.Uart = _uart;
    }

    private byte R(int reg) => (byte)_uart.Read((ushort)reg, 1);

    private void W(int reg, byte v) => _uart.Write((ushort)reg, 1, v);

    private bool DataReady => (R(5) & 1) != 0;

    // 115,200 / divisor baud, 10 bits a character (start, 8 data, 1 stop): divisor 1 is 86,805 ns.
    private const long CharacterAt115200 = 10 * 1_000_000_000L / 115_200;

    [Fact]
    public void CharacterTimeFollowsTheDivisorAndTheFrame()
    {
        W(3, 0x83);
        W(0, 1);
        W(1, 0);
        W(3, 0x03);                                          // 8N1 at 115,200
        Assert.Equal(CharacterAt115200, _uart.CharacterTimeNs);
        W(3, 0x80);
        W(0, 12);                                            // 9,600 baud
        W(3, 0x1F);                                          // 8 data, even parity, 2 stop: 12 bits
        Assert.Equal(12L * 12 * 1_000_000_000 / 115_200, _uart.CharacterTimeNs);
    }

    [Fact]
    public void InputWaitsUntilADriverListens()
    {
        foreach (byte b in "ls\n"u8)
            Assert.True(_input.Offer(b));
        _clock.Advance(1_000_000_000);
        Assert.Equal(0, R(5) & 1);                           // nothing arrived: no driver yet
        // A driver's set-up: FIFO on and cleared, then receive interrupts through OUT2.
        W(2, 0x07);
        W(3, 0x03);
        Assert.Equal(3, _input.Held);
        W(1, 0x01);
        W(4, 0x08);
        Assert.True(_uart.ReadyToReceive);
        _clock.Advance(0);
        Assert.Equal(3, _input.Held);                        // the first byte takes a character time on the line
        _clock.Advance(_uart.CharacterTimeNs);
        Assert.Equal(2, _input.Held);
        Assert.True(_irq[^1]);
        Assert.Equal((byte)'l', R(0));
    }

    [Fact]
    public void BytesArriveOneCharacterTimeApart()
    {
        W(3, 0x83);
        W(0, 1);
        W(3, 0x03);
        W(2, 0x01);
        W(1, 0x01);
        W(4, 0x08);
        foreach (byte b in "abc"u8)
            _input.Offer(b);
        _clock.Advance(CharacterAt115200);
        Assert.Equal(2, _input.Held);
        _clock.Advance(CharacterAt115200 - 1);
        Assert.Equal(2, _input.Held);                        // not yet
        _clock.Advance(1);
        Assert.Equal(1, _input.Held);
        _clock.Advance(CharacterAt115200);
        Assert.Equal(0, _input.Held);
        Assert.Equal("abc"u8.ToArray(), new[] { R(0), R(0), R(0) });
        Assert.False(DataReady);
    }

    [Fact]
    public void AFullReceiveBufferHoldsTheRestUntilTheGuestReads()
    {
        W(1, 0x01);
        W(4, 0x08);                                          // no FIFO: one byte at a time
        _input.Offer(1);
        _input.Offer(2);
        _clock.Advance(0);
        _clock.Advance(10 * CharacterAt115200 * 12);         // long past the line's pace
        Assert.Equal(1, _input.Held);                        // the holding register is full
        Assert.Equal(0, _uart.Overruns);
        Assert.Equal(1, R(0));                               // the guest reads: room again
        _clock.Advance(_uart.CharacterTimeNs);
        Assert.Equal(0, _input.Held);
        Assert.Equal(2, R(0));
    }

    [Fact]
    public void APollingDriverIsListeningToo()
    {
        _input.Offer((byte)'y');
        for (int i = 0; i < 15; i++)
            Assert.False(DataReady);                         // 15 status reads: still a probe
        _clock.Advance(0);
        Assert.Equal(1, _input.Held);
        Assert.False(DataReady);                             // the 16th: a driver polling for input
        _clock.Advance(_uart.CharacterTimeNs);
        Assert.True(DataReady);
        Assert.Equal((byte)'y', R(0));
        // Sending a byte ends the run of status reads (they were waiting to transmit).
        W(0, (byte)'!');
        Assert.False(_uart.ReadyToReceive);
    }

    [Fact]
    public void OfferRefusesPastCapacity()
    {
        for (int i = 0; i < SerialInput.Capacity; i++)
            Assert.True(_input.Offer(0x20));
        Assert.False(_input.Offer(0x20));
    }
}
