// Random bytes never crash or hang the emulator: every run ends in done, repeat, a fault or a fallback.
using System;
using System.Linq;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.Vmm.Tests;

public sealed class VieRobustnessTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_VIE_RANDOM", 200_000);

    [Theory]
    [InlineData(Bitness.Bits16)]
    [InlineData(Bitness.Bits32)]
    [InlineData(Bitness.Bits64)]
    public void RandomBytesEndInAVerdict(Bitness bitness)
    {
        int seed = 20261126 + (int)bitness;
        var rng = new Random(seed);
        var counts = new int[Enum.GetValues<VieStatus>().Length];
        var vie = new Vie();
        var memory = new MockGuestMemory();
        var bytes = new byte[15];
        for (int k = 0; k < Cases; k++)
        {
            rng.NextBytes(bytes);
            var cpu = new MockCpu { Rflags = Rflags.Fixed1 | ((ulong)rng.Next() & 0xCD5) };
            // Registers point into RAM, into device memory or anywhere, so that string and stack
            // forms reach their memory paths too.
            for (int r = 0; r < 16; r++)
            {
                cpu.Gpr[r] = rng.Next(3) switch
                {
                    0 => (ulong)rng.Next(0x1000, 0xF0000),
                    1 => MockGuestMemory.MmioBase + (ulong)rng.Next(0x10, 0xF000),
                    _ => (ulong)rng.NextInt64() * 2 + (ulong)rng.Next(2),
                };
            }
            var half = new MockDeviceHalf();
            ulong gpa = MockGuestMemory.MmioBase + (ulong)rng.Next(0x1000);
            if (!vie.Begin(gpa, 0, glaValid: false, bitness, bytes))
            {
                counts[(int)VieStatus.Fallback]++;
                continue;
            }
            // Run answers every request and fails the test if an instruction makes no progress.
            VieStatus st = half.Run(vie, cpu, new MockVmmDevices(), memory).Status;
            counts[(int)st]++;
        }
        output.WriteLine($"{bitness}: {Cases} random instructions, seed {seed}: " +
            string.Join(", ", Enum.GetValues<VieStatus>().Select(s => $"{s} {counts[(int)s]}")));
        Assert.True(counts[(int)VieStatus.Done] > 0, "nothing was emulated");
    }

    // Random control state, random segments and page tables made of random bytes: the walk, the
    // fetch and the segment checks must end in a verdict too.
    [Fact]
    public void RandomMachineStateEndsInAVerdict()
    {
        const int seed = 20261127;
        var rng = new Random(seed);
        var counts = new int[Enum.GetValues<VieStatus>().Length];
        var vie = new Vie();
        var memory = new MockGuestMemory();
        rng.NextBytes(memory.Ram);
        var bytes = new byte[15];
        Register[] segments = [Register.ES, Register.CS, Register.SS, Register.DS, Register.FS, Register.GS];
        int cases = Math.Max(Cases / 4, 1000);
        for (int k = 0; k < cases; k++)
        {
            rng.NextBytes(bytes);
            var cpu = new MockCpu { Rflags = Rflags.Fixed1 | ((ulong)rng.Next() & 0x40CD5), Rip = (ulong)rng.Next(0, 0x10_0000) };
            for (int r = 0; r < 16; r++)
                cpu.Gpr[r] = rng.Next(2) == 0 ? (ulong)rng.Next(0, 0x10_0000) : (ulong)rng.NextInt64();
            foreach (Register s in segments)
                cpu.Segments[s] = new Segment((ushort)rng.Next(), (ulong)rng.Next(0, 0x10_0000), (uint)rng.Next(), (uint)rng.Next(0, 0x2_0000));
            var paging = new PagingState(
                (ulong)rng.Next() & (PagingState.Cr0PE | PagingState.Cr0PG | PagingState.Cr0WP | PagingState.Cr0AM | PagingState.Cr0TS | PagingState.Cr0EM),
                (ulong)rng.Next(0, 0x10_0000),
                (ulong)rng.Next() & 0x3012B0,
                (ulong)rng.Next() & 0xD00,
                rng.Next(4));
            ulong gpa = MockGuestMemory.MmioBase + (ulong)rng.Next(0x1000);
            bool fetch = rng.Next(2) == 0;
            vie.Begin(gpa, gpa, glaValid: rng.Next(2) == 0, paging, cpu, memory, fetch ? default : bytes);
            var half = new MockDeviceHalf();
            // Run answers every request and fails the test if an instruction makes no progress.
            VieStatus st = half.Run(vie, cpu, new MockVmmDevices(), memory).Status;
            counts[(int)st]++;
        }
        output.WriteLine($"{cases} random machine states, seed {seed}: " +
            string.Join(", ", Enum.GetValues<VieStatus>().Select(s => $"{s} {counts[(int)s]}")));
        Assert.True(counts[(int)VieStatus.Done] > 0 && counts[(int)VieStatus.Fault] > 0, "the run reached neither completions nor faults");
    }

    // Random port-I/O exits over random registers and segments: every one ends in a verdict, and
    // the device half is asked only for port accesses of 1, 2 or 4 bytes and memory accesses.
    [Fact]
    public void RandomPortExitsEndInAVerdict()
    {
        const int seed = 20261128;
        var rng = new Random(seed);
        var counts = new int[Enum.GetValues<VieStatus>().Length];
        var vie = new Vie();
        var memory = new MockGuestMemory();
        Register[] segments = [Register.ES, Register.CS, Register.SS, Register.DS, Register.FS, Register.GS];
        int cases = Math.Max(Cases / 4, 1000);
        for (int k = 0; k < cases; k++)
        {
            var cpu = new MockCpu { Rflags = Rflags.Fixed1 | ((ulong)rng.Next() & 0x40CD5) };
            for (int r = 0; r < 16; r++)
                cpu.Gpr[r] = rng.Next(3) == 0 ? (ulong)rng.NextInt64() : (uint)rng.Next(0, 0x20) | (rng.Next(2) == 0 ? MockGuestMemory.MmioBase : 0xFF000UL);
            foreach (Register s in segments)
                cpu.Segments[s] = rng.Next(4) == 0 ? new Segment(0, (ulong)rng.Next(), (uint)rng.Next(), (uint)rng.Next(0, 0x2_0000)) : s == Register.CS ? Segment.Code64 : Segment.FlatData;
            var exit = new IoExit((ushort)rng.Next(0x1_0000), (byte)(1 << rng.Next(3)), rng.Next(2) == 0, rng.Next(2) == 0, rng.Next(2) == 0,
                rng.Next(2) == 0, (byte)(2 << rng.Next(3)), RegisterInfo.Add(Register.ES, rng.Next(6)), (byte)rng.Next(1, 16));
            PagingState paging = rng.Next(2) == 0 ? PagingState.Flat : new PagingState((ulong)rng.Next() & 0x8005_0001, (ulong)rng.Next(0, 0x10_0000), (ulong)rng.Next() & 0x3012B0, (ulong)rng.Next() & 0xD00, rng.Next(4));
            vie.BeginIo(in exit, paging, cpu);
            VieStatus st;
            int passes = 0;
            var half = new MockDeviceHalf();
            do
            {
                st = vie.Emulate(cpu, new MockVmmDevices(), memory);
                if (st == VieStatus.NeedsDevice)
                {
                    FulfillResult r = vie.PendingIsInout
                        ? vie.FulfillInout(vie.PendingInout with { Eax = vie.PendingInout.In ? (uint)rng.Next() : vie.PendingInout.Eax })
                        : vie.Fulfill(half.Answer(vie.Pending));
                    Assert.Equal(FulfillResult.Ok, r);
                }
                Assert.True(++passes < 20, "no progress");
            }
            while (st == VieStatus.NeedsDevice);
            counts[(int)st]++;
        }
        output.WriteLine($"{cases} random port exits, seed {seed}: " +
            string.Join(", ", Enum.GetValues<VieStatus>().Select(s => $"{s} {counts[(int)s]}")));
        Assert.True(counts[(int)VieStatus.Done] > 0 && counts[(int)VieStatus.Repeat] > 0 && counts[(int)VieStatus.Fault] > 0);
    }
}
