// String instructions through the emulation context: one element per exit, the RAM side through
// guest memory, the device side through requests; checked against the host CPU running the same
// instruction on buffers.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.Vmm.Verification;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.Vmm.Tests;

/// <summary>Identity-mapped guest memory: RAM below 1 MiB, device memory from <see cref="MmioBase"/>.</summary>
public sealed class MockGuestMemory : IGuestMemory
{
    public const ulong MmioBase = 0xFE00_0000;

    public byte[] Ram { get; } = new byte[1 << 20];

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

    [Fact]
    public void CompareWithBothSidesInDeviceMemoryReadsEachOnce()
    {
        var cpu = new MockCpu();
        cpu.Gpr[6] = MockGuestMemory.MmioBase;
        cpu.Gpr[7] = MockGuestMemory.MmioBase + 0x2000;
        var half = new MockDeviceHalf();
        half.Store(MockGuestMemory.MmioBase, 5, 1);
        half.Store(MockGuestMemory.MmioBase + 0x2000, 7, 1);
        var vie = new Vie();
        Assert.True(vie.Begin(MockGuestMemory.MmioBase, MockGuestMemory.MmioBase, glaValid: true, Bitness.Bits64, [0xA6]));
        var (st, passes) = half.Run(vie, cpu, new MockVmmDevices(), new MockGuestMemory());
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(3, passes);
        Assert.Equal([new MmioAccess(MockGuestMemory.MmioBase, 1, false, 0), new MmioAccess(MockGuestMemory.MmioBase + 0x2000, 1, false, 0)], half.Requests);
        Assert.Equal(Rflags.CF | Rflags.SF | Rflags.AF, cpu.Rflags & Rflags.Status); // 5 - 7
        Assert.Equal(MockGuestMemory.MmioBase + 1, cpu.Gpr[6]);
        Assert.Equal(MockGuestMemory.MmioBase + 0x2001, cpu.Gpr[7]);
    }

    [Fact]
    public void AFaultingDestinationFaultsBeforeTheSourceIsRead()
    {
        var cpu = new MockCpu();
        cpu.Gpr[6] = MockGuestMemory.MmioBase;
        cpu.Gpr[7] = 0x8000_0000_0000; // not canonical: #GP(0)
        var vie = new Vie();
        Assert.True(vie.Begin(MockGuestMemory.MmioBase, MockGuestMemory.MmioBase, glaValid: true, Bitness.Bits64, [0xA4]));
        Assert.Equal(VieStatus.Fault, vie.Emulate(cpu, new MockVmmDevices(), new MockGuestMemory()));
        Assert.Equal(new GuestFault(ExceptionVector.GP, 0), vie.Fault);
        Assert.Equal(0, vie.Requests);
    }

    public static IEnumerable<object[]> NativeCases() =>
    [
        ["F3A4", false], ["F3A4", true], ["F366A5", false], ["F3A5", true], ["F348A5", false],
        ["F3AA", false], ["F3AB", true], ["F348AB", false], ["AC", false], ["66AD", true], ["48AD", false],
        ["F3A6", false], ["F2A6", true], ["F366A7", false], ["F3AE", false], ["F2AE", true], ["F2AF", false], ["A6", false], ["48AF", true],
    ];

    [Theory]
    [MemberData(nameof(NativeCases))]
    public void MatchesTheHostCpu(string hex, bool down)
    {
        Assert.True(NativeCpu.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        byte[] insn = Convert.FromHexString(hex);
        Decoder.Decode(insn, Bitness.Bits64, out Instruction d);
        Mnemonic m = d.Mnemonic;
        bool stores = m is Mnemonic.Stosb or Mnemonic.Stosw or Mnemonic.Stosd or Mnemonic.Stosq;
        bool loads = m is Mnemonic.Lodsb or Mnemonic.Lodsw or Mnemonic.Lodsd or Mnemonic.Lodsq;
        bool scans = m is Mnemonic.Scasb or Mnemonic.Scasw or Mnemonic.Scasd or Mnemonic.Scasq;
        bool compares = scans || m is Mnemonic.Cmpsb or Mnemonic.Cmpsw or Mnemonic.Cmpsd or Mnemonic.Cmpsq;
        const int Count = 7;
        int start = down ? 48 : 8;
        var rng = new Random(20261125 + hex.Length + (down ? 1 : 0));
        byte[] source = new byte[64];
        byte[] target = new byte[64];
        rng.NextBytes(source);
        if (compares)
        {
            // Equal runs let REPE continue and make REPNE stop: part of the target equals the source.
            Array.Copy(source, target, 40);
            rng.NextBytes(target.AsSpan(40));
        }
        ulong rax = scans ? BitConverter.ToUInt64(source, start) : (ulong)rng.NextInt64();

        // Natively, on two host buffers.
        byte[] src = GC.AllocateArray<byte>(64, pinned: true);
        byte[] dst = GC.AllocateArray<byte>(64, pinned: true);
        source.CopyTo(src, 0);
        target.CopyTo(dst, 0);
        ulong srcAt = (ulong)Marshal.UnsafeAddrOfPinnedArrayElement(src, start);
        ulong dstAt = (ulong)Marshal.UnsafeAddrOfPinnedArrayElement(dst, start);
        using var native = new NativeCpu();
        var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | (down ? Rflags.DF : 0) };
        st.In[0] = rax;
        st.In[1] = Count;
        st.In[6] = srcAt;
        st.In[7] = dstAt;
        native.Run([.. insn, 0xFC], ref st); // CLD after: the runtime needs DF clear

        // Emulated: the side that is read (or, for STOS and SCAS, the ES:rDI side) is device memory.
        bool deviceIsDestination = stores || scans;
        ulong mmio = MockGuestMemory.MmioBase + (ulong)start;
        ulong ram = 0x4000 + (ulong)start;
        var cpu = new MockCpu { Rflags = st.FlagsIn };
        cpu.Gpr[0] = rax;
        cpu.Gpr[1] = Count;
        cpu.Gpr[6] = deviceIsDestination ? ram : mmio;
        cpu.Gpr[7] = deviceIsDestination ? mmio : ram;
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        byte[] deviceBytes = deviceIsDestination ? target : source;
        byte[] ramBytes = deviceIsDestination ? source : target;
        if (!stores)
        {
            for (int i = 0; i < 64; i++)
                half.Store(MockGuestMemory.MmioBase + (ulong)i, deviceBytes[i], 1);
        }
        ramBytes.CopyTo(memory.Ram, 0x4000);
        RunToEnd(insn, cpu, memory, half, c => deviceIsDestination ? c.Gpr[7] : c.Gpr[6]);

        Assert.Equal(st.Out[0], cpu.Gpr[0]);
        Assert.Equal(st.Out[1], cpu.Gpr[1]);
        Assert.Equal(st.Out[6] - srcAt, cpu.Gpr[6] - (deviceIsDestination ? ram : mmio));
        Assert.Equal(st.Out[7] - dstAt, cpu.Gpr[7] - (deviceIsDestination ? mmio : ram));
        ulong defined = compares ? Rflags.Status : 0;
        Assert.Equal(st.FlagsOut & defined, cpu.Rflags & defined);
        if (!loads && !compares)
        {
            byte[] written = new byte[64];
            for (int i = 0; i < 64; i++)
            {
                written[i] = stores
                    ? (half.Memory.TryGetValue(MockGuestMemory.MmioBase + (ulong)i, out byte b) ? b : (byte)0)
                    : memory.Ram[0x4000 + i];
            }
            Assert.Equal(dst, written);
        }
    }
}
