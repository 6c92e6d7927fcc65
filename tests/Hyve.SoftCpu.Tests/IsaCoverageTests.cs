// docs/isa.md is the measured coverage table: it must be what IsaCoverage measures now.
using System;
using System.IO;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.SoftCpu.Tests;

public sealed class IsaCoverageTests(ITestOutputHelper output)
{
    [Fact]
    public void TheTableIsCurrent()
    {
        var forms = IsaCoverage.Measure();
        string text = IsaCoverage.Markdown(forms);
        int executed = forms.FindAll(f => f.Executes).Count;
        output.WriteLine($"{forms.Count} forms, {executed} executed");
        foreach (string c in IsaCoverage.Crashes)
            output.WriteLine($"host exception: {c}");
        Assert.Empty(IsaCoverage.Crashes);
        Assert.True(forms.Count > 1000, $"only {forms.Count} forms found");
        string path = Path.Combine(Root(), "docs", "isa.md");
        if (Environment.GetEnvironmentVariable("HYVE_WRITE_ISA") == "1")
            File.WriteAllText(path, text);
        Assert.True(File.Exists(path) && File.ReadAllText(path) == text,
            "docs/isa.md is stale: run this test with HYVE_WRITE_ISA=1 and commit the file");
    }

    private static string Root()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Hyve.slnx")))
                return d.FullName;
        }
        throw new DirectoryNotFoundException("no repository root above the test binaries");
    }
}
