// String instructions through the emulation context: one element per exit, the RAM side through
// guest memory, the device side through requests; checked against the host CPU running the same
// instruction on buffers.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.Vmm.Tests;

/// <summary>Identity-mapped guest memory: RAM below 1 MiB, device memory from <see cref="MmioBase"/>.</summary>
public sealed class MockGuestMemory : IGuestMemory
{
    public const ulong MmioBase = 0xFE00_0000;

    public byte[] Ram { get; } = new byte[1 << 20];

    public bool Translate(ulong gla, bool write, out ulong gpa)
    {
        gpa = gla;
        return gla < (ulong)Ram.Length || (gla >= MmioBase && gla < MmioBase + 0x10000);
    }

    public bool ReadRam(ulong gpa, Span<byte> data)
    {
        if (gpa >= (ulong)Ram.Length)
            return false;
        Ram.AsSpan((int)gpa, data.Length).CopyTo(data);
        return true;
    }

    public bool WriteRam(ulong gpa, ReadOnlySpan<byte> data)
    {
        if (gpa >= (ulong)Ram.Length)
            return false;
        data.CopyTo(Ram.AsSpan((int)gpa));
        return true;
    }
}

public sealed class VieStringTests
{
    // Runs a string instruction to completion the way a vCPU would: every element is its own exit
    // at the address of its device-memory side.
    private static int RunToEnd(byte[] insn, MockCpu cpu, MockGuestMemory memory, MockDeviceHalf half, Func<MockCpu, ulong> mmioAddress)
    {
        var vie = new Vie();
        ulong rip = cpu.Rip;
        for (int elements = 1; elements < 10_000; elements++)
        {
            ulong gla = mmioAddress(cpu);
            Assert.True(vie.Begin(gla, gla, glaValid: true, Bitness.Bits64, insn));
            VieStatus st;
            while ((st = vie.Emulate(cpu, new MockVmmDevices(), memory)) == VieStatus.NeedsDevice)
                Assert.Equal(FulfillResult.Ok, vie.Fulfill(half.Answer(vie.Pending)));
            if (st == VieStatus.Done)
            {
                Assert.Equal(rip + (ulong)insn.Length, cpu.Rip);
                return elements;
            }
            Assert.Equal(VieStatus.Repeat, st);
            Assert.Equal(rip, cpu.Rip);
        }
        throw new InvalidOperationException("did not finish");
    }

    [Fact]
    public void RepMovsbFromDeviceMemoryToRamMovesOneElementPerExit()
    {
        var cpu = new MockCpu();
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        for (int i = 0; i < 5; i++)
            half.Store(MockGuestMemory.MmioBase + (ulong)i, (ulong)(0xA0 + i), 1);
        cpu.Gpr[6] = MockGuestMemory.MmioBase; // RSI
        cpu.Gpr[7] = 0x2000;                   // RDI
        cpu.Gpr[1] = 5;                        // RCX
        int elements = RunToEnd([0xF3, 0xA4], cpu, memory, half, c => c.Gpr[6]);
        Assert.Equal(5, elements);
        Assert.Equal(new byte[] { 0xA0, 0xA1, 0xA2, 0xA3, 0xA4 }, memory.Ram[0x2000..0x2005]);
        Assert.Equal(MockGuestMemory.MmioBase + 5, cpu.Gpr[6]);
        Assert.Equal(0x2005UL, cpu.Gpr[7]);
        Assert.Equal(0UL, cpu.Gpr[1]);
        Assert.Equal(5, half.Requests.Count); // one read per element, each once
    }

    [Fact]
    public void RepStosdDownwardIntoDeviceMemory()
    {
        var cpu = new MockCpu { Rflags = Rflags.Fixed1 | Rflags.DF };
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        cpu.Gpr[0] = 0x1122_3344_5566_7788;
        cpu.Gpr[7] = MockGuestMemory.MmioBase + 0x10;
        cpu.Gpr[1] = 3;
        RunToEnd([0xF3, 0xAB], cpu, memory, half, c => c.Gpr[7]);
        Assert.Equal(
            [new MmioAccess(MockGuestMemory.MmioBase + 0x10, 4, true, 0x5566_7788), new MmioAccess(MockGuestMemory.MmioBase + 0xC, 4, true, 0x5566_7788), new MmioAccess(MockGuestMemory.MmioBase + 0x8, 4, true, 0x5566_7788)],
            half.Requests);
        Assert.Equal(MockGuestMemory.MmioBase + 4, cpu.Gpr[7]);
    }

