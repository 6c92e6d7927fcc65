// Host programs the tests run (QEMU, tmux, apt-get, dpkg-deb): found on PATH, installed from
// Debian's package when missing and this process may (root with apt-get), and run with their
// output collected.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;

namespace Hyve.TestSupport;

/// <summary>A program on the host, found once.</summary>
public sealed class HostTool
{
    private readonly Lazy<(string? Path, string Why)> _found;
    private readonly (string Name, string Value)[] _environment;

    /// <summary>The program <paramref name="name"/>, from Debian's package <paramref name="package"/>,
    /// run with <paramref name="environment"/> added to this process's environment.</summary>
    public HostTool(string name, string package, params (string Name, string Value)[] environment)
    {
        _found = new(() => Find(name, package));
        _environment = environment;
    }

    /// <summary>The program's path, or null.</summary>
    public string? Path => _found.Value.Path;

    /// <summary>Why it is missing.</summary>
    public string Why => _found.Value.Why;

    /// <summary>Runs the program with <paramref name="args"/>; its standard output.</summary>
    public string Run(params string[] args) => Path == null ? "" : Capture(Path, args, null, _environment);

    /// <summary>Runs <paramref name="command"/> with /bin/sh in <paramref name="dir"/>; its standard output.</summary>
    public static string Sh(string command, string? dir = null) => Capture("/bin/sh", ["-c", command], dir, []);

    private static string Capture(string file, IEnumerable<string> args, string? dir, (string Name, string Value)[] environment)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        if (dir != null)
            psi.WorkingDirectory = dir;
        foreach ((string name, string value) in environment)
            psi.Environment[name] = value;
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        _ = err.Result;
        return output;
    }

    private static (string?, string) Find(string name, string package)
    {
        string? path = Which(name);
        if (path == null && Environment.UserName == "root" && File.Exists("/usr/bin/apt-get"))
        {
            Sh($"apt-get install -y -q --no-install-recommends {package} || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {package})");
            path = Which(name);
        }
        return path != null ? (path, "") : (null, $"{name} is not installed and could not be installed (apt-get install {package})");
    }

    private static string? Which(string name)
    {
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':'))
        {
            string p = System.IO.Path.Combine(dir, name);
            if (File.Exists(p))
                return p;
        }
        return null;
    }
}
