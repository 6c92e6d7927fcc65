// The virtio-mmio transport, version 2 (virtio 1.x, section 4.2.2): the register page a driver
// finds a device through (magic, version, device ID), feature negotiation, queue setup and
// notification, the interrupt status and the device status. The device behind it sees its
// queues and its configuration space; the transport raises its interrupt line (level) while
// InterruptStatus has a bit set.
using System;
using Hyve.Vmm;

namespace Hyve.Devices.Virtio;

/// <summary>A virtio device model behind a transport.</summary>
public interface IVirtioDevice
{
    /// <summary>The virtio device ID (2 block, 3 console, 4 entropy).</summary>
    uint DeviceId { get; }

    /// <summary>The device's feature bits (VERSION_1 is added by the transport).</summary>
    ulong Features { get; }

    /// <summary>How many queues it has.</summary>
    int QueueCount { get; }

    /// <summary>Reads its configuration space.</summary>
    uint ReadConfig(int offset, int bytes);

    /// <summary>Writes its configuration space.</summary>
    void WriteConfig(int offset, int bytes, uint value);

    /// <summary>The driver notified queue <paramref name="index"/>; the device processes what is
    /// available and returns true when it used buffers (an interrupt is due).</summary>
    bool Notify(int index, Virtqueue queue);

    /// <summary>The driver reset the device.</summary>
    void Reset();
}

/// <summary>A virtio-mmio register page.</summary>
public sealed class VirtioMmio : IMmioHandler
{
    /// <summary>The register page's size.</summary>
    public const ulong Size = 0x1000;

    private const uint Magic = 0x7472_6976; // "virt"

    private readonly IVirtioDevice _device;
    private readonly Action<bool> _irq;
    private readonly Virtqueue[] _queues;
    private uint _deviceFeatureSel, _driverFeatureSel, _queueSel, _status, _interrupt;
    private ulong _driverFeatures;

    /// <summary>A transport for <paramref name="device"/> over <paramref name="memory"/>, raising
    /// its interrupt line through <paramref name="irq"/>.</summary>
    public VirtioMmio(IVirtioDevice device, GuestMemory memory, Action<bool> irq)
    {
        _device = device;
        _irq = irq;
        _queues = new Virtqueue[device.QueueCount];
        for (int i = 0; i < _queues.Length; i++)
            _queues[i] = new Virtqueue(memory);
    }

    /// <summary>The device status the driver wrote.</summary>
    public uint Status => _status;

    /// <summary>The features the driver accepted.</summary>
    public ulong DriverFeatures => _driverFeatures;

    /// <summary>Queue <paramref name="i"/>.</summary>
    public Virtqueue Queue(int i) => _queues[i];

    /// <summary>Register accesses the transport does not define (ignored or read as zero).</summary>
    public long BadAccesses { get; private set; }

    private ulong OfferedFeatures => _device.Features | VirtioDeviceStatus.FeatureVersion1;

    private Virtqueue? Selected => _queueSel < _queues.Length ? _queues[_queueSel] : null;

    /// <inheritdoc/>
    public ulong Read(ulong offset, int bytes)
    {
        if (offset >= 0x100)
            return _device.ReadConfig((int)(offset - 0x100), bytes);
        if (bytes != 4 || (offset & 3) != 0)
        {
            BadAccesses++;
            return 0;
        }
        return offset switch
        {
            0x000 => Magic,
            0x004 => 2,
            0x008 => _device.DeviceId,
            0x00C => 0x4556_5948, // "HYVE"
            0x010 => _deviceFeatureSel switch { 0 => (uint)OfferedFeatures, 1 => (uint)(OfferedFeatures >> 32), _ => 0 },
            0x034 => Selected == null ? 0u : Virtqueue.MaxSize,
            0x044 => Selected?.Ready == true ? 1u : 0,
            0x060 => _interrupt,
            0x070 => _status,
            0x0FC => 0, // the configuration never changes under the driver
            _ => Unknown(),
        };
    }

    private uint Unknown()
    {
        BadAccesses++;
        return 0;
    }

    /// <inheritdoc/>
    public void Write(ulong offset, int bytes, ulong value)
    {
        if (offset >= 0x100)
        {
            _device.WriteConfig((int)(offset - 0x100), bytes, (uint)value);
            return;
        }
        if (bytes != 4 || (offset & 3) != 0)
        {
            BadAccesses++;
            return;
        }
        uint v = (uint)value;
        Virtqueue? q = Selected;
        switch (offset)
        {
            case 0x014: _deviceFeatureSel = v; break;
            case 0x020:
                if (_driverFeatureSel < 2)
                {
                    int shift = 32 * (int)_driverFeatureSel;
                    _driverFeatures = (_driverFeatures & ~(0xFFFF_FFFFUL << shift)) | ((ulong)v << shift);
                }
                break;
            case 0x024: _driverFeatureSel = v; break;
            case 0x030: _queueSel = v; break;
            case 0x038:
                if (q != null && v != 0 && v <= Virtqueue.MaxSize && (v & (v - 1)) == 0)
                    q.Size = (ushort)v;
                else
                    BadAccesses++;
                break;
            case 0x044: if (q != null) q.Ready = v == 1; break;
            case 0x050: Notify(v); break;
            case 0x064:
                _interrupt &= ~v;
                _irq(_interrupt != 0);
                break;
            case 0x070: WriteStatus(v); break;
            case 0x080: if (q != null) q.Desc = (q.Desc & ~0xFFFF_FFFFUL) | v; break;
            case 0x084: if (q != null) q.Desc = (q.Desc & 0xFFFF_FFFFUL) | ((ulong)v << 32); break;
            case 0x090: if (q != null) q.Avail = (q.Avail & ~0xFFFF_FFFFUL) | v; break;
            case 0x094: if (q != null) q.Avail = (q.Avail & 0xFFFF_FFFFUL) | ((ulong)v << 32); break;
            case 0x0A0: if (q != null) q.Used = (q.Used & ~0xFFFF_FFFFUL) | v; break;
            case 0x0A4: if (q != null) q.Used = (q.Used & 0xFFFF_FFFFUL) | ((ulong)v << 32); break;
            default: BadAccesses++; break;
        }
    }

    private void WriteStatus(uint v)
    {
        if (v == 0)
        {
            _status = 0;
            _interrupt = 0;
            _driverFeatures = 0;
            VirtioDeviceStatus.Reset(_device, _queues);
            _irq(false);
            return;
        }
        _status = VirtioDeviceStatus.Accept(v, _driverFeatures, OfferedFeatures);
    }

    private void Notify(uint index)
    {
        if (!VirtioDeviceStatus.MayNotify(_status, index, _queues.Length))
        {
            BadAccesses++;
            return;
        }
        if (_device.Notify((int)index, _queues[index]))
        {
            _interrupt |= 1; // used buffer notification
            _irq(true);
        }
    }

    /// <summary>Chains the device could not parse, over all queues.</summary>
    public long Malformed => VirtioDeviceStatus.Malformed(_queues);
}
