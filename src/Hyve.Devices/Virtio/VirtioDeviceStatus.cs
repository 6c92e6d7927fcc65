// The rules of the virtio device status (virtio 1.x, section 2.1) that every transport applies
// the same way: FEATURES_OK sticks only for features the device offered, VERSION_1 among them;
// queues may be notified once the driver is ready and until the device needs a reset; a reset
// clears the queues and the device.
namespace Hyve.Devices.Virtio;

/// <summary>The device status bits and the transport-independent rules on them.</summary>
public static class VirtioDeviceStatus
{
    /// <summary>VIRTIO_F_VERSION_1.</summary>
    public const ulong FeatureVersion1 = 1UL << 32;

    /// <summary>Status bits: DRIVER_OK, FEATURES_OK, DEVICE_NEEDS_RESET.</summary>
    public const uint DriverOk = 4, FeaturesOk = 8, NeedsReset = 0x40;

    /// <summary>The status a driver's write of <paramref name="written"/> leaves, given the
    /// features it accepted and those offered.</summary>
    public static uint Accept(uint written, ulong accepted, ulong offered) =>
        (written & FeaturesOk) != 0 && ((accepted & ~offered) != 0 || (accepted & FeatureVersion1) == 0) ? written & ~FeaturesOk : written;

    /// <summary>Whether a notification of queue <paramref name="index"/> of
    /// <paramref name="queues"/> is one the device acts on in <paramref name="status"/>.</summary>
    public static bool MayNotify(uint status, long index, int queues) =>
        index >= 0 && index < queues && (status & DriverOk) != 0 && (status & NeedsReset) == 0;

    /// <summary>A driver's reset (status 0): every queue forgets its set-up, then the device.</summary>
    public static void Reset(IVirtioDevice device, Virtqueue[] queues)
    {
        foreach (Virtqueue q in queues)
            q.Reset();
        device.Reset();
    }

    /// <summary>Chains the device could not parse, over <paramref name="queues"/>.</summary>
    public static long Malformed(Virtqueue[] queues)
    {
        long n = 0;
        foreach (Virtqueue q in queues)
            n += q.Malformed;
        return n;
    }
}
