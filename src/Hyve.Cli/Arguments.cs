// Option values on the command line and the files they name: each malformed value is a one-line
// usage error, each file that cannot be used a one-line input error naming the option and file.
using System;
using System.Globalization;
using System.IO;

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

    /// <summary>The contents of the file an option names.</summary>
    /// <exception cref="IOException">It is missing, a directory, or cannot be read (the message
    /// names the option and the file).</exception>
    public static byte[] ReadFile(string command, string option, string path)
    {
        CheckFile(command, option, path);
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{command}: {option} {path}: cannot be read ({e.Message})", e);
        }
    }

    /// <summary>Checks that the file an option names exists and can be opened for reading and
    /// writing (a disk image).</summary>
    /// <exception cref="IOException">It cannot.</exception>
    public static void CheckWritableFile(string command, string option, string path)
    {
        CheckFile(command, option, path);
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{command}: {option} {path}: cannot be opened for reading and writing ({e.Message})", e);
        }
    }

    /// <summary>Checks that the file an option names can be opened for reading; its length.</summary>
    /// <exception cref="IOException">It cannot (the message names the option and the file).</exception>
    public static long CheckReadableFile(string command, string option, string path)
    {
        CheckFile(command, option, path);
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return f.Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{command}: {option} {path}: cannot be read ({e.Message})", e);
        }
    }

    private static void CheckFile(string command, string option, string path)
    {
        if (Directory.Exists(path))
            throw new IOException($"{command}: {option} {path}: is a directory, not a file");
        if (!File.Exists(path))
            throw new IOException($"{command}: {option} {path}: no such file");
    }

    /// <summary>A non-negative number, decimal or 0x hex.</summary>
    public static long Number(string command, string s, string name)
    {
        bool ok = s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? long.TryParse(s.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out long v)
            : long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out v);
        if (!ok || v < 0)
        {
            bool digits = s.Length > 0 && (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                ? s.Length > 2 && s.AsSpan(2).IndexOfAnyExcept("0123456789abcdefABCDEF") < 0
                : s.AsSpan().IndexOfAnyExcept("0123456789") < 0);
            throw new UsageException(digits
                ? $"{command}: {name} {s} is too large"
                : $"{command}: {name} expects a number (decimal or 0x hex), got '{s}'");
        }
        return v;
    }
}
