// The guest suite: every test guest passes on Hyve's software CPU, and QEMU reports the same
// result lines and exit status for the same binary. Each run's output goes to the test log.
using System.Collections.Generic;
using System.Linq;
using Hyve.TestSupport;
using Xunit;
using Xunit.Abstractions;

namespace Hyve.GuestTests;

public sealed class GuestSuiteTests(ITestOutputHelper log)
{
    public static TheoryData<string> Guests() => [.. GuestRun.TestGuests()];

    // isa-debug-exit with code 0: every check passed.
    private const int AllPassed = 1;

    [Theory]
    [MemberData(nameof(Guests))]
    public void PassesOnTheSoftwareCpu(string guest)
    {
        GuestRun hyve = GuestRun.OnHyve(GuestRun.Image(guest));
        log.WriteLine($"--- {guest} on hyve (soft), exit status {hyve.Status}");
        log.WriteLine(hyve.Output);
        AssertPassed(hyve);
    }

    // Every check passed, QEMU deviations included, and the guest said so through isa-debug-exit.
    private static void AssertPassed(GuestRun run)
    {
        Assert.NotEmpty(run.Results);
        Assert.DoesNotContain(run.Results, l => l.StartsWith("not ok", System.StringComparison.Ordinal));
        Assert.DoesNotContain(run.Deviations, l => l.StartsWith("not ok", System.StringComparison.Ordinal));
        Assert.Equal(AllPassed, run.Status);
    }

    // The guests QEMU's pc machine can be a reference for: virtio checks Hyve's virtio-mmio slots,
    // which that machine does not have (every one of its checks is a skip there), so it is
    // compared with the software CPU's run on KVM and checked against its disk file below.
    public static TheoryData<string> QemuReferenced() => [.. GuestRun.TestGuests().Where(g => g != "virtio")];

    [Theory]
    [MemberData(nameof(QemuReferenced))]
    public void MatchesQemu(string guest)
    {
        Assert.True(Qemu.Path != null, Qemu.Why);
        string image = GuestRun.Image(guest);
        GuestRun qemu = GuestRun.OnQemu(image);
        GuestRun hyve = GuestRun.OnHyve(image);
        log.WriteLine($"--- {guest} on qemu (tcg), exit status {qemu.Status}");
        log.WriteLine(qemu.Output);
        AssertAgrees(GuestComparison.Of(qemu, hyve, "qemu", "hyve"));
        Assert.Equal(qemu.Status, hyve.Status);
    }

    // The comparison's counts go to the log; it must hold (something compared, nothing differing,
    // no time-out).
    private void AssertAgrees(GuestComparison c)
    {
        log.WriteLine($"# {c.Summary}");
        Assert.True(c.Holds, c.Summary);
    }

    // The guests that pass on this host's KVM. The others meet limits of the host's KVM itself
    // (docs/guests.md) and are compared with QEMU on the same KVM below.
    public static TheoryData<string> KvmGuests() => ["mmio", "portio", "smp", "virtio"];

    [KvmTheory]
    [MemberData(nameof(KvmGuests))]
    public void PassesOnKvm(string guest)
    {
        GuestRun kvm = GuestRun.OnKvm(GuestRun.Image(guest));
        log.WriteLine($"--- {guest} on hyve (kvm), exit status {kvm.Status}");
        log.WriteLine(kvm.Output);
        log.WriteLine(kvm.Statistics);
        AssertPassed(kvm);
        // The same lines as the reference: QEMU, or for virtio (which QEMU's pc machine lacks) the
        // software CPU.
        Assert.True(Qemu.Path != null, Qemu.Why);
        AssertAgrees(guest == "virtio"
            ? GuestComparison.Of(GuestRun.OnHyve(GuestRun.Image(guest)), kvm, "hyve (soft)", "hyve (kvm)")
            : GuestComparison.Of(GuestRun.OnQemu(GuestRun.Image(guest)), kvm, "qemu", "hyve (kvm)"));
    }

    // Guests this host's KVM (kvm_pvm, an emulating nested KVM) cannot run under any VMM:
    // QEMU on the same KVM, with its in-kernel interrupt controllers, stops at the same check.
    public static TheoryData<string> KvmHostLimited() => ["cpu", "exceptions", "interrupts", "modes"];

