// Byte-wide port accesses for device tests: each must reach a device that owns the port.
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Vmm.Tests;

internal static class PortAccess
{
    public static void Out(this PortHooks ports, ushort port, byte value) => Assert.True(ports.TryOut(port, 1, value), $"no device at port {port:X}");

    public static byte In(this PortHooks ports, ushort port)
    {
        Assert.True(ports.TryIn(port, 1, out uint v), $"no device at port {port:X}");
        return (byte)v;
    }
}
