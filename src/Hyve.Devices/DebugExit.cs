// QEMU's isa-debug-exit: a write of v to its port ends the machine with status (v << 1) | 1, so
// a guest can report a verdict. Reads return zero.
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>The isa-debug-exit device (port 0xF4, 4 ports, by default).</summary>
public sealed class DebugExit(System.Action<int> exit) : IPortHandler
{
    /// <summary>QEMU's default port.</summary>
    public const ushort DefaultPort = 0xF4;

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes) => 0;

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value) => exit((int)((value << 1) | 1));
}
