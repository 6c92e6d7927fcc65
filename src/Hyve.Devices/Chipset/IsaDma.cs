// The PC's ISA DMA: two 8237 controllers (channels 0-3 at 0x00-0x0F for bytes, 4-7 at
// 0xC0-0xDF for words) and their page registers at 0x80-0x8F. A device on a channel (the floppy
// controller on channel 2) moves its bytes through Transfer, which follows the channel's
// address, count, direction and mask as the guest programmed them; the transfer stops at the
// terminal count. Word channels are registered so their programming is accepted; no device uses
// them yet.
using System;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices.Chipset;

/// <summary>ISA DMA channels 0-7.</summary>
public sealed class IsaDma
{
    private readonly GuestMemory _memory;
    private readonly Channel[] _channels = new Channel[8];
    private readonly bool[] _flipFlop = new bool[2];
    private readonly byte[] _pages = new byte[16];

    /// <summary>DMA into and out of <paramref name="memory"/>.</summary>
    public IsaDma(GuestMemory memory)
    {
        _memory = memory;
        for (int i = 0; i < 8; i++)
            _channels[i] = new Channel();
    }

    private sealed class Channel
    {
        public ushort BaseAddress, Address, BaseCount, Count;
        public byte Mode;
        public bool Masked = true, TerminalCount, Ended;
    }

    // Page register index (port - 0x80) of each channel.
    private static ReadOnlySpan<byte> PageIndex => [7, 3, 1, 2, 0xF, 0xB, 9, 0xA];

    /// <summary>Registers the controllers' and page registers' ports.</summary>
    public void Register(PortBus ports)
    {
        ArgumentNullException.ThrowIfNull(ports);
        ports.Register(0x00, 16, new Controller(this, 0));
        ports.Register(0xC0, 32, new Controller(this, 1));
        ports.Register(0x80, 16, new Pages(this));
    }

    /// <summary>Moves up to <paramref name="data"/>'s length between a device and memory on
    /// <paramref name="channel"/> (to memory when <paramref name="toMemory"/>); the bytes moved,
    /// which is fewer when the channel reaches its terminal count, and 0 when it is masked or
    /// programmed for the other direction.</summary>
    public int Transfer(int channel, Span<byte> data, bool toMemory)
    {
        Channel c = _channels[channel];
        c.Ended = false;
        int type = (c.Mode >> 2) & 3; // 1: write (device to memory), 2: read (memory to device)
        if (c.Masked || type != (toMemory ? 1 : 2))
            return 0;
        bool down = (c.Mode & 0x20) != 0;
        int moved = 0;
        while (moved < data.Length)
        {
            ulong gpa = ((ulong)_pages[PageIndex[channel]] << 16) | c.Address;
            Span<byte> one = data.Slice(moved, 1);
            if (toMemory)
                _memory.WriteRam(gpa, one);
            else if (!_memory.ReadRam(gpa, one))
                one[0] = 0xFF; // not RAM: the bus floats
            moved++;
            c.Address = (ushort)(down ? c.Address - 1 : c.Address + 1);
            if (c.Count-- == 0)
            {
                c.TerminalCount = c.Ended = true;
                if ((c.Mode & 0x10) != 0)
                {
                    c.Address = c.BaseAddress; // autoinitialize
                    c.Count = c.BaseCount;
                }
                else
                {
                    c.Masked = true;
                }
                break;
            }
        }
        return moved;
    }

    /// <summary>Whether the last <see cref="Transfer"/> on <paramref name="channel"/> ended at its
    /// terminal count (the device's operation ends there).</summary>
    public bool Finished(int channel) => _channels[channel].Ended;

    private sealed class Controller(IsaDma dma, int which) : IPortHandler
    {
        // The second controller's registers sit on even ports, two apart.
        private int Register(ushort offset) => which == 0 ? offset : offset >> 1;

        private Channel ChannelOf(int low2) => dma._channels[4 * which + low2];

        public uint Read(ushort offset, int bytes)
        {
            int r = Register(offset);
            if (r < 8)
            {
                Channel c = ChannelOf(r >> 1);
                ushort v = (r & 1) == 0 ? c.Address : c.Count;
                bool high = dma._flipFlop[which];
                dma._flipFlop[which] = !high;
                return high ? (uint)(v >> 8) : (uint)(v & 0xFF);
            }
            if (r == 8)
            {
                // Status: terminal count per channel (cleared by reading).
                uint status = 0;
                for (int i = 0; i < 4; i++)
                {
                    Channel c = ChannelOf(i);
                    if (c.TerminalCount)
                        status |= 1u << i;
                    c.TerminalCount = false;
                }
                return status;
            }
            return 0;
        }

        public void Write(ushort offset, int bytes, uint value)
        {
            int r = Register(offset);
            byte v = (byte)value;
            if (r < 8)
            {
                Channel c = ChannelOf(r >> 1);
                bool high = dma._flipFlop[which];
                dma._flipFlop[which] = !high;
                if ((r & 1) == 0)
                {
                    c.BaseAddress = high ? (ushort)((c.BaseAddress & 0xFF) | (v << 8)) : (ushort)((c.BaseAddress & 0xFF00) | v);
                    c.Address = c.BaseAddress;
                }
                else
                {
                    c.BaseCount = high ? (ushort)((c.BaseCount & 0xFF) | (v << 8)) : (ushort)((c.BaseCount & 0xFF00) | v);
                    c.Count = c.BaseCount;
                }
                return;
            }
            switch (r)
            {
                case 0xA: // single mask bit
                    ChannelOf(v & 3).Masked = (v & 4) != 0;
                    break;
                case 0xB: // mode
                    ChannelOf(v & 3).Mode = v;
                    break;
                case 0xC: // clear the byte-pointer flip-flop
                    dma._flipFlop[which] = false;
                    break;
                case 0xD: // master clear
                    dma._flipFlop[which] = false;
                    for (int i = 0; i < 4; i++)
                        ChannelOf(i).Masked = true;
                    break;
                case 0xE: // clear all masks
                    for (int i = 0; i < 4; i++)
                        ChannelOf(i).Masked = false;
                    break;
                case 0xF: // write all mask bits
                    for (int i = 0; i < 4; i++)
                        ChannelOf(i).Masked = ((v >> i) & 1) != 0;
                    break;
            }
        }
    }

    private sealed class Pages(IsaDma dma) : IPortHandler
    {
        public uint Read(ushort offset, int bytes) => dma._pages[offset];

        public void Write(ushort offset, int bytes, uint value) => dma._pages[offset] = (byte)value;
    }
}
