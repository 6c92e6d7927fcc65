// The 16550A UART register model: divisor latches, 16-byte FIFOs with receive trigger levels,
// the four interrupt sources in the chip's priority order, loopback, and the modem lines. The
// transmitter is infinitely fast (a written byte leaves at once); the interrupt output is gated
// by MCR.OUT2, as on a PC's serial port. The receiver tells whether a driver listens (receive
// interrupts enabled through OUT2, or the line status polled) and how long a character takes
// on the line, so a terminal's input can wait for the guest and arrive at the line's pace
// (SerialInput). Wiring (ports, IRQ line, the terminal) is the caller's.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>A 16550A UART.</summary>
public sealed class Uart16550 : IPortHandler
{
    /// <summary>COM1's ports.</summary>
    public const ushort Com1Port = 0x3F8;
    /// <summary>COM1's ISA interrupt line.</summary>
    public const int Com1Irq = 4;
    /// <summary>FIFO depth.</summary>
    public const int FifoSize = 16;

    // Line status bits.
    private const byte LsrDr = 0x01, LsrOe = 0x02, LsrThre = 0x20, LsrTemt = 0x40;
    // Interrupt enable bits.
    private const byte IerRx = 0x01, IerThre = 0x02, IerLine = 0x04, IerModem = 0x08;
    // Modem control bits.
    private const byte McrDtr = 0x01, McrRts = 0x02, McrOut1 = 0x04, McrOut2 = 0x08, McrLoop = 0x10;

    private readonly Queue<byte> _rx = new();
    private readonly Action<byte> _transmit;
    private readonly Action<bool> _irq;
    private readonly Action? _receiverChanged;
    private byte _ier, _lcr, _mcr, _lsrErrors, _scr, _dll = 0x0C, _dlm, _fcr, _msrDelta;
    private bool _threPending, _irqLevel;
    private int _statusPolls;

    // Line-status reads in a row without a byte sent between them that mark a driver polling for
    // input. A driver sending polls once per byte (for THRE, which is always set here), and a
    // driver probing the chip reads it a few times.
    private const int PollingReads = 16;

    /// <summary>A UART that sends transmitted bytes to <paramref name="transmit"/> and drives its
    /// interrupt line through <paramref name="irq"/>; <paramref name="receiverChanged"/>, when
    /// given, is called whenever the guest may have become ready for another received byte (it
    /// read one, or reprogrammed the chip).</summary>
    public Uart16550(Action<byte> transmit, Action<bool> irq, Action? receiverChanged = null)
    {
        _transmit = transmit;
        _irq = irq;
        _receiverChanged = receiverChanged;
    }

    /// <summary>Bytes received while the receive buffer was full (overrun).</summary>
    public long Overruns { get; private set; }

    /// <summary>Whether the receive buffer can take another byte.</summary>
    public bool CanReceive => _rx.Count < (FifoEnabled ? FifoSize : 1);

    /// <summary>Whether a driver is listening: receive interrupts are enabled and reach the
    /// interrupt line (MCR.OUT2), or the guest is polling the line status. Until then a byte
    /// that arrived would be thrown away by the driver's set-up (FIFO resets, register reads).</summary>
    public bool ReadyToReceive =>
        (_mcr & McrLoop) == 0 && ((_ier & IerRx) != 0 && (_mcr & McrOut2) != 0 || _statusPolls >= PollingReads);

    /// <summary>How long one character takes on the line, in nanoseconds, at the programmed
    /// divisor (115,200 / divisor bits per second) and frame (start bit, 5-8 data bits, parity,
    /// 1 or 2 stop bits).</summary>
    public long CharacterTimeNs
    {
        get
        {
            int divisor = _dll | _dlm << 8;
            int bits = 1 + 5 + (_lcr & 3) + ((_lcr & 8) != 0 ? 1 : 0) + ((_lcr & 4) != 0 ? 2 : 1);
            return bits * (divisor == 0 ? 0x10000L : divisor) * 1_000_000_000L / 115_200;
        }
    }

    private bool FifoEnabled => (_fcr & 1) != 0;
    private bool Dlab => (_lcr & 0x80) != 0;

    private int Trigger => (_fcr >> 6) switch { 0 => 1, 1 => 4, 2 => 8, _ => 14 };

    /// <summary>A byte arriving on the line (from the terminal). Past a full buffer it is an
    /// overrun: the byte is lost and LSR.OE set, as on the chip; callers that must not lose input
    /// wait for <see cref="CanReceive"/>.</summary>
    public void Receive(byte value)
    {
        if ((_mcr & McrLoop) != 0)
            return; // in loopback the line is disconnected
        Enqueue(value);
        Update();
    }

