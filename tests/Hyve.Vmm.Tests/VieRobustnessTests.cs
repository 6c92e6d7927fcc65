// Random bytes never crash or hang the emulator: every run ends in done, repeat, a fault or a fallback.
using System;
using System.Linq;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
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
            var cpu = new MockCpu { Rflags = Hyve.X86.Rflags.Fixed1 | ((ulong)rng.Next() & 0xCD5) };
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
            VieStatus st = VieStatus.NeedsDevice;
            for (int pass = 0; pass < 20 && st == VieStatus.NeedsDevice; pass++)
            {
                st = vie.Emulate(cpu, new MockVmmDevices(), memory);
                if (st == VieStatus.NeedsDevice)
                    Assert.Equal(FulfillResult.Ok, vie.Fulfill(half.Answer(vie.Pending)));
            }
            Assert.NotEqual(VieStatus.NeedsDevice, st);
            counts[(int)st]++;
        }
        output.WriteLine($"{bitness}: {Cases} random instructions, seed {seed}: " +
            string.Join(", ", Enum.GetValues<VieStatus>().Select(s => $"{s} {counts[(int)s]}")));
        Assert.True(counts[(int)VieStatus.Done] > 0, "nothing was emulated");
    }
}