    [Fact]
    public void AddressSize32UpdatesOnlyTheLowHalves()
    {
        var cpu = new MockCpu();
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        cpu.Gpr[6] = 0xFFFF_FFFF_0000_0000 | MockGuestMemory.MmioBase; // upper half ignored with 67
        cpu.Gpr[7] = 0xAAAA_AAAA_0000_3000;
        cpu.Gpr[1] = 0x5555_5555_0000_0002;
        half.Store(MockGuestMemory.MmioBase, 0x0807_0605_0403_0201, 8);
        RunToEnd([0x67, 0xF3, 0x48, 0xA5], cpu, memory, half, c => (uint)c.Gpr[6]); // rep movsq, 32-bit addresses
        Assert.Equal(MockGuestMemory.MmioBase + 16, cpu.Gpr[6]);
        Assert.Equal(0x3010UL, cpu.Gpr[7]);
        Assert.Equal(0UL, cpu.Gpr[1]);
    }

    [Fact]
    public void LodsLoadsTheAccumulatorAndZeroCountDoesNothing()
    {
        var cpu = new MockCpu();
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        half.Store(MockGuestMemory.MmioBase, 0xBEEF, 2);
        cpu.Gpr[0] = 0xFFFF_FFFF_FFFF_FFFF;
        cpu.Gpr[6] = MockGuestMemory.MmioBase;
        RunToEnd([0x66, 0xAD], cpu, memory, half, c => c.Gpr[6]); // lodsw
        Assert.Equal(0xFFFF_FFFF_FFFF_BEEFUL, cpu.Gpr[0]);

        cpu.Gpr[1] = 0;
        ulong rsi = cpu.Gpr[6];
        RunToEnd([0xF3, 0xA4], cpu, memory, half, c => c.Gpr[6]); // rep movsb with RCX = 0
        Assert.Equal(rsi, cpu.Gpr[6]);
    }

    public static IEnumerable<object[]> NativeCases() =>
    [
        ["F3A4", false], ["F3A4", true], ["F366A5", false], ["F3A5", true], ["F348A5", false],
        ["F3AA", false], ["F3AB", true], ["F348AB", false], ["AC", false], ["66AD", true], ["48AD", false],
    ];

    [Theory]
    [MemberData(nameof(NativeCases))]
    public void MatchesTheHostCpu(string hex, bool down)
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        byte[] insn = Convert.FromHexString(hex);
        Decoder.Decode(insn, Bitness.Bits64, out Instruction d);
        const int Count = 7;
        var rng = new Random(20261125 + hex.Length + (down ? 1 : 0));
        byte[] source = new byte[64];
        rng.NextBytes(source);

        // Native: source and destination buffers in host memory.
        byte[] src = GC.AllocateArray<byte>(64, pinned: true);
        byte[] dst = GC.AllocateArray<byte>(64, pinned: true);
        source.CopyTo(src, 0);
        ulong srcAt = (ulong)Marshal.UnsafeAddrOfPinnedArrayElement(src, down ? 48 : 8);
        ulong dstAt = (ulong)Marshal.UnsafeAddrOfPinnedArrayElement(dst, down ? 48 : 8);
        using var native = new NativeCpu();
        var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | (down ? Rflags.DF : 0) };
        st.In[0] = (ulong)rng.NextInt64();
        st.In[1] = Count;
        st.In[6] = srcAt;
        st.In[7] = dstAt;
        // The stub cannot leave DF set on return to the runtime: CLD after the instruction.
        native.Run([.. insn, 0xFC], ref st);

        // Emulated: the source in device memory, the destination in RAM (or the reverse for STOS).
        var cpu = new MockCpu { Rflags = st.FlagsIn };
        cpu.Gpr[0] = st.In[0];
        cpu.Gpr[1] = Count;
        ulong mmio = MockGuestMemory.MmioBase + (down ? 48UL : 8UL);
        ulong ram = 0x4000 + (down ? 48UL : 8UL);
        bool stores = d.Mnemonic is Mnemonic.Stosb or Mnemonic.Stosw or Mnemonic.Stosd or Mnemonic.Stosq;
        cpu.Gpr[6] = mmio;
        cpu.Gpr[7] = stores ? mmio : ram;
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        if (!stores)
        {
            for (int i = 0; i < 64; i++)
                half.Store(MockGuestMemory.MmioBase + (ulong)i, source[i], 1);
        }
        RunToEnd(insn, cpu, memory, half, c => stores ? c.Gpr[7] : c.Gpr[6]);

        Assert.Equal(st.Out[0], cpu.Gpr[0]);
        Assert.Equal(st.Out[1], cpu.Gpr[1]);
        Assert.Equal(st.Out[6] - srcAt, cpu.Gpr[6] - mmio);
        Assert.Equal(st.Out[7] - dstAt, cpu.Gpr[7] - (stores ? mmio : ram));
        byte[] emulatedDst = new byte[64];
        for (int i = 0; i < 64; i++)
        {
            emulatedDst[i] = stores
                ? (half.Memory.TryGetValue(MockGuestMemory.MmioBase + (ulong)i, out byte b) ? b : (byte)0)
                : memory.Ram[0x4000 + i];
        }
        if (d.Mnemonic is not (Mnemonic.Lodsb or Mnemonic.Lodsw or Mnemonic.Lodsd or Mnemonic.Lodsq))
            Assert.Equal(dst, emulatedDst);
    }
}
