// Option values on the command line: each malformed one is a one-line usage error.
using System;
using System.Globalization;

namespace Hyve.Cli;

/// <summary>Reads option values for the subcommands.</summary>
internal static class Arguments
{
    /// <summary>The value after option <paramref name="name"/> of <paramref name="command"/>.</summary>
    public static string Value(string command, ReadOnlySpan<string> args, ref int i, string name)
    {
        if (i + 1 >= args.Length)
            throw new UsageException($"{command}: {name} needs a value");
        return args[++i];
    }

    /// <summary>A non-negative number, decimal or 0x hex.</summary>
    public static long Number(string command, string s, string name)
    {
        bool ok = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? long.TryParse(s.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long v)
            : long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out v);
        if (!ok || v < 0)
            throw new UsageException($"{command}: {name} expects a number (decimal or 0x hex), got '{s}'");
        return v;
    }
}
