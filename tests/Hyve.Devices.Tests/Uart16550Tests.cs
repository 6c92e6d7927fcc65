// The 16550A register model: divisor latches, FIFOs and trigger levels, the interrupt sources
// in priority order with OUT2 gating, loopback, the modem lines and overruns.
using System.Collections.Generic;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class Uart16550Tests
{
    private readonly List<byte> _sent = [];
    private readonly List<bool> _irq = [];
    private readonly Uart16550 _uart;

    public Uart16550Tests() => _uart = new Uart16550(_sent.Add, _irq.Add);

    private byte R(int reg) => (byte)_uart.Read((ushort)reg, 1);

    private void W(int reg, byte v) => _uart.Write((ushort)reg, 1, v);

    private bool Irq => _irq.Count > 0 && _irq[^1];

    [Fact]
    public void TransmittedBytesLeaveAtOnceAndTheHoldingRegisterStaysEmpty()
    {
        W(0, (byte)'h');
        W(0, (byte)'i');
        Assert.Equal("hi"u8.ToArray(), _sent);
        Assert.Equal(0x60, R(5) & 0x60); // THRE and TEMT
    }

    [Fact]
    public void DivisorLatchesShadowDataAndInterruptEnable()
    {
        W(1, 0x05);
        W(3, 0x80);          // DLAB
        W(0, 0x01);
        W(1, 0x02);
        Assert.Equal(0x01, R(0));
        Assert.Equal(0x02, R(1));
        W(3, 0x03);
        Assert.Equal(0x05, R(1));
        Assert.Empty(_sent);  // the divisor write did not transmit
    }

    [Fact]
    public void ReceivedBytesRaiseTheDataInterruptOnlyWithOut2()
    {
        W(1, 0x01);          // receive-data interrupt
        _uart.Receive(0x41);
        Assert.False(Irq);   // OUT2 low: the PC's interrupt line is gated off
        Assert.Equal(0xC4, R(2) | 0xC0); // but IIR still reports it
        W(4, 0x08);          // OUT2
        Assert.True(Irq);
        Assert.Equal(1, R(5) & 1);
        Assert.Equal(0x41, R(0));
        Assert.False(Irq);
        Assert.Equal(0x01, R(2));
    }

    [Fact]
    public void FifoTriggerLevelDecidesBetweenDataAvailableAndTimeout()
    {
        W(2, 0x81);          // FIFOs on, trigger 8
        W(1, 0x01);
        W(4, 0x08);
        for (int i = 0; i < 7; i++)
            _uart.Receive((byte)i);
        Assert.Equal(0xCC, R(2)); // below the trigger: character timeout
        _uart.Receive(7);
        Assert.Equal(0xC4, R(2));
        for (int i = 0; i < 8; i++)
            Assert.Equal(i, R(0));
        Assert.Equal(0xC1, R(2));
    }

    [Fact]
    public void OverrunLosesTheByteAndReportsThroughTheLineStatusInterrupt()
    {
        W(2, 0x01);
        for (int i = 0; i < Uart16550.FifoSize; i++)
            _uart.Receive((byte)i);
        Assert.False(_uart.CanReceive);
        _uart.Receive(0xEE);
        Assert.Equal(1, _uart.Overruns);
        W(1, 0x05);          // line status and data interrupts
        W(4, 0x08);
        Assert.Equal(0xC6, R(2)); // line status outranks data
        Assert.Equal(0x03, R(5) & 0x03); // DR and OE; reading clears OE
        Assert.Equal(0x01, R(5) & 0x03);
        Assert.Equal(0xC4, R(2) & 0xCF);
    }

    [Fact]
    public void ThreInterruptFiresOnEnableAndClearsWhenIirIsRead()
    {
        W(4, 0x08);
        W(1, 0x02);
        Assert.True(Irq);
        Assert.Equal(0x02, R(2));
        Assert.False(Irq);
        Assert.Equal(0x01, R(2));
        W(0, 0x21);          // the holding register empties again: THRE once more
        Assert.True(Irq);
    }

    [Fact]
    public void LoopbackFeedsTransmittedBytesBackAndWiresTheModemLines()
    {
        W(2, 0x07);
        W(4, 0x10 | 0x03);   // loopback, DTR, RTS
        W(0, 0x55);
        W(0, 0xAA);
        Assert.Empty(_sent);
        Assert.Equal(0x55, R(0));
        Assert.Equal(0xAA, R(0));
        Assert.Equal(0x30, R(6) & 0xF0); // CTS from RTS, DSR from DTR
        _uart.Receive(0x99);             // the line is disconnected in loopback
        Assert.Equal(0, R(5) & 1);
        W(4, 0x00);
        Assert.Equal(0xB0, R(6) & 0xF0); // a terminal: CTS, DSR, DCD
    }

    [Fact]
    public void ModemStatusDeltasRaiseTheirInterrupt()
    {
        W(4, 0x10 | 0x08);   // loopback with OUT2
        W(1, 0x08);
        _ = R(6);
        W(4, 0x10 | 0x08 | 0x02); // RTS up: CTS changes
        Assert.Equal(0x00, R(2) & 0x0F);
        Assert.Equal(0x01, R(6) & 0x0F); // DCTS, cleared by the read
        Assert.Equal(0x01, R(2) & 0x0F);
    }

    [Fact]
    public void ScratchRegisterHoldsItsValue()
    {
        W(7, 0x5A);
        Assert.Equal(0x5A, R(7));
    }
}
