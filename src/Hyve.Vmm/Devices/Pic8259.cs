// The 8259A pair (master at 0x20, slave at 0xA0 on the master's IRQ 2) with the ELCR at
// 0x4D0/0x4D1: initialization words, masks, edge and level triggering, fully nested priority
// with rotation, specific and non-specific EOI, auto-EOI, IRR/ISR reads and poll mode.
using System;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm.Devices;

/// <summary>The PC's two cascaded 8259A interrupt controllers.</summary>
public sealed class Pic8259 : IExtIntSource
{
    private readonly Chip _master = new(0xF8);
    private readonly Chip _slave = new(0xDE);
    private readonly Action _changed;

    /// <summary>A PIC pair; <paramref name="changed"/> runs when its INTR output may have changed
    /// (the bootstrap processor is kicked).</summary>
    public Pic8259(Action changed) => _changed = changed;

    /// <summary>Registers ports 0x20-0x21, 0xA0-0xA1 and 0x4D0-0x4D1.</summary>
    public void Register(PortHooks ports)
    {
        ports.Register(0x20, 2, new Port(this, _master));
        ports.Register(0xA0, 2, new Port(this, _slave));
        ports.Register(0x4D0, 2, new Elcr(this));
    }

    /// <summary>Sets ISA interrupt line <paramref name="irq"/> (0-15) high or low.</summary>
    public void SetIrq(int irq, bool level)
    {
        if (irq is < 0 or > 15 or 2)
            return; // IRQ 2 is the cascade input
        if (irq < 8)
            _master.SetLine(irq, level);
        else
            _slave.SetLine(irq - 8, level);
        Update();
    }

    /// <summary>Whether INTR is asserted (an unmasked request outranks everything in service).</summary>
    public bool Intr => _master.Highest() >= 0;

    /// <inheritdoc/>
    public int PeekVector()
    {
        int irq = _master.Highest();
        if (irq < 0)
            return -1;
        if (irq != 2)
            return _master.VectorBase + irq;
        int s = _slave.Highest();
        return _slave.VectorBase + (s < 0 ? 7 : s);
    }

    /// <inheritdoc/>
    public int Acknowledge()
    {
        int irq = _master.Highest();
        int vector;
        if (irq < 0)
        {
            vector = _master.VectorBase + 7; // spurious: IRQ 7 without setting ISR
        }
        else
        {
            _master.Ack(irq);
            if (irq == 2)
            {
                int s = _slave.Highest();
                if (s < 0)
                    vector = _slave.VectorBase + 7; // spurious on the slave
                else
                {
                    _slave.Ack(s);
                    vector = _slave.VectorBase + s;
                }
            }
            else
            {
                vector = _master.VectorBase + irq;
            }
        }
        Update();
        return vector;
    }

    // The slave's INTR is the master's IRQ 2 input, level-sensitive.
    private void Update()
    {
        _master.SetLine(2, _slave.Highest() >= 0);
        _changed();
    }

    /// <summary>One 8259A.</summary>
    private sealed class Chip(byte elcrMask)
    {
        public byte Irr, Isr, Imr, Elcr, Lines, VectorBase;
        public readonly byte ElcrMask = elcrMask;
        private byte _priorityAdd; // the IRQ with the highest priority
        private int _initState;
        private bool _needIcw4, _single, _autoEoi, _rotateOnAutoEoi, _readIsr, _poll, _specialMask;

        public void SetLine(int irq, bool level)
        {
            byte mask = (byte)(1 << irq);
            if ((Elcr & mask) != 0)
            {
                // Level: the request follows the line.
                if (level)
                    Irr |= mask;
                else
                    Irr &= (byte)~mask;
            }
            else if (level && (Lines & mask) == 0)
            {
                Irr |= mask; // edge: a rising edge latches a request
            }
            Lines = level ? (byte)(Lines | mask) : (byte)(Lines & ~mask);
        }

        // Priority rank of the highest-priority bit of mask (0 = highest), or 8.
        private int Rank(byte mask)
        {
            if (mask == 0)
                return 8;
            int rank = 0;
            while ((mask & (1 << ((rank + _priorityAdd) & 7))) == 0)
                rank++;
            return rank;
        }

