// The virtio PCI transport as a modern (virtio 1.x only, section 4.1) PCI function, laid out as
// QEMU's virtio-*-pci with disable-legacy=on: device ID 0x1040 + the virtio device ID, revision
// 1; vendor capabilities that point the driver at the common configuration (BAR 4 + 0), the ISR
// byte (+0x1000), the device configuration (+0x2000) and the queue notification area (+0x3000,
// 4 bytes per queue), all in a 16 KiB 64-bit prefetchable BAR, plus the PCI configuration access
// capability; and MSI-X with one vector per queue and one for configuration changes, its table
// and pending bits in BAR 1. Without MSI-X the function raises INTA, level, while the ISR byte
// has a bit set (reading it clears it), unless the command register disables INTx.
using System;
using System.Buffers.Binary;
using Hyve.Devices.Pci;
using Hyve.Vmm;

namespace Hyve.Devices.Virtio;

/// <summary>A modern virtio-pci function over a virtio device.</summary>
public sealed class VirtioPci : PciFunction
{
    /// <summary>Where each structure sits in the configuration BAR.</summary>
    public const int CommonAt = 0x0000, IsrAt = 0x1000, DeviceAt = 0x2000, NotifyAt = 0x3000;

    /// <summary>Bytes between two queues' notification addresses.</summary>
    public const int NotifyMultiplier = 4;

    /// <summary>The BARs: MSI-X table and pending bits, and the virtio structures.</summary>
    public const int MsixBar = 1, ConfigBar = 4;

    /// <summary>"No vector" in the vector registers.</summary>
    public const ushort NoVector = 0xFFFF;

    private const int PbaAt = 0x800, CommonSize = 0x38;

    private readonly IVirtioDevice _device;
    private readonly Virtqueue[] _queues;
    private readonly ushort[] _queueVector;
    private readonly byte[] _msix;        // the table (16 bytes per vector)
    private readonly ulong[] _pending;    // pending bits, one per vector
    private readonly Action<ulong, uint> _msi;
    private readonly Action<bool> _intx;
    private readonly int _msixCap, _cfgCap;
    private readonly object _lock = new();
    private uint _deviceFeatureSel, _driverFeatureSel, _status, _isr;
    private ushort _queueSel, _configVector = NoVector;
    private ulong _driverFeatures;
    private bool _intxLevel;

    /// <summary>A function for <paramref name="device"/> over <paramref name="memory"/>, sending
    /// MSI-X messages through <paramref name="msi"/> (address, data) and setting INTA through
    /// <paramref name="intx"/>.</summary>
    public VirtioPci(IVirtioDevice device, GuestMemory memory, Action<ulong, uint> msi, Action<bool> intx)
        : base(0x1AF4, (ushort)(0x1040 + device.DeviceId), 0x01, ClassOf(device.DeviceId), interruptPin: 1)
    {
        ArgumentNullException.ThrowIfNull(device);
        _device = device;
        _msi = msi;
        _intx = intx;
        _queues = new Virtqueue[device.QueueCount];
        _queueVector = new ushort[device.QueueCount];
        for (int i = 0; i < _queues.Length; i++)
        {
            _queues[i] = new Virtqueue(memory);
            _queueVector[i] = NoVector;
        }
        int vectors = _queues.Length + 1;
        _msix = new byte[16 * vectors];
        for (int v = 0; v < vectors; v++)
            _msix[16 * v + 12] = 1; // masked from reset
        _pending = new ulong[(vectors + 63) / 64];
        // A virtio-pci function's subsystem device ID is at least 0x40 for modern devices.
        Config[0x2E] = 0x40;
        Config[0x2F] = 0x11;

        MemoryBar(MsixBar, 0x1000, new MsixTable(this), wide: false, prefetchable: false);
        MemoryBar(ConfigBar, 0x4000, new Structures(this), wide: true, prefetchable: true);

        Span<byte> msixBody = stackalloc byte[10];
        BinaryPrimitives.WriteUInt16LittleEndian(msixBody, (ushort)(vectors - 1));
        BinaryPrimitives.WriteUInt32LittleEndian(msixBody[2..], MsixBar);
        BinaryPrimitives.WriteUInt32LittleEndian(msixBody[6..], PbaAt | MsixBar);
        _msixCap = Capability(0x11, msixBody);
        Writable(_msixCap + 3, 1, 0xC0); // enable, function mask
        VendorCapability(1, CommonAt, 0x1000);
        VendorCapability(3, IsrAt, 0x1000);
        VendorCapability(4, DeviceAt, 0x1000);
        VendorCapability(2, NotifyAt, 0x1000, NotifyMultiplier);
        _cfgCap = VendorCapability(5, 0, 0, 0);
        Writable(_cfgCap + 4, 1);          // bar
        Writable(_cfgCap + 8, 8);          // offset, length
        Writable(_cfgCap + 16, 4);         // data
    }

