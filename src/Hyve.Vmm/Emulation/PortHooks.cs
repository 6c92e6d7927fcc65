// Ownership of I/O ports by handlers: the vmm's own port devices register here (and are tried
// before the device half); the device half's port bus is built on the same table.
using System;

namespace Hyve.Vmm.Emulation;

/// <summary>A handler of a range of ports: it sees an offset into its range and a sized access.</summary>
public interface IPortHandler
{
    /// <summary>Reads <paramref name="bytes"/> (1, 2 or 4) at <paramref name="offset"/>.</summary>
    uint Read(ushort offset, int bytes);

    /// <summary>Writes <paramref name="bytes"/> (1, 2 or 4) at <paramref name="offset"/>.</summary>
    void Write(ushort offset, int bytes, uint value);
}

/// <summary>The 64 Ki ports, each owned by at most one handler.</summary>
public sealed class PortHooks
{
    private readonly IPortHandler?[] _owner = new IPortHandler?[0x1_0000];
    private readonly ushort[] _first = new ushort[0x1_0000];

    /// <summary>Gives <paramref name="count"/> ports from <paramref name="first"/> to
    /// <paramref name="handler"/>; a range that overlaps another handler's is refused.</summary>
    public void Register(ushort first, int count, IPortHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        if (count < 1 || first + count > 0x1_0000)
            throw new ArgumentOutOfRangeException(nameof(count), $"ports {first:X}+{count} do not fit the port space");
        for (int p = first; p < first + count; p++)
        {
            if (_owner[p] != null)
                throw new InvalidOperationException($"port {p:X} is already taken");
        }
        for (int p = first; p < first + count; p++)
        {
            _first[p] = first;
            _owner[p] = handler;
        }
    }

    /// <summary>Takes <paramref name="count"/> ports from <paramref name="first"/> back from
    /// <paramref name="handler"/> (ports it does not own are left alone): a device whose ports a
    /// guest relocates (a PCI BAR, the PIIX4 PM block) moves this way.</summary>
    public void Unregister(ushort first, int count, IPortHandler handler)
    {
        for (int p = first; p < first + count && p < 0x1_0000; p++)
        {
            if (ReferenceEquals(_owner[p], handler))
                _owner[p] = null;
        }
    }

    /// <summary>Whether any of <paramref name="count"/> ports from <paramref name="first"/> has an owner.</summary>
    public bool AnyTaken(ushort first, int count)
    {
        for (int p = first; p < first + count && p < 0x1_0000; p++)
        {
            if (_owner[p] != null)
                return true;
        }
        return false;
    }

    /// <summary>Reads from the handler that owns <paramref name="port"/>; false when none does.
    /// The value is masked to the size.</summary>
    public bool TryIn(ushort port, int bytes, out uint value)
    {
        IPortHandler? h = _owner[port];
        value = h == null ? 0 : h.Read((ushort)(port - _first[port]), bytes) & Mask(bytes);
        return h != null;
    }

    /// <summary>Writes to the handler that owns <paramref name="port"/>; false when none does.</summary>
    public bool TryOut(ushort port, int bytes, uint value)
    {
        IPortHandler? h = _owner[port];
        h?.Write((ushort)(port - _first[port]), bytes, value & Mask(bytes));
        return h != null;
    }

    private static uint Mask(int bytes) => bytes >= 4 ? uint.MaxValue : (1u << (8 * bytes)) - 1;
}