    [KvmTheory]
    [MemberData(nameof(KvmHostLimited))]
    public void OnKvmMatchesQemuOnTheSameKvm(string guest)
    {
        // Where QEMU on this KVM passes the guest, Hyve must pass it too; where it does not, Hyve
        // must report the same result lines (it stopped where the reference did, for the host's
        // reason, not for one of its own). Which short interrupt windows this KVM honours depends
        // on the host's timing, so a pair of runs that differ is run again, up to three times. A
        // pair with nothing to compare, or a run stopped by its time limit, is not a match: with
        // the reference stopped by its time limit the test can at best be skipped.
        Assert.True(Qemu.Path != null, Qemu.Why);
        string image = GuestRun.Image(guest);
        for (int attempt = 1; ; attempt++)
        {
            GuestRun reference = GuestRun.OnQemu(image, seconds: 20, accel: "kvm");
            GuestRun kvm = GuestRun.OnKvm(image, seconds: 20);
            log.WriteLine($"--- {guest} on qemu (kvm), attempt {attempt}, exit status {reference.Status}");
            log.WriteLine(reference.Output);
            log.WriteLine($"--- {guest} on hyve (kvm), attempt {attempt}, exit status {kvm.Status}");
            log.WriteLine(kvm.Output);
            log.WriteLine(kvm.Statistics);
            GuestComparison c = GuestComparison.Of(reference, kvm, "qemu (kvm)", "hyve (kvm)");
            bool hostRunsIt = reference.Status == AllPassed && c.Holds
                && !reference.Results.Any(l => l.StartsWith("not ok", System.StringComparison.Ordinal));
            if (hostRunsIt)
            {
                AssertPassed(kvm);
                AssertAgrees(c);
                return;
            }
            log.WriteLine($"# the host's KVM cannot run {guest}: QEMU on it fails too (status {reference.Status})");
            if (c.LinesAgree || attempt == 3)
            {
                // Every line either side printed must agree. Where QEMU on this KVM hangs at the
                // host's limit there is no complete reference: that is a skip, never a pass.
                log.WriteLine($"# {c.Summary}");
                Assert.True(c.LinesAgree, c.Summary);
                Skip.If(reference.TimedOut, $"QEMU on this host's KVM stops at its time limit after {reference.Results.Count} " +
                    $"checks of {guest} ({c.Matched} matched Hyve's): no complete reference here");
                AssertAgrees(c);
                return;
            }
        }
    }

    [KvmTheory]
    [InlineData("mmio")]
    [InlineData("portio")]
    public void KvmEmulationMatchesTheVmms(string guest)
    {
        // Every device-memory instruction KVM completes is emulated again by the vmm and compared:
        // a mismatch stops the guest with both results (exit status 2).
        // About 700,000 exits through nested KVM: 75-95 s on a quiet machine, so the limit has room.
        GuestRun kvm = GuestRun.OnKvm(GuestRun.Image(guest), cpus: 1, seconds: 300, verify: true);
        log.WriteLine(kvm.Output);
        log.WriteLine(kvm.Statistics);
        Assert.DoesNotContain("emulation mismatch", kvm.Output, System.StringComparison.Ordinal);
        Assert.Equal(AllPassed, kvm.Status);
        var verified = System.Text.RegularExpressions.Regex.Match(kvm.Statistics, @"verified=(\d+)");
        Assert.True(verified.Success && long.Parse(verified.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) > 0,
            "no instruction was verified");
    }

    [Fact]
    public void DebianLinuxBootsToTheRootMountOnTheSoftwareCpu()
    {
        // Debian's own kernel through the 64-bit boot protocol: it decompresses itself, reads the
        // e820 map and the command line, brings its serial console up, finds the PCI host bridge,
        // runs its initcalls and, with no root file system given, stops where every kernel does.
        Assert.True(Hyve.TestSupport.DebianKernel.Path != null, Hyve.TestSupport.DebianKernel.Why);
        GuestRun linux = GuestRun.OnHyve(Hyve.TestSupport.DebianKernel.Path!, cpus: 1, seconds: 300,
            until: "end Kernel panic - not syncing: VFS: Unable to mount root fs", cmdline: "console=ttyS0 earlyprintk=serial,ttyS0 nokaslr");
        log.WriteLine(linux.Output);
        Shows(linux.Output,
            "Linux version 6.",
            "Command line: console=ttyS0 earlyprintk=serial,ttyS0 nokaslr",
            "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
            "printk: console [ttyS0] enabled",
            "pci 0000:00:00.0: [8086:1237] type 00 class 0x060000",
            "ACPI: Using ACPI (MADT) for SMP configuration information",
            "APIC: Switch to symmetric I/O mode setup",
            "clocksource: Switched to clocksource tsc",
            "Kernel panic - not syncing: VFS: Unable to mount root fs");
        CleanKernelLog(linux.Output, expectedEnd: "Kernel panic - not syncing: VFS");
        Assert.Equal(0, linux.Status); // stopped by the test once the console was up
    }