    // Mass storage (SCSI, as QEMU's virtio-blk reports it) for a disk, "other" for the rest.
    private static uint ClassOf(uint deviceId) => deviceId switch
    {
        2 => 0x01_00_00,
        3 => 0x07_80_00,
        _ => 0xFF_00_00,
    };

    // A virtio_pci_cap: its length, type, BAR, offset and length in the BAR; the notification
    // capability adds the multiplier, the configuration access one a 4-byte data window.
    private int VendorCapability(byte type, int offset, int length, uint? extra = null)
    {
        Span<byte> body = stackalloc byte[extra == null ? 14 : 18];
        body.Clear();
        body[0] = (byte)(body.Length + 2); // cap_len
        body[1] = type;
        body[2] = type == 5 ? (byte)0 : (byte)ConfigBar;
        BinaryPrimitives.WriteUInt32LittleEndian(body[6..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(body[10..], (uint)length);
        if (extra is uint e)
            BinaryPrimitives.WriteUInt32LittleEndian(body[14..], e);
        return Capability(0x09, body);
    }

    /// <summary>The device status the driver wrote.</summary>
    public uint Status => _status;

    /// <summary>The features the driver accepted.</summary>
    public ulong DriverFeatures => _driverFeatures;

    /// <summary>Register accesses the transport does not define (ignored or read as zero).</summary>
    public long BadAccesses { get; private set; }

    /// <summary>Interrupts sent as MSI-X messages, and raised on INTA.</summary>
    public long MsixSent { get; private set; }

    /// <inheritdoc cref="MsixSent"/>
    public long IntxRaised { get; private set; }

    /// <summary>Chains the device could not parse, over all queues.</summary>
    public long Malformed => VirtioDeviceStatus.Malformed(_queues);

    private ulong OfferedFeatures => _device.Features | VirtioDeviceStatus.FeatureVersion1;

    private bool MsixEnabled => (Config[_msixCap + 3] & 0x80) != 0;

    private bool FunctionMasked => (Config[_msixCap + 3] & 0x40) != 0;

    /// <inheritdoc/>
    protected override void Written(int at, int bytes)
    {
        lock (_lock)
        {
            if (at <= _msixCap + 3 && at + bytes > _msixCap + 2)
                DeliverPending();
            if (at <= _cfgCap + 19 && at + bytes > _cfgCap + 16)
                ConfigWindow(write: true);
            UpdateIntx(); // the command register's INTx disable or MSI-X's enable may have changed
        }
    }

    /// <inheritdoc/>
    protected override void Reading(int at, int bytes)
    {
        if (at <= _cfgCap + 19 && at + bytes > _cfgCap + 16)
        {
            lock (_lock)
                ConfigWindow(write: false);
        }
    }

    // The PCI configuration access capability: its data bytes read or write the BAR it names.
    private void ConfigWindow(bool write)
    {
        int bar = Config[_cfgCap + 4];
        uint offset = BinaryPrimitives.ReadUInt32LittleEndian(Config[(_cfgCap + 8)..]);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(Config[(_cfgCap + 12)..]);
        if (bar != ConfigBar || length is not (1 or 2 or 4) || offset + length > 0x4000 || (offset & (length - 1)) != 0)
        {
            BadAccesses++;
            return;
        }
        if (write)
            StructureWrite(offset, (int)length, BinaryPrimitives.ReadUInt32LittleEndian(Config[(_cfgCap + 16)..]));
        else
            BinaryPrimitives.WriteUInt32LittleEndian(Config[(_cfgCap + 16)..], (uint)StructureRead(offset, (int)length));
    }

    private ulong StructureRead(ulong offset, int bytes)
    {
        switch (offset)
        {
            case < CommonAt + CommonSize:
                return CommonRead((int)offset, bytes);
            case >= IsrAt and < IsrAt + 0x1000:
                if (offset != IsrAt)
                    return 0;
                uint isr = _isr;
                _isr = 0;
                UpdateIntx();
                return isr;
            case >= DeviceAt and < DeviceAt + 0x1000:
                return _device.ReadConfig((int)(offset - DeviceAt), bytes);
            default:
                return 0; // the notification area and the gaps read as zeros
        }
    }

    private void StructureWrite(ulong offset, int bytes, ulong value)
    {
        switch (offset)
        {
            case < CommonAt + CommonSize:
                CommonWrite((int)offset, bytes, value);
                break;
            case >= DeviceAt and < DeviceAt + 0x1000:
                _device.WriteConfig((int)(offset - DeviceAt), bytes, (uint)value);
                break;
            case >= NotifyAt and < NotifyAt + 0x1000:
                Notify((int)((offset - NotifyAt) / NotifyMultiplier));
                break;
            default:
                BadAccesses++; // the ISR byte is read-only
                break;
        }
    }

    private Virtqueue? Selected => _queueSel < _queues.Length ? _queues[_queueSel] : null;

    // The common configuration structure as bytes, from the current state.
    private void Common(Span<byte> c)
    {
        c.Clear();
        ulong offered = OfferedFeatures;
        BinaryPrimitives.WriteUInt32LittleEndian(c, _deviceFeatureSel);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x04..], _deviceFeatureSel switch { 0 => (uint)offered, 1 => (uint)(offered >> 32), _ => 0 });
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x08..], _driverFeatureSel);
        BinaryPrimitives.WriteUInt32LittleEndian(c[0x0C..], _driverFeatureSel switch { 0 => (uint)_driverFeatures, 1 => (uint)(_driverFeatures >> 32), _ => 0 });
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x10..], _configVector);
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x12..], (ushort)_queues.Length);
        c[0x14] = (byte)_status;
        c[0x15] = 0; // the configuration never changes under the driver
        BinaryPrimitives.WriteUInt16LittleEndian(c[0x16..], _queueSel);
        if (Selected is { } q)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x18..], q.Size);
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x1A..], _queueVector[_queueSel]);
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x1C..], q.Ready ? (ushort)1 : (ushort)0);
            BinaryPrimitives.WriteUInt16LittleEndian(c[0x1E..], _queueSel);
            BinaryPrimitives.WriteUInt64LittleEndian(c[0x20..], q.Desc);
            BinaryPrimitives.WriteUInt64LittleEndian(c[0x28..], q.Avail);
            BinaryPrimitives.WriteUInt64LittleEndian(c[0x30..], q.Used);
        }
    }

    private ulong CommonRead(int offset, int bytes)
    {
        Span<byte> c = stackalloc byte[CommonSize + 8];
        Common(c);
        if (offset + bytes > CommonSize)
        {
            BadAccesses++;
            return 0;
        }
        return BinaryPrimitives.ReadUInt64LittleEndian(c[offset..]) & (bytes >= 8 ? ulong.MaxValue : (1UL << (8 * bytes)) - 1);
    }

    // A write lands in the structure's bytes; each field it touched then takes its new value.
    private void CommonWrite(int offset, int bytes, ulong value)
    {
        if (offset + bytes > CommonSize)
        {
            BadAccesses++;
            return;
        }
        Span<byte> c = stackalloc byte[CommonSize + 8];
        Common(c);
        for (int i = 0; i < bytes; i++)
            c[offset + i] = (byte)(value >> (8 * i));
        bool Touches(int at, int size) => offset < at + size && at < offset + bytes;
        Virtqueue? q = Selected;
        if (Touches(0x00, 4))
            _deviceFeatureSel = BinaryPrimitives.ReadUInt32LittleEndian(c);
        if (Touches(0x08, 4))
            _driverFeatureSel = BinaryPrimitives.ReadUInt32LittleEndian(c[0x08..]);
        if (Touches(0x0C, 4) && _driverFeatureSel < 2)
        {
            int shift = 32 * (int)_driverFeatureSel;
            _driverFeatures = (_driverFeatures & ~(0xFFFF_FFFFUL << shift)) | ((ulong)BinaryPrimitives.ReadUInt32LittleEndian(c[0x0C..]) << shift);
        }
        if (Touches(0x10, 2))
            _configVector = Vector(BinaryPrimitives.ReadUInt16LittleEndian(c[0x10..]));
        if (Touches(0x14, 1))
            WriteStatus(c[0x14]);
        if (Touches(0x16, 2))
        {
            _queueSel = BinaryPrimitives.ReadUInt16LittleEndian(c[0x16..]);
            return; // the queue fields written with it belong to the queue selected before
        }
        if (q == null)
        {
            if (Touches(0x18, CommonSize - 0x18))
                BadAccesses++;
            return;
        }
        if (Touches(0x18, 2))
        {
            ushort size = BinaryPrimitives.ReadUInt16LittleEndian(c[0x18..]);
            if (size != 0 && size <= Virtqueue.MaxSize)
                q.Size = size;
            else
                BadAccesses++;
        }
        if (Touches(0x1A, 2))
            _queueVector[_queueSel] = Vector(BinaryPrimitives.ReadUInt16LittleEndian(c[0x1A..]));
        if (Touches(0x1C, 2) && BinaryPrimitives.ReadUInt16LittleEndian(c[0x1C..]) == 1)
            q.Ready = true;
        if (Touches(0x20, 8))
            q.Desc = BinaryPrimitives.ReadUInt64LittleEndian(c[0x20..]);
        if (Touches(0x28, 8))
            q.Avail = BinaryPrimitives.ReadUInt64LittleEndian(c[0x28..]);
        if (Touches(0x30, 8))
            q.Used = BinaryPrimitives.ReadUInt64LittleEndian(c[0x30..]);
    }

    // A vector the table does not have reads back as "no vector", which tells the driver.
    private ushort Vector(ushort v) => v < _queues.Length + 1 ? v : NoVector;

    private void WriteStatus(uint v)
    {
        if (v == 0)
        {
            _status = 0;
            _isr = 0;
            _driverFeatures = 0;
            _configVector = NoVector;
            _queueVector.AsSpan().Fill(NoVector);
            VirtioDeviceStatus.Reset(_device, _queues);
            UpdateIntx();
            return;
        }
        _status = VirtioDeviceStatus.Accept(v, _driverFeatures, OfferedFeatures);
    }

    private void Notify(int index)
    {
        if (!VirtioDeviceStatus.MayNotify(_status, index, _queues.Length))
        {
            BadAccesses++;
            return;
        }
        if (_device.Notify(index, _queues[index]))
            Interrupt(_queueVector[index]);
    }

    // INTA is asserted while the ISR byte has a bit set, MSI-X is off and the command register
    // allows INTx; only changes reach the line.
    private void UpdateIntx()
    {
        bool level = _isr != 0 && !MsixEnabled && (Command & CommandIntxDisable) == 0;
        if (level == _intxLevel)
            return;
        _intxLevel = level;
        _intx(level);
    }

    // A used-buffer interrupt: the queue's MSI-X vector when MSI-X is on, INTA otherwise.
    private void Interrupt(ushort vector)
    {
        if (MsixEnabled)
        {
            if (vector == NoVector)
                return;
            _pending[vector / 64] |= 1UL << (vector % 64);
            DeliverPending();
            return;
        }
        _isr |= 1;
        if ((Command & CommandIntxDisable) == 0)
            IntxRaised++;
        UpdateIntx();
    }

    // Sends every pending vector that is not masked (by its entry or the whole function).
    private void DeliverPending()
    {
        if (!MsixEnabled || FunctionMasked)
            return;
        for (int v = 0; v < _queues.Length + 1; v++)
        {
            ulong bit = 1UL << (v % 64);
            if ((_pending[v / 64] & bit) == 0 || (_msix[16 * v + 12] & 1) != 0)
                continue;
            _pending[v / 64] &= ~bit;
            ReadOnlySpan<byte> e = _msix.AsSpan(16 * v, 16);
            MsixSent++;
            _msi(BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt32LittleEndian(e[8..]));
        }
    }

    // BAR 4: the virtio structures.
    private sealed class Structures(VirtioPci f) : IMmioHandler
    {
        public ulong Read(ulong offset, int bytes)
        {
            lock (f._lock)
                return f.StructureRead(offset, bytes);
        }

        public void Write(ulong offset, int bytes, ulong value)
        {
            lock (f._lock)
                f.StructureWrite(offset, bytes, value);
        }
    }

    // BAR 1: the MSI-X table (address, data, vector control per vector) and the pending bits.
    private sealed class MsixTable(VirtioPci f) : IMmioHandler
    {
        public ulong Read(ulong offset, int bytes)
        {
            lock (f._lock)
            {
                if (offset + (ulong)bytes <= (ulong)f._msix.Length)
                    return Le(f._msix.AsSpan((int)offset), bytes);
                if (offset >= PbaAt && offset - PbaAt + (ulong)bytes <= (ulong)(8 * f._pending.Length))
                {
                    Span<byte> pba = stackalloc byte[8 * f._pending.Length];
                    for (int i = 0; i < f._pending.Length; i++)
                        BinaryPrimitives.WriteUInt64LittleEndian(pba[(8 * i)..], f._pending[i]);
                    return Le(pba[(int)(offset - PbaAt)..], bytes);
                }
                return 0;
            }
        }

        public void Write(ulong offset, int bytes, ulong value)
        {
            lock (f._lock)
            {
                if (offset + (ulong)bytes > (ulong)f._msix.Length)
                {
                    f.BadAccesses++; // the pending bits are read-only
                    return;
                }
                for (int i = 0; i < bytes; i++)
                {
                    int at = (int)offset + i;
                    // Vector control: only the mask bit is defined.
                    f._msix[at] = (at & 15) == 12 ? (byte)(value >> (8 * i) & 1) : (at & 15) > 12 ? (byte)0 : (byte)(value >> (8 * i));
                }
                f.DeliverPending(); // unmasking an entry sends what waited
            }
        }

        private static ulong Le(ReadOnlySpan<byte> from, int bytes)
        {
            ulong v = 0;
            for (int i = 0; i < bytes && i < from.Length; i++)
                v |= (ulong)from[i] << (8 * i);
            return v;
        }
    }
}