        // The IRQ this chip would present, or -1.
        public int Highest()
        {
            int rank = Rank((byte)(Irr & ~Imr));
            if (rank == 8)
                return -1;
            byte inService = _specialMask ? (byte)(Isr & ~Imr) : Isr;
            if (rank < Rank(inService))
                return (rank + _priorityAdd) & 7;
            return -1;
        }

        public void Ack(int irq)
        {
            byte mask = (byte)(1 << irq);
            if (_autoEoi)
            {
                if (_rotateOnAutoEoi)
                    _priorityAdd = (byte)((irq + 1) & 7);
            }
            else
            {
                Isr |= mask;
            }
            if ((Elcr & mask) == 0)
                Irr &= (byte)~mask; // edge requests are consumed by the acknowledge
        }

        public byte Read(int port)
        {
            if (port == 1)
                return Imr;
            if (_poll)
            {
                _poll = false;
                int irq = Highest();
                if (irq < 0)
                    return 0;
                Ack(irq);
                return (byte)(0x80 | irq);
            }
            return _readIsr ? Isr : Irr;
        }

        public void Write(int port, byte v)
        {
            if (port == 0)
            {
                if ((v & 0x10) != 0)
                {
                    // ICW1: start initialization; the mask, requests and service state are cleared.
                    Imr = 0;
                    Isr = 0;
                    Irr = 0;
                    Lines = 0;
                    _priorityAdd = 0;
                    _autoEoi = _rotateOnAutoEoi = _readIsr = _poll = _specialMask = false;
                    _needIcw4 = (v & 1) != 0;
                    _single = (v & 2) != 0;
                    _initState = 1;
                }
                else if ((v & 0x08) != 0)
                {
                    // OCW3.
                    if ((v & 4) != 0)
                        _poll = true;
                    if ((v & 2) != 0)
                        _readIsr = (v & 1) != 0;
                    if ((v & 0x40) != 0)
                        _specialMask = (v & 0x20) != 0;
                }
                else
                {
                    Ocw2(v);
                }
                return;
            }
            switch (_initState)
            {
                case 0: Imr = v; break;                              // OCW1
                case 1:                                               // ICW2
                    VectorBase = (byte)(v & 0xF8);
                    _initState = _single ? (_needIcw4 ? 3 : 0) : 2;
                    break;
                case 2: _initState = _needIcw4 ? 3 : 0; break;       // ICW3 (cascade wiring is fixed)
                default:                                              // ICW4
                    _autoEoi = (v & 2) != 0;
                    _initState = 0;
                    break;
            }
        }

        private void Ocw2(byte v)
        {
            int command = v >> 5;
            switch (command)
            {
                case 0: _rotateOnAutoEoi = false; break;
                case 4: _rotateOnAutoEoi = true; break;
                case 1 or 5: // non-specific EOI (with rotation for 5)
                    {
                        int rank = Rank(Isr);
                        if (rank == 8)
                            break;
                        int irq = (rank + _priorityAdd) & 7;
                        Isr &= (byte)~(1 << irq);
                        if (command == 5)
                            _priorityAdd = (byte)((irq + 1) & 7);
                        break;
                    }
                case 3 or 7: // specific EOI (with rotation for 7)
                    {
                        int irq = v & 7;
                        Isr &= (byte)~(1 << irq);
                        if (command == 7)
                            _priorityAdd = (byte)((irq + 1) & 7);
                        break;
                    }
                case 6: _priorityAdd = (byte)((v + 1) & 7); break; // set priority: v & 7 becomes the lowest
            }
        }
    }

    private sealed class Port(Pic8259 pic, Chip chip) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => chip.Read(offset);

        public void Write(ushort offset, int bytes, uint value)
        {
            chip.Write(offset, (byte)value);
            pic.Update();
        }
    }

    private sealed class Elcr(Pic8259 pic) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => offset == 0 ? pic._master.Elcr : pic._slave.Elcr;

        public void Write(ushort offset, int bytes, uint value)
        {
            Chip c = offset == 0 ? pic._master : pic._slave;
            c.Elcr = (byte)(value & c.ElcrMask);
            pic.Update();
        }
    }
}
