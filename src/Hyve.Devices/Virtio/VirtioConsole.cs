// The virtio console device (virtio 1.x, section 5.3) with a single port and no multiport
// feature: what the driver puts on the transmit queue goes to the console stream; the receive
// queue holds buffers for input, which this machine sends to COM1 instead (so it stays empty).
using System;
using System.Collections.Generic;
using Hyve.Vmm;

namespace Hyve.Devices.Virtio;

/// <summary>A virtio-console device writing to an output.</summary>
public sealed class VirtioConsole(GuestMemory memory, Action<ReadOnlySpan<byte>> output) : IVirtioDevice
{
    private readonly List<VirtqBuffer> _buffers = [];

    /// <summary>Bytes the guest wrote.</summary>
    public long Written { get; private set; }

    /// <inheritdoc/>
    public uint DeviceId => 3;

    /// <inheritdoc/>
    public ulong Features => 0;

    /// <inheritdoc/>
    public int QueueCount => 2;

    /// <inheritdoc/>
    public uint ReadConfig(int offset, int bytes) => offset switch
    {
        0 => 80,  // cols (with VIRTIO_CONSOLE_F_SIZE, which is not offered; harmless)
        2 => 25,  // rows
        _ => 0,
    };

    /// <inheritdoc/>
    public void WriteConfig(int offset, int bytes, uint value)
    {
    }

    /// <inheritdoc/>
    public void Reset()
    {
    }

    /// <inheritdoc/>
    public bool Notify(int index, Virtqueue queue)
    {
        if (index != 1)
            return false; // receive buffers wait; input goes to COM1
        bool used = false;
        while (queue.TryPop(out ushort head, _buffers))
        {
            foreach (VirtqBuffer b in _buffers)
            {
                if (b.DeviceWrites || b.Length > 1 << 20 || !memory.IsRam(b.Gpa) || !memory.IsRam(b.Gpa + b.Length - 1))
                    continue;
                output(memory.Span(b.Gpa, (int)b.Length));
                Written += b.Length;
            }
            queue.Push(head, 0);
            used = true;
        }
        return used;
    }
}
