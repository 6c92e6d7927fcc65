// The VMX layer's conversions against the SDM's layouts.
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VmxConversionsTests
{
    [Fact]
    public void DescriptorsAndAccessRights()
    {
        const ulong code64 = 0x00AF_9B00_0000_FFFF;    // flat 64-bit code: G, L, P, DPL 0, type B
        const ulong data32 = 0x00CF_9300_0000_FFFF;    // flat 32-bit data
        Assert.Equal(0xA09Bu, VmxConversions.AccessRightsFromDescriptor(code64, 0x08));
        Segment data = VmxConversions.SegmentFromDescriptor(data32, 0x10);
        Assert.Equal(new Segment(0x10, 0, 0xFFFF_FFFF, 0xC093), data);
        Assert.Equal(data32, VmxConversions.DescriptorFromSegment(in data));
        const ulong based = 0x1200_9312_3456_0FFF;     // base 0x12123456, byte-granular limit 0xFFF
        Segment s = VmxConversions.SegmentFromDescriptor(based, 0x2B);
        Assert.Equal(0x1212_3456UL, s.Base);
        Assert.Equal(0xFFFu, s.Limit);
        Assert.Equal(0, s.Dpl);
        Assert.Equal(0x93u, s.Access);                  // byte granularity, 16-bit
        Assert.Equal(based, VmxConversions.DescriptorFromSegment(in s));
        Assert.Equal(0x1_0000u, VmxConversions.AccessRightsFromDescriptor(code64, 0x03)); // null selector: unusable
    }

    [Fact]
    public void MasksAndReadShadows()
    {
        const ulong mask = PagingState.Cr0PG | PagingState.Cr0PE | (1UL << 30); // the host owns PG, PE, CD
        const ulong shadow = PagingState.Cr0PE;
        ulong actual = PagingState.Cr0PE | PagingState.Cr0PG | PagingState.Cr0WP | (1UL << 5);
        Assert.Equal(PagingState.Cr0PE | PagingState.Cr0WP | (1UL << 5), VmxConversions.GuestVisible(actual, mask, shadow));
        Assert.False(VmxConversions.WriteExits(PagingState.Cr0PE | PagingState.Cr0AM, mask, shadow)); // only a guest-owned bit
        Assert.True(VmxConversions.WriteExits(PagingState.Cr0PE | PagingState.Cr0PG, mask, shadow));  // PG differs from the shadow
        Assert.Equal(PagingState.Cr0PE | PagingState.Cr0PG | PagingState.Cr0AM, VmxConversions.ApplyWrite(actual, PagingState.Cr0PE | PagingState.Cr0AM, mask));
    }

    [Fact]
    public void EferLmaAndTheIa32eEntryControl()
    {
        const ulong longMode = PagingState.EferLME | PagingState.EferLMA | PagingState.EferNXE;
        Assert.Equal(0x11FFu | VmxConversions.EntryIa32eMode, VmxConversions.EntryControlsFor(0x11FF, longMode));
        Assert.Equal(0x11FFu, VmxConversions.EntryControlsFor(0x11FF | VmxConversions.EntryIa32eMode, PagingState.EferNXE));
        Assert.Equal(longMode, VmxConversions.EferFor(PagingState.EferNXE, VmxConversions.EntryIa32eMode));
        Assert.Equal(PagingState.EferLME, VmxConversions.EferFor(PagingState.EferLME | PagingState.EferLMA, 0));
    }

    [Fact]
    public void InterruptibilityWindows()
    {
        Assert.True(Interruptibility.InterruptWindowOpen(0, Rflags.IF | Rflags.Fixed1));
        Assert.False(Interruptibility.InterruptWindowOpen(Interruptibility.Sti, Rflags.IF));
        Assert.False(Interruptibility.InterruptWindowOpen(Interruptibility.MovSs, Rflags.IF));
        Assert.False(Interruptibility.InterruptWindowOpen(0, Rflags.Fixed1));
        Assert.True(Interruptibility.NmiWindowOpen(Interruptibility.Sti));
        Assert.False(Interruptibility.NmiWindowOpen(Interruptibility.Nmi));
    }
}
