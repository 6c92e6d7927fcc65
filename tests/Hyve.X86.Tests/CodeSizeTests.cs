// Code size from processor state, and register updates at an address width.
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.X86.Tests;

public sealed class CodeSizeTests
{
    [Fact]
    public void BitnessFollowsCr0EferAndCs()
    {
        var real = new PagingState(0, 0, 0, 0, 0);
        var protectedMode = real with { Cr0 = PagingState.Cr0PE };
        var longMode = protectedMode with { Efer = PagingState.EferLME | PagingState.EferLMA };
        Assert.Equal(Bitness.Bits16, CodeSize.Of(real, Segment.Real(0xF000)));
        Assert.Equal(Bitness.Bits32, CodeSize.Of(real, Segment.Code32));      // a big real-mode CS
        Assert.Equal(Bitness.Bits16, CodeSize.Of(real with { Efer = PagingState.EferLMA }, Segment.Code64 with { Access = 0x209B })); // L is ignored in real mode
        Assert.Equal(Bitness.Bits32, CodeSize.Of(protectedMode, Segment.Code32));
        Assert.Equal(Bitness.Bits16, CodeSize.Of(protectedMode, Segment.Code64)); // L without LMA: D/B (clear) decides
        Assert.Equal(Bitness.Bits64, CodeSize.Of(longMode, Segment.Code64));
        Assert.Equal(Bitness.Bits32, CodeSize.Of(longMode, Segment.Code32));      // compatibility mode
        Assert.Equal(0xFFFFUL, CodeSize.IpMask(Bitness.Bits16));
        Assert.Equal(0xFFFF_FFFFUL, CodeSize.IpMask(Bitness.Bits32));
        Assert.Equal(ulong.MaxValue, CodeSize.IpMask(Bitness.Bits64));
    }

    [Fact]
    public void AddAtWidthKeepsOrClearsTheUpperBits()
    {
        Assert.Equal(0xAAAA_BBBB_CCCC_0001UL, CodeSize.AddAtWidth(0xAAAA_BBBB_CCCC_FFFF, 2, 2));        // wraps in 16 bits
        Assert.Equal(0x0000_0000_0000_0001UL, CodeSize.AddAtWidth(0xAAAA_BBBB_FFFF_FFFF, 2, 4));        // zero-extends
        Assert.Equal(0xAAAA_BBBC_0000_0001UL, CodeSize.AddAtWidth(0xAAAA_BBBB_FFFF_FFFF, 2, 8));
        Assert.Equal(0x1234_FFFEUL, CodeSize.AddAtWidth(0x1234_0000, ulong.MaxValue - 1, 2));           // minus two
    }
}
