// The device half's I/O port space: ranges of ports owned by devices; a port nobody owns reads
// as all ones and drops writes, counted, as an ISA bus with nothing on it would.
using Hyve.Vmm.Emulation;

namespace Hyve.Devices;

/// <summary>The device half's ports: answers the vmm's port requests.</summary>
public sealed class PortBus
{
    private readonly PortHooks _ports = new();

    /// <summary>Reads of ports no device owns (answered with all ones).</summary>
    public long UnclaimedReads { get; private set; }

    /// <summary>Writes to ports no device owns (dropped).</summary>
    public long UnclaimedWrites { get; private set; }

    /// <summary>The last port no device owned (for diagnostics).</summary>
    public ushort LastUnclaimed { get; private set; }

    /// <summary>Gives <paramref name="count"/> ports from <paramref name="first"/> to
    /// <paramref name="device"/>; a range that overlaps another device's is refused.</summary>
    public void Register(ushort first, int count, IPortHandler device) => _ports.Register(first, count, device);

    /// <summary>Moves <paramref name="device"/>'s ports (see <see cref="PortHooks.Move"/>).</summary>
    public bool Move(IPortHandler device, int count, int from, int to) => _ports.Move(device, count, from, to);

    /// <summary>Answers one port request: the device that owns its first port gets it.</summary>
    public InoutAccess Handle(in InoutAccess request)
    {
        if (request.In)
        {
            if (_ports.TryIn(request.Port, request.Bytes, out uint value))
                return request with { Eax = value };
            LastUnclaimed = request.Port;
            UnclaimedReads++;
            return request with { Eax = request.Bytes >= 4 ? uint.MaxValue : (1u << (8 * request.Bytes)) - 1 };
        }
        if (!_ports.TryOut(request.Port, request.Bytes, request.Eax))
        {
            UnclaimedWrites++;
            LastUnclaimed = request.Port;
        }
        return request;
    }
}
