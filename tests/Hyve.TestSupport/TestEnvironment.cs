// Knobs for the randomized tests: case counts and seeds from the environment, with defaults.
using System;
using System.Globalization;

namespace Hyve.TestSupport;

/// <summary>Reads integer settings (HYVE_SEED, case counts) from environment variables.</summary>
public static class TestEnvironment
{
    /// <summary>The value of <paramref name="name"/> as an integer, or <paramref name="fallback"/>.</summary>
    public static int Int(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : fallback;
}
