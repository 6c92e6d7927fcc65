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
        if (Taken(first, count) is int taken)
            throw new InvalidOperationException($"port {taken:X} is already taken");
        for (int p = first; p < first + count; p++)
        {
            _first[p] = first;
            _owner[p] = handler;
        }
    }

    /// <summary>Moves <paramref name="handler"/>'s <paramref name="count"/> ports from
    /// <paramref name="from"/> to <paramref name="to"/> (-1: nowhere), as a guest relocates a
    /// device (a PCI BAR, the PIIX4 PM block). False, with the handler left nowhere, when the new
    /// place does not fit or another handler owns a port of it (two decoders answering one
    /// address would be a bus conflict).</summary>
    public bool Move(IPortHandler handler, int count, int from, int to)
    {
        for (int p = from; from >= 0 && p < from + count && p < 0x1_0000; p++)
        {
            if (ReferenceEquals(_owner[p], handler))
                _owner[p] = null;
        }
        if (to < 0)
            return true;
        if (to + count > 0x1_0000 || Taken(to, count) != null)
            return false;
        Register((ushort)to, count, handler);
        return true;
    }

    // The first of count ports from first that has an owner, or null.
    private int? Taken(int first, int count)
    {
        for (int p = first; p < first + count; p++)
        {
            if (_owner[p] != null)
                return p;
        }
        return null;
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
