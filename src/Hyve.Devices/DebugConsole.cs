// QEMU's ISA debug console (isa-debugcon) at port 0x402: reads return 0xE9, which is how
// SeaBIOS and OVMF find it, and each byte written is their debug log, copied to a stream.
using System.IO;
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>A write-only byte port that firmware logs to.</summary>
public sealed class DebugConsole(Stream? log) : IPortHandler
{
    /// <summary>The port QEMU's pc machine gives it for firmware.</summary>
    public const ushort DefaultPort = 0x402;

    /// <summary>The value reads return, the port's presence check.</summary>
    public const byte Presence = 0xE9;

    /// <inheritdoc/>
    public uint Read(ushort offset, int bytes) => Presence;

    /// <inheritdoc/>
    public void Write(ushort offset, int bytes, uint value)
    {
        if (log == null)
            return;
        log.WriteByte((byte)value);
        if ((byte)value == '\n')
            log.Flush();
    }
}
