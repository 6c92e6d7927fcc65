// `hyve run` on a real terminal (a tmux pane, a pseudo-terminal) and from a pipe, as a user
// meets it: keys reach a Linux shell one at a time, Ctrl-C goes to the guest, the escape keys
// work, the terminal's settings come back after Ctrl-A x and after SIGTERM, and input piped in
// before the guest's serial driver is ready is not lost.
using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using Hyve.TestSupport;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.Cli.Tests;

public sealed class TerminalTests(ITestOutputHelper log) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hyve-tty-").FullName;
    // The tmux server's socket, in this test's folder (so nothing is left behind in tmux's own).
    private string Socket => Path.Combine(_dir, "tmux.sock");

    public void Dispose()
    {
        Tmux.Run(Socket, "kill-server");
        Directory.Delete(_dir, true);
    }

    private static string Hyve => Path.Combine(AppContext.BaseDirectory, "hyve.dll");

    // busybox's shell with a controlling terminal (so Ctrl-C interrupts what it runs).
    private const string ShellInit = "#!/bin/busybox sh\n/bin/busybox --install -s /bin\nexport PATH=/bin\n"
        + "mount -t devtmpfs dev /dev\nexport PS1='hyve-shell# '\nexec setsid cttyhack sh\n";

    private string Initramfs()
    {
        string path = Path.Combine(_dir, "initrd.cpio");
        File.WriteAllBytes(path, DebianBusybox.Initramfs(ShellInit));
        return path;
    }

    // Runs command in a tmux pane of its own, recording the terminal's settings before and
    // after it and its exit status, in files of this test's folder.
    private void StartInPane(string command)
    {
        string script = Path.Combine(_dir, "pane.sh");
        File.WriteAllText(script, $"stty -g > '{_dir}/before'\n{command}\necho $? > '{_dir}/status.tmp'\n"
            + $"stty -g > '{_dir}/after'\nmv '{_dir}/status.tmp' '{_dir}/status'\nsleep 600\n");
        Tmux.Run(Socket, "new-session", "-d", "-s", "hyve", "-x", "160", "-y", "50", $"bash '{script}'");
    }

    private string Pane() => Tmux.Run(Socket, "capture-pane", "-p", "-t", "hyve", "-S", "-200");

    // Waits until the pane shows text (or fails, with the pane in the log).
    private void WaitFor(string text, int seconds = 60)
    {
        var limit = Stopwatch.StartNew();
        while (!Pane().Contains(text, StringComparison.Ordinal))
        {
            if (limit.Elapsed.TotalSeconds > seconds)
            {
                log.WriteLine(Pane());
                Assert.Fail($"the terminal did not show '{text}' within {seconds} s");
            }
            Thread.Sleep(200);
        }
    }

    private string WaitForStatus(int seconds = 60)
    {
        string file = Path.Combine(_dir, "status");
        var limit = Stopwatch.StartNew();
        while (!File.Exists(file))
        {
            if (limit.Elapsed.TotalSeconds > seconds)
            {
                log.WriteLine(Pane());
                Assert.Fail($"hyve did not end within {seconds} s");
            }
            Thread.Sleep(200);
        }
        return File.ReadAllText(file).Trim();
    }

    // Waits until the pane's terminal is no longer as the script found it: hyve has set it raw.
    private void WaitUntilRaw(int seconds = 60)
    {
        string tty = Tmux.Run(Socket, "display-message", "-p", "-t", "hyve", "#{pane_tty}").Trim();
        string before = Path.Combine(_dir, "before");
        var limit = Stopwatch.StartNew();
        while (!File.Exists(before) || HostTool.Sh($"stty -F '{tty}' -g").Trim() == File.ReadAllText(before).Trim())
        {
            Assert.True(limit.Elapsed.TotalSeconds < seconds, $"hyve did not put {tty} in raw mode within {seconds} s");
            Thread.Sleep(100);
        }
    }

    private void AssertSettingsRestored()
    {
        string before = File.ReadAllText(Path.Combine(_dir, "before")).Trim();
        Assert.NotEmpty(before);
        Assert.Equal(before, File.ReadAllText(Path.Combine(_dir, "after")).Trim());
    }

    [Fact]
    public void KeysReachALinuxShellOneAtATimeAndCtrlAXQuits()
    {
        Assert.True(Tmux.Path != null, Tmux.Why);
        Assert.True(DebianKernel.Path != null, DebianKernel.Why);
        Assert.True(DebianBusybox.Path != null, DebianBusybox.Why);
        StartInPane($"dotnet '{Hyve}' run --kernel '{DebianKernel.Path}' --initrd '{Initramfs()}' "
            + "--cmdline 'console=ttyS0 rdinit=/init quiet' --timeout 600");
        WaitFor("hyve-shell#", 400); // (a pane's capture drops trailing blanks)

        // A loop in the guest that answers each key as it arrives: with a line-buffered host
        // terminal nothing would come back before Enter.
        Tmux.Run(Socket, "send-keys", "-t", "hyve", "-l", "while read -n 1 k; do echo \"got:$k\"; done");
        Tmux.Run(Socket, "send-keys", "-t", "hyve", "Enter");
        foreach (char c in "hyve")
        {
            Tmux.Run(Socket, "send-keys", "-t", "hyve", "-l", c.ToString());
            WaitFor($"got:{c}");
        }
        // Ctrl-C is the guest's: it interrupts the loop, and the shell prompts again.
        Tmux.Run(Socket, "send-keys", "-t", "hyve", "C-c");
        Tmux.Run(Socket, "send-keys", "-t", "hyve", "-l", "echo after-interrupt");
        Tmux.Run(Socket, "send-keys", "-t", "hyve", "Enter");
        WaitFor("\nafter-interrupt");
        // Ctrl-A h lists the escape keys; Ctrl-A x ends the run as a power-off.
        Tmux.Run(Socket, "send-keys", "-t", "hyve", "C-a", "h");
        WaitFor("C-a x    exit Hyve");
        Tmux.Run(Socket, "send-keys", "-t", "hyve", "C-a", "x");
        Assert.Equal("0", WaitForStatus());
        AssertSettingsRestored();
        log.WriteLine(Pane());
    }

    [Fact]
    public void SigtermEndsTheRunAndRestoresTheTerminal()
    {
        Assert.True(Tmux.Path != null, Tmux.Why);
        // jmp $ at 1 MiB: a guest that runs until it is stopped.
        string spin = Path.Combine(_dir, "spin.bin");
        File.WriteAllBytes(spin, [0xEB, 0xFE]);
        // In the foreground, so the pane's terminal is its standard input (a background job's
        // would be /dev/null, and there would be nothing to restore).
        StartInPane($"dotnet '{Hyve}' run --kernel '{spin}' --load 0x100000 --timeout 300");
        WaitUntilRaw();
        // The run's command line names this test's own folder: no other process matches.
        HostTool.Sh($"pkill -TERM -f 'hyve.dll run --kernel {spin}'");
        Assert.Equal("143", WaitForStatus());
        WaitFor("hyve: stopped by signal 15");
        AssertSettingsRestored();
    }

    [Fact]
    public async System.Threading.Tasks.Task InputPipedBeforeTheGuestListensIsNotLost()
    {
        // The whole session is written into the pipe and closed before Linux has even started:
        // the bytes wait for the guest's serial driver, none is thrown away by its set-up.
        Assert.True(DebianKernel.Path != null, DebianKernel.Why);
        Assert.True(DebianBusybox.Path != null, DebianBusybox.Why);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in new[] { Hyve, "run", "--kernel", DebianKernel.Path!, "--initrd", Initramfs(),
            "--cmdline", "console=ttyS0 rdinit=/init quiet", "--timeout", "600" })
            psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        p.StandardInput.Write("echo piped: $((6 * 7))\npoweroff -f\n");
        p.StandardInput.Close();
        var err = p.StandardError.ReadToEndAsync();
        string output = await p.StandardOutput.ReadToEndAsync();
        await p.WaitForExitAsync();
        log.WriteLine(output);
        log.WriteLine(await err);
        Assert.Contains("piped: 42", output, StringComparison.Ordinal);
        Assert.Contains("reboot: Power down", output, StringComparison.Ordinal);
        Assert.Empty(KernelLog.Errors(output));
        Assert.Equal(0, p.ExitCode);
    }
}

/// <summary>tmux, for tests that need a real terminal, each on a server of its own.</summary>
internal static class Tmux
{
    // A terminal type for the panes: CI's environment may have none.
    private static readonly HostTool Tool = new("tmux", "tmux", ("TERM", "xterm-256color"));

    public static string? Path => Tool.Path;

    public static string Why => Tool.Why;

    /// <summary>Runs tmux on the server whose socket is the file <paramref name="socket"/>; its standard output.</summary>
    public static string Run(string socket, params string[] args) => Tool.Run(["-S", socket, .. args]);
}
