// The port ownership table the vmm's port devices register in.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class PortHooksTests
{
    private sealed class Recorder(uint value) : IPortHandler
    {
        public List<(ushort Offset, int Bytes, uint Value)> Writes { get; } = [];

        public uint Read(ushort offset, int bytes) => value + offset;

        public void Write(ushort offset, int bytes, uint v) => Writes.Add((offset, bytes, v));
    }

    [Fact]
    public void HandlersSeeOffsetsAndMaskedValues()
    {
        var hooks = new PortHooks();
        var pit = new Recorder(0xABCD_EF00);
        hooks.Register(0x40, 4, pit);
        Assert.True(hooks.TryIn(0x42, 1, out uint v));
        Assert.Equal(0x02u, v); // 0xABCDEF02 masked to a byte
        Assert.True(hooks.TryOut(0x43, 2, 0x1234_5678));
        Assert.Equal([((ushort)3, 2, 0x5678u)], pit.Writes);
        Assert.False(hooks.TryIn(0x44, 1, out v));
        Assert.Equal(0u, v);
        Assert.False(hooks.TryOut(0x3F, 1, 0));
    }

    [Fact]
    public void RangesDoNotOverlap()
    {
        var hooks = new PortHooks();
        hooks.Register(0x20, 2, new Recorder(0));
        Assert.Throws<InvalidOperationException>(() => hooks.Register(0x21, 1, new Recorder(0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => hooks.Register(0xFFFF, 2, new Recorder(0)));
        hooks.Register(0xFFFF, 1, new Recorder(0));
    }
}
