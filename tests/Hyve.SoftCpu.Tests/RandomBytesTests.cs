// Guest code the software CPU cannot make sense of must end in something a processor does (an
// exception, a shutdown, an exit it reports), never in a host exception: random instruction
// bytes, in each mode, with random registers.
using System;
using System.Linq;
using Hyve.TestSupport;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.SoftCpu.Tests;

public sealed class RandomBytesTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_SOFTCPU_RANDOM", 20_000);
    private static readonly int Seed = TestEnvironment.Int("HYVE_SEED", 20261122);

    [Theory]
    [InlineData(64)]
    [InlineData(32)]
    [InlineData(16)]
    public void RandomBytesEndInAnExitOrAFault(int bits)
    {
        var rng = new Random(Seed + bits);
        using var memory = new GuestMemory();
        memory.AddRam(0, 0x40_0000);
        // A time slice, so bytes that loop forever (EB FE) end in a preemption exit.
        var vcpu = new VmxVcpu(new SoftProcessor(memory, new VmClock()), 0xF000_0000) { Memory = memory, Quantum = 20_000 };
        memory.WriteRam(0x1000, BitConverter.GetBytes(0x2003UL));
        memory.WriteRam(0x2000, BitConverter.GetBytes(0x3003UL));
        memory.WriteRam(0x3000, BitConverter.GetBytes(0x83UL));
        memory.WriteRam(0x3008, BitConverter.GetBytes(0x20_0083UL));
        var kinds = new System.Collections.Generic.Dictionary<BackendExitKind, int>();
        var unhandled = new System.Collections.Generic.List<string>();
        byte[] code = new byte[64];
        for (int k = 0; k < Cases; k++)
        {
            rng.NextBytes(code);
            memory.WriteRam(0x10000, code);
            for (int r = 0; r < 16; r++)
                vcpu.SetGpr(r, rng.Next(3) == 0 ? (ulong)rng.Next(0x10000, 0x30000) : (ulong)rng.NextInt64());
            vcpu.SetGpr(4, 0x8000);
            vcpu.Rflags = Rflags.Fixed1 | ((ulong)rng.Next() & (Rflags.Status | Rflags.DF));
            // No usable IDT: a fault shuts the processor down, which is an exit too.
            HostCpuHarness.EnterMode(vcpu, memory, bits, PagingState.Cr4OSFXSR);
            // A run ends at an exit; a few more entries let a REP or a loop of bytes go on.
            for (int e = 0; e < 4; e++)
            {
                BackendExit exit = vcpu.Run();
                kinds[exit.Kind] = (kinds.TryGetValue(exit.Kind, out int seen) ? seen : 0) + 1;
                if (exit.Kind == BackendExitKind.Unhandled && unhandled.Count < 5)
                    unhandled.Add($"reason {exit.Reason} at 0x{vcpu.Rip:X} after {Convert.ToHexString(code)}");
                if (exit.Kind is BackendExitKind.TripleFault or BackendExitKind.Mmio or BackendExitKind.Io)
                    break;
            }
        }
        output.WriteLine($"{Cases} random {bits}-bit byte sequences, seed {Seed + bits}: " + string.Join(", ", kinds));
        foreach (string u in unhandled)
            output.WriteLine($"unhandled: {u}");
        Assert.True(kinds.Count > 1, "the runs ended in only one way");
        // Whatever the bytes, the processor answers as hardware would: nothing is left unhandled.
        Assert.False(kinds.ContainsKey(BackendExitKind.Unhandled), $"{unhandled.Count} unhandled exits, the first: {unhandled.FirstOrDefault()}");
    }
}