    private void Enqueue(byte value)
    {
        if (!CanReceive)
        {
            _lsrErrors |= LsrOe;
            Overruns++;
            return;
        }
        _rx.Enqueue(value);
    }

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes)
    {
        int reg = offset & 7;
        bool consumed = reg == 0 && !Dlab && _rx.Count > 0;
        uint v = ReadRegister(reg);
        if (reg == 5)
            _statusPolls = Math.Min(_statusPolls + 1, PollingReads);
        Update();
        if (consumed || reg == 5 && _statusPolls == PollingReads)
            _receiverChanged?.Invoke();
        return bytes == 1 ? v : v | 0xFFFF_FF00u & (bytes == 2 ? 0xFFFFu : 0xFFFF_FFFFu);
    }

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        int reg = offset & 7;
        if (reg == 0 && !Dlab)
            _statusPolls = 0; // sending: the status reads were waiting for THRE
        WriteRegister(reg, (byte)value);
        Update();
        if (reg is 1 or 2 or 4)
            _receiverChanged?.Invoke();
    }

    private byte ReadRegister(int reg)
    {
        switch (reg)
        {
            case 0:
                if (Dlab)
                    return _dll;
                return _rx.Count > 0 ? _rx.Dequeue() : (byte)0;
            case 1:
                return Dlab ? _dlm : _ier;
            case 2:
                {
                    byte iir = Iir();
                    if ((iir & 0x0F) == 0x02)
                        _threPending = false; // reading IIR with THRE as the source clears it
                    return (byte)(iir | (FifoEnabled ? 0xC0 : 0));
                }
            case 3:
                return _lcr;
            case 4:
                return _mcr;
            case 5:
                {
                    byte lsr = (byte)(LsrThre | LsrTemt | _lsrErrors | (_rx.Count > 0 ? LsrDr : 0));
                    _lsrErrors = 0;
                    return lsr;
                }
            case 6:
                {
                    byte msr = (byte)(ModemLines() | _msrDelta);
                    _msrDelta = 0;
                    return msr;
                }
            default:
                return _scr;
        }
    }

    private void WriteRegister(int reg, byte value)
    {
        switch (reg)
        {
            case 0:
                if (Dlab)
                {
                    _dll = value;
                    return;
                }
                if ((_mcr & McrLoop) != 0)
                    Enqueue(value);
                else
                    _transmit(value);
                _threPending = true; // the holding register is empty again at once
                return;
            case 1:
                if (Dlab)
                {
                    _dlm = value;
                    return;
                }
                // Enabling the THRE interrupt while the holding register is empty raises it.
                if ((value & IerThre) != 0 && (_ier & IerThre) == 0)
                    _threPending = true;
                _ier = (byte)(value & 0x0F);
                return;
            case 2:
                if (((value ^ _fcr) & 1) != 0 || (value & 2) != 0)
                    _rx.Clear();
                _fcr = (byte)(value & 0xC1);
                return;
            case 3:
                _lcr = value;
                return;
            case 4:
                {
                    byte before = ModemLines();
                    _mcr = (byte)(value & 0x1F);
                    byte after = ModemLines();
                    // Delta bits: CTS, DSR, DCD changes, and RI's trailing edge.
                    byte changed = (byte)((before ^ after) & 0xB0);
                    _msrDelta |= (byte)((changed >> 4) | ((before & ~after & 0x40) != 0 ? 0x04 : 0));
                    return;
                }
            case 5:
            case 6:
                return; // read-only (factory test on real chips)
            default:
                _scr = value;
                return;
        }
    }

    // CTS, DSR, RI, DCD: wired back from RTS, DTR, OUT1, OUT2 in loopback; otherwise a terminal
    // that is always there (CTS, DSR and DCD up).
    private byte ModemLines()
    {
        if ((_mcr & McrLoop) == 0)
            return 0xB0;
        int v = ((_mcr & McrRts) != 0 ? 0x10 : 0) | ((_mcr & McrDtr) != 0 ? 0x20 : 0)
            | ((_mcr & McrOut1) != 0 ? 0x40 : 0) | ((_mcr & McrOut2) != 0 ? 0x80 : 0);
        return (byte)v;
    }

    // The highest-priority pending source, in the chip's order.
    private byte Iir()
    {
        if ((_ier & IerLine) != 0 && (_lsrErrors & 0x1E) != 0)
            return 0x06;
        if ((_ier & IerRx) != 0 && _rx.Count > 0)
            return (byte)(!FifoEnabled || _rx.Count >= Trigger ? 0x04 : 0x0C);
        if ((_ier & IerThre) != 0 && _threPending)
            return 0x02;
        if ((_ier & IerModem) != 0 && _msrDelta != 0)
            return 0x00;
        return 0x01;
    }

    private void Update()
    {
        bool level = (Iir() & 1) == 0 && (_mcr & McrOut2) != 0;
        if (level != _irqLevel)
        {
            _irqLevel = level;
            _irq(level);
        }
    }
}
