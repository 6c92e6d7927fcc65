// Data-access checks against a segment's hidden part, as the SDM's protected-mode rules give them.
using Xunit;

namespace Hyve.X86.Tests;

public sealed class SegmentTests
{
    [Fact]
    public void ExpandUpChecksTheLastByteAgainstTheLimit()
    {
        var s = new Segment(0x10, 0, 0xFFF, 0x93);
        Assert.True(s.AllowsData(0xFFC, 4, write: true));
        Assert.False(s.AllowsData(0xFFD, 4, write: false));
        Assert.False(s.AllowsData(0x1000, 1, write: false));
    }

    [Fact]
    public void ExpandDownHoldsTheOffsetsAboveTheLimit()
    {
        var small = new Segment(0x10, 0, 0xFFF, 0x97);           // expand-down, 16-bit bound
        Assert.False(small.AllowsData(0xFFF, 1, write: false));
        Assert.True(small.AllowsData(0x1000, 2, write: true));
        Assert.False(small.AllowsData(0xFFFF, 2, write: false)); // runs past 0xFFFF
        var big = small with { Access = 0x4097 };                // B set: bound 0xFFFFFFFF
        Assert.True(big.AllowsData(0x10000, 4, write: false));
    }

    [Fact]
    public void TypesDecideReadAndWrite()
    {
        var readOnly = new Segment(0x10, 0, 0xFFFF, 0x91);
        Assert.True(readOnly.AllowsData(0, 4, write: false));
        Assert.False(readOnly.AllowsData(0, 4, write: true));
        var executeOnly = new Segment(0x08, 0, 0xFFFF, 0x99);
        Assert.False(executeOnly.AllowsData(0, 4, write: false));
        var readableCode = executeOnly with { Access = 0x9B };
        Assert.True(readableCode.AllowsData(0, 4, write: false));
        Assert.False(readableCode.AllowsData(0, 4, write: true));
    }

    [Fact]
    public void UnusableOrNotPresentSegmentsRefuseEverything()
    {
        Assert.False((Segment.FlatData with { Access = 0x1_0000 }).AllowsData(0, 1, write: false));
        Assert.False((Segment.FlatData with { Access = 0xC013 }).AllowsData(0, 1, write: false)); // P clear
    }
}
