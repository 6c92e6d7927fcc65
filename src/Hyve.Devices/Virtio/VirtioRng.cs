// The virtio entropy device (virtio 1.x, section 5.4): every buffer the driver offers comes
// back full of bytes from the host's cryptographic generator.
using System.Collections.Generic;
using System.Security.Cryptography;
using Hyve.Vmm;

namespace Hyve.Devices.Virtio;

/// <summary>A virtio-rng device.</summary>
public sealed class VirtioRng(GuestMemory memory) : IVirtioDevice
{
    private readonly List<VirtqBuffer> _buffers = [];

    /// <inheritdoc/>
    public uint DeviceId => 4;

    /// <inheritdoc/>
    public ulong Features => 0;

    /// <inheritdoc/>
    public int QueueCount => 1;

    /// <inheritdoc/>
    public uint ReadConfig(int offset, int bytes) => 0;

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
        bool used = false;
        while (queue.TryPop(out ushort head, _buffers))
        {
            uint written = 0;
            foreach (VirtqBuffer b in _buffers)
            {
                if (!b.DeviceWrites || b.Length > 1 << 20 || !memory.IsRam(b.Gpa) || !memory.IsRam(b.Gpa + b.Length - 1))
                    continue;
                RandomNumberGenerator.Fill(memory.Span(b.Gpa, (int)b.Length));
                written += b.Length;
            }
            queue.Push(head, written);
            used = true;
        }
        return used;
    }
}
