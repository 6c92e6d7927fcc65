// Runs a test guest and collects what it reported: on Hyve (the software CPU, in process) and
// on QEMU (the reference, as a child process with the suite's fixed command line).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using Hyve.Boot;
using Hyve.Devices;
using Hyve.SoftCpu;
using Hyve.Vmm.Vmx;

namespace Hyve.GuestTests;

/// <summary>One run's console output and exit status.</summary>
public sealed partial record GuestRun(string Output, int Status)
{
    /// <summary>The machine's exit and verification counts (Hyve runs only).</summary>
    public string Statistics { get; init; } = "";

    /// <summary>Instructions each vCPU retired (Hyve runs only).</summary>
    public long[] Retired { get; init; } = [];

    /// <summary>The TAP-style result lines ("ok N - name" / "not ok N - name"), without their
    /// directives (a check one machine skips for lack of a CPU feature still lines up).</summary>
    public IReadOnlyList<string> Results =>
        [.. Lines.Where(l => !l.Contains(QemuDeviation, StringComparison.Ordinal)).Select(WithoutDirective)];

    /// <summary>Result lines of checks QEMU's TCG is known to get wrong (docs/guests.md): Hyve
    /// must pass them; QEMU's answer is not compared.</summary>
    public IReadOnlyList<string> Deviations => [.. Lines.Where(l => l.Contains(QemuDeviation, StringComparison.Ordinal))];

    private const string QemuDeviation = "# qemu-deviation";

    /// <summary>The result lines with their directives ("# SKIP why"), QEMU deviations left out.</summary>
    public IReadOnlyList<string> ResultsWithDirectives =>
        [.. Lines.Where(l => !l.Contains(QemuDeviation, StringComparison.Ordinal))];

    /// <summary>Whether the run was stopped by its time limit (exit status 124).</summary>
    public bool TimedOut => Status == 124;

    /// <summary>Whether a result line is a skip: the check did not run on that machine.</summary>
    public static bool IsSkip(string line) => line.Contains(" # SKIP", StringComparison.OrdinalIgnoreCase);

