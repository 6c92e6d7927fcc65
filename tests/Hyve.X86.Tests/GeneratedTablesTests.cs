// Fails when the checked-in generated decoder tables differ from what the data files produce.
using System.IO;
using Hyve.TableGen;
using Xunit;

namespace Hyve.X86.Tests;

public sealed class GeneratedTablesTests
{
    [Fact]
    public void GeneratedFilesAreFresh()
    {
        string root = RepoRoot.Find();
        var files = TableGenerator.Generate(TableGenerator.DefaultDataDir(root));
        Assert.NotEmpty(files);
        foreach (var (name, text) in files)
        {
            string path = Path.Combine(TableGenerator.DefaultOutputDir(root), name);
            Assert.True(File.Exists(path), $"{path} is missing: run `dotnet run --project tools/Hyve.TableGen`");
            Assert.True(File.ReadAllText(path) == text, $"{path} is stale: run `dotnet run --project tools/Hyve.TableGen`");
        }
    }
}

/// <summary>Locates the repository root from the test's working directory.</summary>
public static class RepoRoot
{
    /// <summary>The directory holding global.json and src/.</summary>
    public static string Find()
    {
        for (var d = new DirectoryInfo(System.AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "global.json")) && Directory.Exists(Path.Combine(d.FullName, "src")))
                return d.FullName;
        }
        throw new DirectoryNotFoundException("repository root (global.json) not found above " + System.AppContext.BaseDirectory);
    }
}
