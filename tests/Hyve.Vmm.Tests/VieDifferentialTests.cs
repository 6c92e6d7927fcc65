// The emulator against the host CPU (the same check `hyve verify emulator` runs): every
// instruction form behind device memory, sometimes split with RAM or a second device page,
// reached through 4-level page tables, against the instruction run natively.
using Hyve.TestSupport;
using Hyve.Vmm.Verification;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.Vmm.Tests;

public sealed class VieDifferentialTests(ITestOutputHelper output)
{
    private static readonly int Cases = TestEnvironment.Int("HYVE_VIE_CASES", 50_000);
    private static readonly int Seed = TestEnvironment.Int("HYVE_SEED", 20261124);

    [Fact]
    public void EmulatedInstructionsMatchTheHostCpu()
    {
        Assert.True(EmulatorVerifier.Supported, "the host-CPU oracle needs an x86-64 Linux host");
        VerifyResult r = EmulatorVerifier.Run(Cases, Seed);
        output.WriteLine($"{Cases} cases over {r.Forms} forms, seed {Seed} (HYVE_SEED): {r.Passed} passed, {r.Failed} failed");
        foreach (string f in r.Failures)
            output.WriteLine(f);
        Assert.Equal(Cases, r.Passed);
        Assert.True(r.Failed == 0, $"{r.Failed} of {Cases} failed; first: {(r.Failures.Count > 0 ? r.Failures[0] : "")}");
    }
}