    private IEnumerable<string> Lines => Output.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => ResultLine().IsMatch(l));

    private static string WithoutDirective(string line)
    {
        int at = line.IndexOf(" # ", StringComparison.Ordinal);
        return at < 0 ? line : line[..at];
    }

    [GeneratedRegex(@"^(not )?ok \d+ - ")]
    private static partial Regex ResultLine();

    /// <summary>The repository's guests/ folder.</summary>
    public static string GuestsDir => Path.Combine(Hyve.TestSupport.TestEnvironment.RepositoryRoot, "guests");

    /// <summary>The built image of guest <paramref name="name"/>.</summary>
    public static string Image(string name) => Path.Combine(GuestsDir, "build", name + ".elf");

    /// <summary>The test guests: every C file in guests/ but the demo.</summary>
    public static IEnumerable<string> TestGuests() =>
        Directory.GetFiles(GuestsDir, "*.c").Select(Path.GetFileNameWithoutExtension).Where(n => n != "demo").Order()!;

    /// <summary>Runs <paramref name="image"/> on Hyve's software CPU; with <paramref name="until"/>,
    /// the run ends (as a power-off) once the console has printed it.</summary>
    public static GuestRun OnHyve(string image, int cpus = 4, int seconds = 60, string? disk = null, string? until = null, string cmdline = "",
        byte[]? initrd = null, IReadOnlyList<(string After, string Type)>? dialog = null, Hyve.Vmm.CpuLevel level = Hyve.Vmm.CpuLevel.V2) =>
        Run(image, cpus, seconds, disk, until, cmdline, initrd, dialog, new MachineOptions
        {
            Cpus = cpus,
            CpuLevel = level,
            Console = Stream.Null,
            Backend = (memory, clock) => new VmxBackend(memory, _ => new SoftProcessor(memory, clock), "soft"),
        });

    /// <summary>Runs <paramref name="image"/> on KVM (each vCPU on a host thread, host time); with
    /// <paramref name="verify"/>, every device-memory instruction KVM completes is checked against
    /// the vmm's emulator.</summary>
    public static GuestRun OnKvm(string image, int cpus = 4, int seconds = 120, bool verify = false) =>
        Run(image, cpus, seconds, null, null, "", null, null, new MachineOptions
        {
            Cpus = cpus,
            Console = Stream.Null,
            Backend = (memory, _) => new Hyve.Kvm.KvmBackend(memory),
            OneThread = false,
            HostTime = true,
            VerifyEmulation = verify,
        });

    private static GuestRun Run(string image, int cpus, int seconds, string? disk, string? until, string cmdline, byte[]? initrd,
        IReadOnlyList<(string After, string Type)>? dialog, MachineOptions template)
    {
        using var console = new WatchedStream();
        var options = new MachineOptions
        {
            Cpus = cpus,
            MemoryBytes = 256UL << 20,
            Console = console,
            Disk = disk,
            Backend = template.Backend,
            OneThread = template.OneThread,
            HostTime = template.HostTime,
            VerifyEmulation = template.VerifyEmulation,
            CpuLevel = template.CpuLevel,
        };
        using var machine = new Machine(options);
        byte[] file = File.ReadAllBytes(image);
        machine.Load(LinuxBoot.IsBzImage(file) ? LinuxBoot.Load(file, machine.Map, cmdline, initrd, cpus)
            : LinuxBoot.IsVmlinux(file) ? LinuxBoot.LoadVmlinux(file, machine.Map, cmdline, initrd, cpus)
            : Multiboot.Load(file, machine.Map, cmdline));
        if (until != null)
            console.Watch(until, () => machine.Stop(MachineStop.PowerOff));
        using var typed = new System.Collections.Concurrent.BlockingCollection<string>();
        if (dialog != null)
            Converse(console, dialog, 0, typed);
        // The machine holds typed bytes until the guest's driver listens (up to 64 KiB, then
        // Type says to wait): a thread types each answer.
        var typist = new System.Threading.Thread(() =>
        {
            foreach (string text in typed.GetConsumingEnumerable())
            {
                foreach (byte b in Encoding.ASCII.GetBytes(text))
                {
                    while (!machine.Type(b))
                        System.Threading.Thread.Sleep(1);
                }
            }
        })
        { IsBackground = true };
        typist.Start();
        MachineResult r = machine.Run(TimeSpan.FromSeconds(seconds));
        typed.CompleteAdding();
        typist.Join();
        string output = Encoding.UTF8.GetString(console.ToArray());
        if (r.Message != null)
            output += $"\n[hyve: {r.Stop}: {r.Message}]\n";
        return new GuestRun(output, r.Status) { Retired = [.. machine.Vm.Vcpus.Select(v => v.Cpu.Retired)], Statistics = machine.Statistics() };
    }

    // Each step waits for its prompt, then types its line and waits for the next prompt.
    private static void Converse(WatchedStream console, IReadOnlyList<(string After, string Type)> dialog, int step,
        System.Collections.Concurrent.BlockingCollection<string> typed)
    {
        if (step < dialog.Count)
        {
            console.Watch(dialog[step].After, () =>
            {
                typed.Add(dialog[step].Type);
                Converse(console, dialog, step + 1, typed);
            });
        }
    }

    /// <summary>Runs <paramref name="image"/> on QEMU with TCG, as the guest suite's reference;
    /// with <paramref name="accel"/> "kvm", on this host's KVM instead (a triple fault then ends
    /// the run rather than resetting).</summary>
    public static GuestRun OnQemu(string image, int seconds = 60, string accel = "tcg")
    {
        ProcessStartInfo psi = Qemu.StartInfo([.. (accel != "tcg" ? ["-no-reboot"] : Array.Empty<string>()), "-accel", accel,
            "-nodefaults", "-display", "none", "-serial", "stdio", "-m", "256", "-smp", "4",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-device", "pc-testdev", "-kernel", image]);
        using Process p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(seconds)))
        {
            p.Kill(true);
            p.WaitForExit();
            return new GuestRun(stdout.Result + "\n[qemu: timed out]\n", 124);
        }
        string err = stderr.Result;
        return new GuestRun(stdout.Result + (err.Length > 0 ? $"\n[qemu stderr: {err.Trim()}]\n" : ""), p.ExitCode);
    }
}

/// <summary>A console that can end the run when a given text appears.</summary>
internal sealed class WatchedStream : MemoryStream
{
    private string? _marker;
    private Action? _then;
    private int _scanned;

    /// <summary>Calls <paramref name="then"/> (on the writing thread) once the output written from
    /// now on contains <paramref name="marker"/>.</summary>
    public void Watch(string marker, Action then)
    {
        _scanned = (int)Length;
        _then = then;
        _marker = marker;
    }

    public override void WriteByte(byte value)
    {
        base.WriteByte(value);
        if (_marker == null || value != (byte)_marker[^1])
            return;
        // Only the text since the last check, and the marker's length before it.
        string recent = Encoding.UTF8.GetString(GetBuffer(), _scanned, (int)Length - _scanned);
        if (recent.Contains(_marker, StringComparison.Ordinal))
        {
            _marker = null;
            _then?.Invoke();
            return;
        }
        _scanned = Math.Max(_scanned, (int)Length - _marker.Length);
    }
}

/// <summary>qemu-system-x86_64, installed from Debian's package when it is absent and this
/// process may (root with apt-get).</summary>
public static class Qemu
{
    private static readonly Hyve.TestSupport.HostTool Tool = new("qemu-system-x86_64", "qemu-system-x86");

    /// <summary>The emulator's path, or null.</summary>
    public static string? Path => Tool.Path;

    /// <summary>Why it is missing.</summary>
    public static string Why => Tool.Why;

    /// <summary>A run of the emulator with <paramref name="args"/>, its standard streams redirected.</summary>
    public static ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(Path!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        return psi;
    }
}