    [Fact]
    public void DebianLinuxRunsBusyboxInUserSpaceAndPowersOff()
    {
        // Debian's kernel on four vCPUs (it wakes the APs with INIT-SIPI-SIPI and runs them) with an
        // initramfs around Debian's static busybox: process 1 is a shell script; user space runs
        // glibc's startup, its SSE2 string functions and awk's floating point, hashes the busybox
        // binary (compared with the host's hash of the same file), and powers the machine off
        // through ACPI (S5). CPUID offers x86-64-v2: the kernel lists SSE4.2, and a static probe
        // (guests/linux/sse4.c) runs SSE4.1 and SSE4.2 instructions in user space, its lines
        // equal to the host CPU's run of the same program. CPUID offers XSAVE too: the kernel
        // switches every task's x87 and SSE state with XSAVE and XRSTOR in the standard format.
        const string Init = """
            #!/bin/busybox sh
            /bin/busybox mount -t proc proc /proc
            /bin/busybox echo "user space: $(/bin/busybox uname -sm)"
            /bin/busybox echo "offered: $(/bin/busybox grep -o -m 1 -w sse4_2 /proc/cpuinfo)"
            /bin/sse4
            /bin/busybox echo "arithmetic: $((6 * 7))"
            /bin/busybox awk 'BEGIN { printf "awk: %.4f %d\n", 22 / 7, 1764 / 42 }'
            /bin/busybox echo "cpus: $(/bin/busybox grep -c ^processor /proc/cpuinfo)"
            /bin/busybox sha256sum /bin/busybox
            /bin/busybox poweroff -f

            """;
        var (linux, expected) = LinuxWithProbe("sse4", Init, cpus: 4, Hyve.Vmm.CpuLevel.V2);
        Assert.Equal(5, expected.Length);
        string hash = System.Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(
            System.IO.File.ReadAllBytes(Hyve.TestSupport.DebianBusybox.Path!)));
        Shows(linux.Output,
            "x86/fpu: Enabled xstate features 0x3, context size is 576 bytes, using 'standard' format.",
            "ACPI: PM: (supports S0 S5)",
            "Run /init as init process",
            "user space: Linux x86_64",
            "offered: sse4_2",
            "arithmetic: 42",
            "awk: 3.1429 42",
            "smp: Brought up 1 node, 4 CPUs",
            "cpus: 4",
            $"{hash}  /bin/busybox",
            "reboot: Power down");
        Shows(linux.Output, expected);
        CleanKernelLog(linux.Output);
        Assert.Equal(0, linux.Status); // powered off by the guest
    }

    // Debian's kernel with a busybox initramfs whose process 1 is init and which holds the static
    // probe guests/build/linux/NAME as /bin/NAME: the run on Hyve (logged), and the probe's lines
    // on the host CPU.
    private (GuestRun Linux, string[] Host) LinuxWithProbe(string name, string init, int cpus, Hyve.Vmm.CpuLevel level)
    {
        Assert.True(Hyve.TestSupport.DebianKernel.Path != null, Hyve.TestSupport.DebianKernel.Why);
        Assert.True(Hyve.TestSupport.DebianBusybox.Path != null, Hyve.TestSupport.DebianBusybox.Why);
        string probe = System.IO.Path.Combine(GuestRun.GuestsDir, "build", "linux", name);
        string[] host = Hyve.TestSupport.HostTool.Sh(probe).Trim().Split('\n');
        byte[] initrd = Hyve.TestSupport.DebianBusybox.Initramfs(init.Replace("\r", "", System.StringComparison.Ordinal),
            ($"bin/{name}", System.IO.File.ReadAllBytes(probe)));
        GuestRun linux = GuestRun.OnHyve(Hyve.TestSupport.DebianKernel.Path!, cpus: cpus, seconds: 300,
            cmdline: "console=ttyS0 rdinit=/init", initrd: initrd, level: level);
        log.WriteLine(linux.Output);
        return (linux, host);
    }

    [Fact]
    public void DebianLinuxRunsX86_64V3UserSpace()
    {
        // With CPUID at x86-64-v3 the kernel enables AVX's XSAVE state (832-byte contexts) and
        // glibc's resolvers pick the AVX2 string functions (guests/linux/avx2.c follows memchr's
        // and strlen's PLT entries to them); the probe's AVX2, FMA, F16C, BMI and gather checksums
        // and its string-function checksum equal the host CPU's run of the same program.
        const string Init = """
            #!/bin/busybox sh
            /bin/busybox mount -t proc proc /proc
            /bin/busybox echo "offered: $(/bin/busybox grep -o -m 1 -w avx2 /proc/cpuinfo) $(/bin/busybox grep -o -m 1 -w fma /proc/cpuinfo) $(/bin/busybox grep -o -m 1 -w bmi2 /proc/cpuinfo)"
            /bin/avx2
            /bin/busybox poweroff -f

            """;
        var (linux, host) = LinuxWithProbe("avx2", Init, cpus: 2, Hyve.Vmm.CpuLevel.V3);
        Assert.Equal(8, host.Length);
        Shows(linux.Output,
            "x86/fpu: Supporting XSAVE feature 0x004: 'AVX registers'",
            "x86/fpu: Enabled xstate features 0x7, context size is 832 bytes, using 'standard' format.",
            "offered: avx2 fma bmi2",
            "memchr: avx2",
            "strlen: avx2",
            "reboot: Power down");
        Shows(linux.Output, host[2..]); // the checksums (the host's own choice lines name its EVEX forms)
        CleanKernelLog(linux.Output);
        Assert.Equal(0, linux.Status);
    }

    [Fact]
    public void DebianLinuxGivesAShellPromptOnTheConsole()
    {
        // Process 1 is busybox's interactive shell on /dev/console (COM1): the test waits for its
        // prompt, types commands as a user would, and ends the session with poweroff.
        Assert.True(Hyve.TestSupport.DebianKernel.Path != null, Hyve.TestSupport.DebianKernel.Why);
        Assert.True(Hyve.TestSupport.DebianBusybox.Path != null, Hyve.TestSupport.DebianBusybox.Why);
        const string Init = "#!/bin/busybox sh\nexport PS1='hyve login-free prompt # '\nexec /bin/busybox sh\n";
        const string Prompt = "prompt # ";
        GuestRun linux = GuestRun.OnHyve(Hyve.TestSupport.DebianKernel.Path!, cpus: 1, seconds: 300,
            cmdline: "console=ttyS0 rdinit=/init", initrd: Hyve.TestSupport.DebianBusybox.Initramfs(Init),
            dialog: [(Prompt, "echo typed: $((6 * 7))\n"), (Prompt, "/bin/busybox uname -s\n"), (Prompt, "/bin/busybox poweroff -f\n")]);
        log.WriteLine(linux.Output);
        string output = linux.Output.ReplaceLineEndings("\n");
        Shows(output,
            "hyve login-free prompt # ",
            "echo typed: $((6 * 7))\ntyped: 42\n", // the echo, then the answer
            "uname -s\nLinux\n");
        Assert.Contains("reboot: Power down", linux.Output, System.StringComparison.Ordinal);
        CleanKernelLog(linux.Output);
        Assert.Equal(0, linux.Status);
    }

    // No kernel error line (an interrupt nobody cared for, a BUG, WARNING or call trace, ...) in
    // the log, up to the panic a test provokes on purpose.
    private static void CleanKernelLog(string output, string? expectedEnd = null) =>
        Assert.Empty(KernelLog.Errors(output, expectedEnd));

    // Every one of lines appears in output.
    private static void Shows(string output, params string[] lines)
    {
        foreach (string line in lines)
            Assert.Contains(line, output, System.StringComparison.Ordinal);
    }

    [Fact]
    public void TheSameKernelBootsAsAnUncompressedVmlinux()
    {
        Assert.True(Hyve.TestSupport.DebianKernel.Path != null, Hyve.TestSupport.DebianKernel.Why);
        string path = System.IO.Path.GetTempFileName();
        try
        {
            System.IO.File.WriteAllBytes(path, Hyve.TestSupport.DebianKernel.Vmlinux());
            GuestRun linux = GuestRun.OnHyve(path, cpus: 1, seconds: 120,
                until: "printk: console [ttyS0] enabled", cmdline: "console=ttyS0 earlyprintk=serial,ttyS0 nokaslr");
            log.WriteLine(linux.Output);
            Assert.Contains("Linux version 6.", linux.Output, System.StringComparison.Ordinal);
            Assert.Contains("printk: console [ttyS0] enabled", linux.Output, System.StringComparison.Ordinal);
            CleanKernelLog(linux.Output);
            Assert.Equal(0, linux.Status);
        }
        finally
        {
            System.IO.File.Delete(path);
        }
    }

    [Fact]
    public void RunsWithSeveralVcpusRepeatExactly()
    {
        // Round-robin quanta on one thread and virtual time: the same instructions every time.
        GuestRun first = GuestRun.OnHyve(GuestRun.Image("smp"));
        GuestRun second = GuestRun.OnHyve(GuestRun.Image("smp"));
        log.WriteLine($"instructions per vCPU: {string.Join(", ", first.Retired)}");
        Assert.Equal(AllPassed, first.Status);
        Assert.Equal(4, first.Retired.Length);
        Assert.All(first.Retired, n => Assert.True(n > 0));
        Assert.Equal(first.Retired, second.Retired);
        Assert.Equal(first.Output, second.Output);
    }

    [Fact]
    public void VirtioBlockWritesReachTheDiskFileExactly()
    {
        string disk = System.IO.Path.GetTempFileName();
        try
        {
            byte[] before = new byte[64 * 1024];
            System.Array.Fill(before, (byte)0xEE);
            System.IO.File.WriteAllBytes(disk, before);
            GuestRun hyve = GuestRun.OnHyve(GuestRun.Image("virtio"), cpus: 1, disk: disk);
            log.WriteLine(hyve.Output);
            Assert.Equal(AllPassed, hyve.Status);
            Assert.DoesNotContain("# SKIP", hyve.Output, System.StringComparison.Ordinal);
            Assert.Contains("# hello from the virtio console", hyve.Output, System.StringComparison.Ordinal);
            byte[] after = System.IO.File.ReadAllBytes(disk);
            byte[] expected = (byte[])before.Clone();
            for (int i = 0; i < 1024; i++)
                expected[1024 + i] = (byte)(i * 7 + 1); // sectors 2 and 3, as the guest wrote them
            Assert.Equal(expected, after);
        }
        finally
        {
            System.IO.File.Delete(disk);
        }
    }

    [Fact]
    public void DemoGuestPowersOffOnBothMachines()
    {
        string image = GuestRun.Image("demo");
        GuestRun hyve = GuestRun.OnHyve(image, cpus: 4);
        log.WriteLine(hyve.Output);
        Assert.Equal(0, hyve.Status);
        List<string> lines = [.. hyve.Output.Split('\n').Select(l => l.TrimEnd('\r'))];
        Assert.Contains("fw_cfg: signature \"QEMU\", 4 CPU(s), 256 MiB of RAM", lines);
        Assert.Contains("cpus: 4 of 4 online (APIC IDs 0 1 2 3)", lines);
        Assert.Contains("mmio: 16 writes and 16 reads of pc-testdev memory, sum 0x78787878 (ok)", lines);
        Assert.Equal("powering off", lines.Last(l => l.Length > 0));
        Assert.True(Qemu.Path != null, Qemu.Why);
        GuestRun qemu = GuestRun.OnQemu(image);
        Assert.Equal(0, qemu.Status);
        Assert.Contains("cpus: 4 of 4 online (APIC IDs 0 1 2 3)", qemu.Output);
        Assert.Contains("mmio: 16 writes and 16 reads of pc-testdev memory, sum 0x78787878 (ok)", qemu.Output);
    }
}
