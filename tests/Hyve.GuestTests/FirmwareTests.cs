// Firmware on Hyve against the same firmware on QEMU's pc machine: Debian's SeaBIOS starts from
// the reset vector, finds the machine through fw_cfg, PCI and CMOS, prints its banner on COM1
// (sercon, as with QEMU's -nographic) and, with no disk, tries each boot device in QEMU's order
// until "No bootable device."; the console lines must be QEMU's, in order.
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
using Xunit;
using Xunit.Abstractions;

namespace Hyve.GuestTests;

public sealed partial class FirmwareTests(ITestOutputHelper log)
{
    private const string End = "No bootable device.";

    [Fact]
    public void SeaBiosReachesItsBootMenuAsOnQemu()
    {
        const string rom = "/usr/share/seabios/bios-256k.bin";
        Assert.True(File.Exists(rom), $"{rom} is missing: install Debian's seabios package");
        Assert.True(Qemu.Path != null, Qemu.Why);
        string hyve = OnHyve(File.ReadAllBytes(rom), out string debugLog);
        string qemu = OnQemu(rom);
        log.WriteLine($"hyve:\n{hyve}\nqemu:\n{qemu}\nhyve's SeaBIOS debug log:\n{debugLog}");
        List<string> h = Lines(hyve), q = Lines(qemu);
        Assert.Contains(q, l => l.StartsWith("SeaBIOS (version ", StringComparison.Ordinal));
        Assert.Equal(End, q[^1]); // the reference reached the end, or there is nothing to compare
        Assert.Equal(q, h);
    }

    // The console's lines without sercon's escape sequences, blank lines or carriage returns.
    private static List<string> Lines(string output) =>
        [.. Escape().Replace(output, "").Split('\n').Select(l => l.Trim('\r', ' ')).Where(l => l.Length > 0)];

    [GeneratedRegex(@"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")]
    private static partial Regex Escape();

    private static string OnHyve(byte[] rom, out string debugLog)
    {
        using var console = new WatchedStream();
        using var debug = new MemoryStream();
        var options = new MachineOptions
        {
            Cpus = 1,
            MemoryBytes = 256UL << 20,
            Console = console,
            FirmwareSize = rom.Length,
            DebugConsole = debug,
            Backend = (memory, clock) => new VmxBackend(memory, _ => new SoftProcessor(memory, clock), "soft"),
        };
        using var machine = new Machine(options);
        machine.Load(Firmware.Load(rom));
        console.Watch(End, () => machine.Stop(MachineStop.PowerOff));
        MachineResult r = machine.Run(TimeSpan.FromSeconds(120));
        debugLog = Encoding.ASCII.GetString(debug.ToArray());
        return Encoding.UTF8.GetString(console.ToArray()) + (r.Message != null ? $"\n[hyve: {r.Stop}: {r.Message}]\n" : "");
    }

    // QEMU's pc machine with the same firmware, no devices, the console on a serial line
    // (-nographic, which tells SeaBIOS through fw_cfg), stopped once it prints the end line.
    // QEMU's local APICs bring a paravirtual option ROM (kvmvapic.bin) that SeaBIOS runs as a
    // legacy option ROM, which puts "Hard Disk" first; Hyve has no such ROM, so it is off.
    private static string OnQemu(string rom)
    {
        var psi = new ProcessStartInfo(Qemu.Path!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { "-accel", "tcg", "-machine", "pc", "-nodefaults", "-nographic", "-serial", "stdio", "-m", "256",
            "-bios", rom, "-no-reboot", "-global", "apic-common.vapic=off" })
            psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        p.StandardInput.Close();
        var output = new StringBuilder();
        var done = new System.Threading.ManualResetEventSlim();
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data == null)
                return;
            lock (output)
                output.Append(e.Data).Append('\n');
            if (e.Data.Contains(End, StringComparison.Ordinal))
                done.Set();
        };
        p.BeginOutputReadLine();
        bool ended = done.Wait(TimeSpan.FromSeconds(120));
        p.Kill(true);
        p.WaitForExit();
        lock (output)
            return output + (ended ? "" : "\n[qemu: timed out]\n");
    }
}
