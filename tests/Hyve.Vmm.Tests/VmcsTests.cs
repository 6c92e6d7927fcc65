// The VMCS interface: field encodings and what they imply, the 4 KiB region, and the API's
// operations with every failure fatal and named.
using System.Collections.Generic;
using Hyve.Vmm.Vmx;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VmcsTests
{
    [Fact]
    public void EncodingsCarryWidthAndType()
    {
        Assert.True(VmcsField.All.Count > 150);
        foreach (uint f in VmcsField.All)
        {
            Assert.Equal(0u, f & 1);                           // full accesses only in the table
            Assert.Equal(0u, f & ~0x6DFFu);                    // bits 12 and 15+ are reserved
            uint group = f & 0x6C00;
            VmcsWidth w = VmcsField.Width(f);
            VmcsType t = VmcsField.Type(f);
            Assert.Equal(group, ((uint)w << 13) | ((uint)t << 10));
        }
        Assert.Equal((VmcsWidth.Bits64, VmcsType.Control), (VmcsField.Width(VmcsField.EptPointer), VmcsField.Type(VmcsField.EptPointer)));
        Assert.Equal((VmcsWidth.Bits32, VmcsType.ReadOnly), (VmcsField.Width(VmcsField.ExitReason), VmcsField.Type(VmcsField.ExitReason)));
        Assert.Equal((VmcsWidth.Natural, VmcsType.ReadOnly), (VmcsField.Width(VmcsField.GuestLinearAddress), VmcsField.Type(VmcsField.GuestLinearAddress)));
        Assert.Equal((VmcsWidth.Natural, VmcsType.Guest), (VmcsField.Width(VmcsField.GuestRip), VmcsField.Type(VmcsField.GuestRip)));
        Assert.Equal((VmcsWidth.Bits16, VmcsType.Host), (VmcsField.Width(VmcsField.HostTrSelector), VmcsField.Type(VmcsField.HostTrSelector)));
        Assert.True(VmcsField.IsKnown(VmcsField.GuestEfer + 1));   // high half of a 64-bit field
        Assert.False(VmcsField.IsKnown(VmcsField.GuestRip + 1));   // natural width has no high half
        Assert.False(VmcsField.IsKnown(0x1234));
    }

    [Fact]
    public void EveryFieldHasItsOwnStorageInsideTheRegion()
    {
        var region = new VmcsRegion(0x1000);
        Assert.Equal(4096, region.Bytes.Length);
        var value = new Dictionary<uint, ulong>();
        ulong n = 0x0101_0101_0101_0101;
        foreach (uint f in VmcsField.All)
        {
            value[f] = n++;
            region.Store(f, value[f]);
        }
        foreach (uint f in VmcsField.All)
            Assert.Equal(value[f], region.Load(f));
        Assert.Equal(0u, region.RevisionId); // the header is untouched
    }

    private static (VmxState State, VmcsRegion Region) Ready()
    {
        var state = new VmxState();
        var region = new VmcsRegion(0x7000);
        Vmcs.Initialize(state, region);
        Vmcs.Clear(state, region);
        Vmcs.Load(state, region);
        return (state, region);
    }

    [Fact]
    public void ReadAndWriteByWidth()
    {
        var (s, _) = Ready();
        Vmcs.Write(s, VmcsField.GuestCsSelector, 0x10);
        Vmcs.Write(s, VmcsField.GuestCsAccessRights, 0xA09B);
        Vmcs.Write(s, VmcsField.GuestEfer, 0xD01);
        Vmcs.Write(s, VmcsField.GuestRip, 0xFFFF_FFFF_8100_0000);
        Assert.Equal(0x10UL, Vmcs.Read(s, VmcsField.GuestCsSelector));
        Assert.Equal(0xA09BUL, Vmcs.Read(s, VmcsField.GuestCsAccessRights));
        Assert.Equal(0xFFFF_FFFF_8100_0000UL, Vmcs.Read(s, VmcsField.GuestRip));
        Vmcs.Write(s, VmcsField.GuestEfer + 1, 0xABCD);                // high half
        Assert.Equal(0x0000_ABCD_0000_0D01UL, Vmcs.Read(s, VmcsField.GuestEfer));
        Assert.Equal(0xABCDUL, Vmcs.Read(s, VmcsField.GuestEfer + 1));
    }

    [Fact]
    public void EveryFailureIsFatalAndNamed()
    {
        var (s, region) = Ready();
        var e = Assert.Throws<VmmPanicException>(() => Vmcs.Write(s, VmcsField.ExitReason, 1));
        Assert.Contains("ExitReason", e.Message);
        Assert.Contains("7000", e.Message);
        e = Assert.Throws<VmmPanicException>(() => Vmcs.Write(s, VmcsField.GuestCsSelector, 0x1_0000));
        Assert.Contains("wider", e.Message);
        Assert.Throws<VmmPanicException>(() => Vmcs.Write(s, VmcsField.ExceptionBitmap, 0x1_0000_0000));
        Assert.Throws<VmmPanicException>(() => Vmcs.Write(s, VmcsField.GuestEfer + 1, 0x1_0000_0000));
        Assert.Throws<VmmPanicException>(() => Vmcs.Read(s, 0x2A02));                // unknown
        Assert.Throws<VmmPanicException>(() => Vmcs.Read(s, VmcsField.GuestRip + 1)); // high half of natural width
        e = Assert.Throws<VmmPanicException>(() => Vmcs.Enter(s, resume: true));
        Assert.Contains("not launched", e.Message);
        Vmcs.Enter(s, resume: false);
        Assert.True(s.IsLaunched(region));
        Assert.Throws<VmmPanicException>(() => Vmcs.Enter(s, resume: false));
        Vmcs.Enter(s, resume: true);
        Vmcs.Clear(s, region);                                                  // clear: not current, not launched
        Assert.Null(s.Current);
        Assert.False(s.IsLaunched(region));
        e = Assert.Throws<VmmPanicException>(() => Vmcs.Read(s, VmcsField.GuestRip));
        Assert.Contains("without a current VMCS", e.Message);
        region.Bytes[0] ^= 1;                                                   // a corrupt revision
        Assert.Throws<VmmPanicException>(() => Vmcs.Load(s, region));
        Assert.Throws<VmmPanicException>(() => Vmcs.Clear(s, region));
    }

    [Fact]
    public void TheProcessorStoresExitInformationDirectly()
    {
        var (s, region) = Ready();
        region.Store(VmcsField.ExitReason, 30);
        region.Store(VmcsField.ExitQualification, 0x00F8_0040);
        Assert.Equal(30UL, Vmcs.Read(s, VmcsField.ExitReason));
        Assert.Equal(0x00F8_0040UL, Vmcs.Read(s, VmcsField.ExitQualification));
    }
}
