// The VMX I/O exit decoder over every encoding of the qualification's low bits and of the
// instruction information's address-size and segment fields.
using Hyve.Vmm.Emulation;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VmxIoExitTests
{
    [Fact]
    public void EveryQualificationDecodes()
    {
        int decoded = 0, refused = 0;
        for (ulong low = 0; low < 0x80; low++)
        {
            foreach (ulong port in new ulong[] { 0, 0x60, 0x3F8, 0xCFC, 0xFFFF })
            {
                ulong q = low | (port << 16);
                int sizeField = (int)(low & 7);
                if (sizeField is not (0 or 1 or 3))
                {
                    Assert.Throws<VmmPanicException>(() => VmxIoExit.Decode(q, 0, 1));
                    refused++;
                    continue;
                }
                IoExit e = VmxIoExit.Decode(q, 0, 2);
                Assert.Equal(sizeField == 3 ? 4 : sizeField + 1, e.Size);
                Assert.Equal((low & 8) != 0, e.In);
                Assert.Equal((low & 0x10) != 0, e.String);
                Assert.Equal((low & 0x20) != 0, e.Rep);
                Assert.Equal((low & 0x40) != 0, e.Immediate);
                Assert.Equal((ushort)port, e.Port);
                Assert.Equal(2, e.Length);
                Assert.Equal(q, VmxIoExit.Qualification(in e));
                decoded++;
            }
        }
        Assert.Equal(3 * 16 * 5, decoded);
        Assert.Equal(5 * 16 * 5, refused);
    }

    [Theory]
    [InlineData(0u, 2)]
    [InlineData(1u, 4)]
    [InlineData(2u, 8)] // 64-bit: 8 bytes (2 << (1 + field) would say 16 and panic the host)
    public void AddressSizeIsTwoShiftedByTheField(uint field, int bytes)
    {
        const ulong repOutsb = 0x10 | 0x20 | (0x80UL << 16); // string, REP, byte, OUT, port 0x80
        IoExit e = VmxIoExit.Decode(repOutsb, field << 7, 2);
        Assert.Equal(bytes, e.AddressSize);
        Assert.True(e.String && e.Rep && !e.In);
    }

    [Fact]
    public void UndefinedAddressSizesAndSegmentsPanic()
    {
        for (uint field = 3; field < 8; field++)
            Assert.Throws<VmmPanicException>(() => VmxIoExit.Decode(0x10, field << 7, 1));
        for (uint seg = 0; seg < 8; seg++)
        {
            if (seg < 6)
                Assert.Equal(RegisterInfo.Add(Register.ES, (int)seg), VmxIoExit.Decode(0x10, seg << 15, 1).Segment);
            else
                Assert.Throws<VmmPanicException>(() => VmxIoExit.Decode(0x10, seg << 15, 1));
        }
        Assert.Throws<VmmPanicException>(() => VmxIoExit.Decode(0, 0, 0));
        Assert.Throws<VmmPanicException>(() => VmxIoExit.Decode(0, 0, 16));
    }

    [Fact]
    public void InsAlwaysWritesEsAndNonStringExitsIgnoreTheInformation()
    {
        IoExit ins = VmxIoExit.Decode(0x18, (2u << 7) | (3u << 15), 1); // INS with DS in the segment field
        Assert.Equal(Register.ES, ins.Segment);
        Assert.Equal(8, ins.AddressSize);
        IoExit outb = VmxIoExit.Decode(0x40 | (0x80UL << 16), 0xFFFF_FFFF, 2); // out 0x80, al: information undefined
        Assert.Equal(0, outb.AddressSize);
        Assert.True(outb.Immediate);
    }
}
