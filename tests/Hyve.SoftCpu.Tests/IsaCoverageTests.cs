// docs/isa.md is the measured coverage table: it must be what IsaCoverage measures now.
using System;
using System.Collections.Generic;
using System.IO;
using Hyve.TestSupport;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.SoftCpu.Tests;

public sealed class IsaCoverageTests(ITestOutputHelper output)
{
    [Fact]
    public void TheTableIsCurrent()
    {
        var forms = IsaCoverage.Measure(out List<string> crashes);
        string text = IsaCoverage.Markdown(forms);
        int executed = forms.FindAll(f => f.Executes).Count;
        output.WriteLine($"{forms.Count} forms, {executed} executed");
        foreach (string c in crashes)
            output.WriteLine($"host exception: {c}");
        Assert.Empty(crashes);
        Assert.True(forms.Count > 1000, $"only {forms.Count} forms found");
        // Every form of every extension CPUID reports executes, at the default level and at v3.
        var policy = new Hyve.Vmm.CpuidPolicy { Level = Hyve.Vmm.CpuLevel.V3 };
        List<IsaCoverage.Form> missing = forms.FindAll(f => !f.Executes && IsaCoverage.Reported(f.Extension, policy));
        foreach (IsaCoverage.Form f in missing)
            output.WriteLine($"reported but not executed: {f.Extension} {f.Mnemonic} {f.Sample}");
        Assert.Empty(missing);
        string path = Path.Combine(TestEnvironment.RepositoryRoot, "docs", "isa.md");
        if (Environment.GetEnvironmentVariable("HYVE_WRITE_ISA") == "1")
            File.WriteAllText(path, text);
        Assert.True(File.Exists(path) && File.ReadAllText(path) == text,
            "docs/isa.md is stale: run this test with HYVE_WRITE_ISA=1 and commit the file");
    }
}
