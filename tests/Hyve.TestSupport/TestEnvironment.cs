// Knobs for the randomized tests (case counts and seeds from the environment, with defaults),
// and where the repository is (for its guests and docs).
using System;
using System.Globalization;
using System.IO;

namespace Hyve.TestSupport;

/// <summary>Reads integer settings (HYVE_SEED, case counts) from environment variables.</summary>
public static class TestEnvironment
{
    /// <summary>The value of <paramref name="name"/> as an integer, or <paramref name="fallback"/>.</summary>
    public static int Int(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : fallback;

    /// <summary>The repository's root: the first folder above the test binaries with Hyve.slnx.</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            {
                if (File.Exists(Path.Combine(d.FullName, "Hyve.slnx")))
                    return d.FullName;
            }
            throw new DirectoryNotFoundException("the repository root (Hyve.slnx) is not above the test binaries");
        }
    }
}
