// `hyve run` as a user meets it: the built-in demo guest, a Multiboot guest's verdict through
// isa-debug-exit, the exit statuses for power-off, timeout, a guest halted for good and a triple
// fault, and one-line errors for bad options and files.
using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO;
using Xunit;

namespace Hyve.Cli.Tests;

public sealed class RunCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hyve-run-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>Runs the built hyve with <paramref name="args"/>, stdin closed: exit status, stdout, stderr.</summary>
    internal static (int Code, string Out, string Err) Hyve(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hyve.dll"));
        foreach (string a in args)
            psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        p.StandardInput.Close();
        var err = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, err.Result);
    }

    // A flat Multiboot kernel (header address fields) at 1 MiB whose code follows the header.
    private string Kernel(string name, params byte[] code)
    {
        const uint At = 0x10_0000, Flags = 1 << 16, Magic = 0x1BAD_B002;
        var f = new byte[32 + code.Length];
        uint[] h = [Magic, Flags, unchecked(0u - Magic - Flags), At, At, 0, 0, At + 32];
        for (int i = 0; i < h.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(4 * i), h[i]);
        code.CopyTo(f, 32);
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, f);
        return path;
    }

    private static string RepoFile(string relative) => Path.Combine(global::Hyve.TestSupport.TestEnvironment.RepositoryRoot, relative);

    [Fact]
    public void DefaultGuestReportsAndPowersOff()
    {
        var (code, stdout, stderr) = Hyve("run", "--stats", "--timeout", "120");
        Assert.Equal(0, code);
        Assert.Contains("hyve demo guest: hello from 64-bit mode", stdout);
        Assert.Contains("fw_cfg: signature \"QEMU\", 1 CPU(s), 256 MiB of RAM", stdout);
        Assert.Contains("powering off", stdout);
        Assert.Contains("vcpu0:", stderr);
        Assert.Contains("Mmio=", stderr);
    }

    [Fact]
    public void GuestVerdictComesBackThroughIsaDebugExit()
    {
        // mov al, 0x21; out 0xF4, al: QEMU's convention gives (0x21 << 1) | 1.
        var (code, _, _) = Hyve("run", "--kernel", Kernel("exit.bin", 0xB0, 0x21, 0xE6, 0xF4, 0xEB, 0xFE));
        Assert.Equal(0x43, code);
        var (portio, stdout, _) = Hyve("run", "--kernel", RepoFile("guests/build/portio.elf"), "--cpus", "2", "--memory", "64");
        Assert.Equal(1, portio);
        Assert.DoesNotContain("not ok", stdout);
    }

    [Fact]
    public void CpuFeaturesChoosesTheLevelCpuidReports()
    {
        // mov eax, 1; cpuid; shr ecx, 19; and ecx, 1; mov al, cl; out 0xF4, al: SSE4.1's bit is the verdict.
        string probe = Kernel("cpuid.bin", 0xB8, 1, 0, 0, 0, 0x0F, 0xA2, 0xC1, 0xE9, 19, 0x83, 0xE1, 1, 0x88, 0xC8, 0xE6, 0xF4, 0xEB, 0xFE);
        Assert.Equal(3, Hyve("run", "--kernel", probe).Item1);
        Assert.Equal(3, Hyve("run", "--kernel", probe, "--cpu-features", "v2").Item1);
        Assert.Equal(1, Hyve("run", "--kernel", probe, "--cpu-features", "v1").Item1);
        Assert.Equal(3, Hyve("run", "--kernel", probe, "--cpu-features", "v3").Item1);
        // mov eax, 7; xor ecx, ecx; cpuid; shr ebx, 5; and ebx, 1; mov al, bl; out 0xF4, al: AVX2's bit.
        string avx2 = Kernel("avx2.bin", 0xB8, 7, 0, 0, 0, 0x31, 0xC9, 0x0F, 0xA2, 0xC1, 0xEB, 5, 0x83, 0xE3, 1, 0x88, 0xD8, 0xE6, 0xF4, 0xEB, 0xFE);
        Assert.Equal(1, Hyve("run", "--kernel", avx2).Item1);
        Assert.Equal(3, Hyve("run", "--kernel", avx2, "--cpu-features", "v3").Item1);
    }

    [Fact]
    public void SeedRepeatsRdrand()
    {
        // rdrand eax; and al, 0x3F; out 0xF4, al: the verdict is RDRAND's low six bits.
        string probe = Kernel("rdrand.bin", 0x0F, 0xC7, 0xF0, 0x24, 0x3F, 0xE6, 0xF4, 0xEB, 0xFE);
        int first = Hyve("run", "--kernel", probe, "--seed", "7").Item1;
        Assert.Equal(first, Hyve("run", "--kernel", probe, "--seed", "7").Item1);
        Assert.NotEqual(first, Hyve("run", "--kernel", probe, "--seed", "8").Item1);
        Assert.Equal(1, first & 1); // an isa-debug-exit verdict, not an error
    }

    [Fact]
    public void FirmwareBootsSeaBiosToItsBootMenu()
    {
        Assert.True(File.Exists(RunCommandSeaBios), $"{RunCommandSeaBios} is missing: install Debian's seabios package");
        var (code, stdout, _) = Hyve("run", "--firmware", "bios", "--timeout", "10");
        Assert.Equal(124, code); // SeaBIOS waits at "No bootable device." until the time limit
        Assert.Contains("SeaBIOS (version ", stdout);
        Assert.Contains("No bootable device.", stdout);
    }

    private const string RunCommandSeaBios = "/usr/share/seabios/bios-256k.bin";

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async System.Threading.Tasks.Task AResetRequestRestartsAFirmwareMachineUnlessNoReboot(bool noReboot)
    {
        // OVMF's shell: RESET (a warm reset through the PM block's reset register) brings the
        // machine back through the firmware to the shell, where RESET -S powers it off; with
        // --no-reboot the first reset ends the run with status 0, as before.
        Assert.True(File.Exists("/usr/share/ovmf/OVMF.fd"), "install Debian's ovmf package");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "hyve.dll"));
        foreach (string a in (string[])["run", "--firmware", "uefi", "--timeout", "300", "--stats", .. noReboot ? ["--no-reboot"] : Array.Empty<string>()])
            psi.ArgumentList.Add(a);
        using Process p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        // Each time the countdown appears, ESC; each prompt then gets the next command.
        string[] commands = ["reset\r", "reset -s\r"];
        var output = new System.Text.StringBuilder();
        int countdowns = 0, prompts = 0;
        var buffer = new char[256];
        int n;
        while ((n = await p.StandardOutput.ReadAsync(buffer, 0, buffer.Length)) > 0)
        {
            output.Append(buffer, 0, n);
            string text = output.ToString();
            if (Count(text, "startup.nsh") > countdowns)
            {
                countdowns = Count(text, "startup.nsh");
                await p.StandardInput.WriteAsync("\x1b");
                await p.StandardInput.FlushAsync();
            }
            if (Count(text, "Shell> ") > prompts && prompts < commands.Length)
            {
                await p.StandardInput.WriteAsync(commands[prompts++]);
                await p.StandardInput.FlushAsync();
            }
        }
        await p.WaitForExitAsync();
        string stderr = await err;
        Assert.Equal(0, p.ExitCode);
        if (noReboot)
        {
            Assert.Equal(1, Count(output.ToString(), "UEFI Interactive Shell"));
            Assert.DoesNotContain("resets through the firmware", stderr, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal(2, Count(output.ToString(), "UEFI Interactive Shell"));
            Assert.Contains("resets through the firmware: 1", stderr, StringComparison.Ordinal);
        }

        static int Count(string text, string what)
        {
            int c = 0;
            for (int at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + what.Length, StringComparison.Ordinal))
                c++;
            return c;
        }
    }

    [Fact]
    public void DrivesGivenAsQemuNamesThemReachTheirControllers()
    {
        // --drive in QEMU's vocabulary: a read-only virtio disk and an IDE CD, each probed by
        // SeaBIOS in the first seconds (the statistics show the controllers' work).
        Assert.True(File.Exists(RunCommandSeaBios), "install Debian's seabios package");
        string disk = Path.Combine(_dir, "disk.img"), cd = Path.Combine(_dir, "cd.iso");
        File.WriteAllBytes(disk, new byte[1 << 20]);
        File.WriteAllBytes(cd, new byte[1 << 20]);
        var (status, _, err) = Hyve(["run", "--firmware", "bios", "--drive", $"{disk},if=virtio,readonly=on",
            "--drive", $"file={cd},media=cdrom", "--timeout", "4", "--stats"]);
        Assert.Equal(124, status);
        Assert.Matches(@"virtio-blk-pci at 00:03\.0 \(BAR4 0x[0-9a-f]+\): status 0xf, [1-9]\d* requests, 0 failed", err);
        Assert.Matches(@"ide secondary: [1-9]\d* commands", err);
    }

    [Fact]
    public void BadNvramIsOneLineAndLeavesTheFileAlone()
    {
        Assert.True(File.Exists("/usr/share/OVMF/OVMF_VARS.fd"), "install Debian's ovmf package");
        string truncated = Path.Combine(_dir, "truncated.fd");
        byte[] half = File.ReadAllBytes("/usr/share/OVMF/OVMF_VARS.fd")[..65536];
        File.WriteAllBytes(truncated, half);
        foreach (var (status, args, says) in new (int, string[], string)[]
        {
            (2, ["--nvram", truncated], "needs --firmware uefi"),
            (2, ["--firmware", "bios", "--nvram", truncated], "needs --firmware uefi"),
            (1, ["--firmware", "uefi", "--nvram", truncated], "an OVMF variable store has 131072 bytes"),
            (1, ["--firmware", "uefi", "--nvram", _dir], "is a directory"),
            (1, ["--firmware", "uefi", "--nvram", "/nonexistent/dir/vars.fd"], "cannot be created"),
        })
        {
            var (code, _, err) = Hyve(["run", .. args]);
            Assert.Equal(status, code);
            Assert.StartsWith("hyve: ", err);
            Assert.Contains(says, err);
            Assert.Single(err.TrimEnd().Split('\n'));
            Assert.Equal(half, File.ReadAllBytes(truncated));
        }
        // A missing store is made from the template (the run is cut short at once).
        string fresh = Path.Combine(_dir, "fresh.fd");
        var (status2, _, _) = Hyve(["run", "--firmware", "uefi", "--nvram", fresh, "--timeout", "1"]);
        Assert.Equal(124, status2);
        Assert.Equal(131072, new FileInfo(fresh).Length);
    }

    [Fact]
    public void BadFirmwareIsOneLine()
    {
        string small = Path.Combine(_dir, "small.rom");
        File.WriteAllBytes(small, new byte[1000]);
        string empty = Path.Combine(_dir, "empty.img");
        File.WriteAllBytes(empty, []);
        string tiny = Path.Combine(_dir, "tiny.img");
        File.WriteAllBytes(tiny, new byte[100]);
        foreach (var (status, args, says) in new (int, string[], string)[]
        {
            (1, ["--firmware", "/nonexistent/rom"], "--firmware"),
            (1, ["--firmware", small], "whole number of 4 KiB pages"),
            (1, ["--firmware", "bios", "--kernel", small], "firmware loads a Linux bzImage"),
            (2, ["--firmware", "bios", "--load", "0x100000"], "without firmware"),
            (2, ["--firmware", "bios", "--initrd", small], "need --kernel"),
            (1, ["--firmware", "bios", "--floppy", small], "not the size of a floppy image"),
            (1, ["--firmware", "bios", "--floppy", "/nonexistent/floppy.img"], "--floppy"),
            (1, ["--firmware", "bios", "--hda", "/nonexistent/disk.img"], "--hda"),
            (1, ["--firmware", "bios", "--hda", empty], "the disk image is empty"),
            (1, ["--firmware", "bios", "--virtio-blk", "/nonexistent/disk.img"], "--virtio-blk"),
            (1, ["--firmware", "bios", "--virtio-blk", empty], "the disk image is empty"),
            (1, ["--firmware", "bios", "--virtio-blk", tiny], "shorter than one sector"),
            (2, ["--firmware", "bios", "--drive", "if=scsi"], "no file given"),
            (2, ["--firmware", "bios", "--drive", $"{small},if=scsi"], "if=scsi: expected ide, virtio or floppy"),
            (2, ["--firmware", "bios", "--drive", $"{small},media=tape"], "media=tape"),
            (2, ["--firmware", "bios", "--drive", $"{small},readonly=yes"], "readonly=yes"),
            (2, ["--firmware", "bios", "--drive", $"{small},cache=none"], "unknown setting 'cache'"),
            (2, ["--firmware", "bios", "--drive", $"{small},if=virtio,media=cdrom"], "media=cdrom needs if=ide"),
            (2, ["--firmware", "bios", "--hda", small, "--drive", $"file={small},if=ide"], "one IDE hard disk"),
            (1, ["--firmware", "bios", "--drive", $"{empty},if=virtio,readonly=on"], "the disk image is empty"),
            (1, ["--firmware", "bios", "--cdrom", "/nonexistent/cd.iso"], "--cdrom"),
            (1, ["--firmware", "bios", "--cdrom", empty], "the CD image is empty"),
            (1, ["--firmware", "bios", "--cdrom", _dir], "--cdrom"),
        })
        {
            var (code, _, err) = Hyve(["run", .. args]);
            Assert.Equal(status, code);
            Assert.StartsWith("hyve: ", err);
            Assert.Contains(says, err);
            Assert.Single(err.TrimEnd().Split('\n'));
        }
    }

    [Fact]
    public void FlatBinariesRunFromTheirLoadAddress()
    {
        string path = Path.Combine(_dir, "flat.bin");
        File.WriteAllBytes(path, [0xB0, 0x05, 0xE6, 0xF4, 0xEB, 0xFE]); // mov al, 5; out 0xF4, al
        var (code, _, _) = Hyve("run", "--kernel", path, "--load", "0x200000");
        Assert.Equal(11, code);
        var (bad, _, err) = Hyve("run", "--kernel", path, "--load", "0xA0000");
        Assert.Equal(1, bad);
        Assert.Contains("RAM", err);
    }

    [Fact]
    public void TimeoutHaltAndTripleFaultHaveTheirOwnStatus()
    {
        var (spin, _, err) = Hyve("run", "--kernel", Kernel("spin.bin", 0xEB, 0xFE), "--timeout", "1");
        Assert.Equal(124, spin);
        Assert.Contains("--timeout", err);
        var (halt, _, herr) = Hyve("run", "--kernel", Kernel("halt.bin", 0xFA, 0xF4), "--timeout", "60");
        Assert.Equal(3, halt);
        Assert.Contains("halted with interrupts disabled", herr);
        // xor ecx, ecx; div ecx with an IDT of zeros: #DE finds no gate, and nothing after it can be delivered.
        var (triple, _, terr) = Hyve("run", "--kernel", Kernel("triple.bin", 0x31, 0xC9, 0xF7, 0xF1), "--timeout", "60");
        Assert.Equal(2, triple);
        Assert.Contains("triple-faulted", terr);
    }

    [Theory]
    [InlineData(2, "--cpus", "0")]
    [InlineData(2, "--memory", "1")]
    [InlineData(2, "--backend", "fast")]
    [InlineData(2, "--cpu-features", "v4")]
    [InlineData(2, "--seed", "many")]
    [InlineData(2, "--frobnicate", "1")]
    [InlineData(1, "--kernel", "/nonexistent/kernel")]
    [InlineData(1, "--disk", "/nonexistent/disk.img")]
    [InlineData(1, "--initrd", "/nonexistent/initrd")]
    public void BadOptionsAreOneLineErrors(int status, string option, string value)
    {
        var (code, _, err) = Hyve("run", option, value);
        Assert.Equal(status, code);
        Assert.StartsWith("hyve: ", err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    // Bad input as a newcomer meets it: each case is one line on stderr naming the option or
    // file and what is wrong, and a non-zero status (1 for a file, 2 for a command line).
    public static TheoryData<string, int, string> BadInputs() => new()
    {
        { "kernel-directory", 1, "--kernel DIR: is a directory, not a file" },
        { "disk-directory", 1, "--disk DIR: is a directory, not a file" },
        { "initrd-directory", 1, "--initrd DIR: is a directory, not a file" },
        { "elf-segment-wraps", 1, "ELF segment 0 at 0x200000 with size 0xFFFFFFFFFFF00000 wraps past the top of memory" },
        { "elf-phoff-past-end", 1, "ELF program header 0 at offset 0xFFFFFFFFFFFFFFF0 + 0 is past the end of the file" },
        { "bzimage-cmdline-size-0", 1, "the kernel takes at most 0 (its cmdline_size)" },
        { "memory-too-much", 1, "--memory 1048576 MiB is more than this host can give" },
        { "timeout-too-long", 2, "--timeout must be at most 4294967 seconds" },
        { "timeout-overflows", 2, "--timeout 99999999999999999999999 is too large" },
        { "cpus-too-many", 2, "--cpus must be 1 to 255, got 256" },
        { "flag-twice", 2, "--memory is given more than once" },
        { "unknown-flag", 2, "unknown option '--frobnicate' (try 'hyve run --help')" },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public void EveryBadInputIsOneLineAndNonZero(string input, int status, string message)
    {
        string[] args = input switch
        {
            "kernel-directory" => ["--kernel", _dir],
            "disk-directory" => ["--disk", _dir],
            "initrd-directory" => ["--kernel", Kernel("k.bin", 0xF4), "--initrd", _dir],
            "elf-segment-wraps" => ["--kernel", Elf64("wraps.elf", phoff: 64, paddr: 0x20_0000, memsz: 0xFFFF_FFFF_FFF0_0000)],
            "elf-phoff-past-end" => ["--kernel", Elf64("phoff.elf", phoff: 0xFFFF_FFFF_FFFF_FFF0, paddr: 0x10_0000, memsz: 0x1000)],
            "bzimage-cmdline-size-0" => ["--kernel", BzImage("bz", cmdlineSize: 0)],
            "memory-too-much" => ["--memory", "1048576"],
            "timeout-too-long" => ["--timeout", "99999999999999"],
            "timeout-overflows" => ["--timeout", "99999999999999999999999"],
            "cpus-too-many" => ["--cpus", "256"],
            "flag-twice" => ["--memory", "64", "--memory", "128"],
            "unknown-flag" => ["--frobnicate"],
            _ => throw new ArgumentException(input),
        };
        var (code, _, err) = Hyve(["run", .. args]);
        Assert.Equal(status, code);
        Assert.StartsWith("hyve: ", err);
        Assert.Contains(message.Replace("DIR", _dir, StringComparison.Ordinal), err, StringComparison.Ordinal);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    [Fact]
    public void HelpAndVersionWorkAsInEveryTool()
    {
        var (code, stdout, err) = Hyve("run", "--help");
        Assert.Equal(0, code);
        Assert.StartsWith("usage: hyve run [options]", stdout, StringComparison.Ordinal);
        Assert.Contains("Ctrl-A x quits", stdout, StringComparison.Ordinal);
        Assert.Empty(err);
        (code, stdout, _) = Hyve("--version");
        Assert.Equal(0, code);
        Assert.Matches(@"^hyve \d+\.\d+\.\d+\n$", stdout);
    }

    [Fact]
    public void TheDemoGuestBringsUpAsManyVcpusAsHyveOffers()
    {
        var (code, stdout, _) = Hyve("run", "--cpus", "16", "--timeout", "300");
        Assert.Equal(0, code);
        Assert.Contains("cpus: 16 of 16 online (APIC IDs 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)", stdout, StringComparison.Ordinal);
    }

    // An x86-64 ELF executable (a vmlinux to the loader) with one PT_LOAD header at phoff.
    private string Elf64(string name, ulong phoff, ulong paddr, ulong memsz)
    {
        var f = new byte[64 + 56];
        f[0] = 0x7F;
        "ELF"u8.CopyTo(f.AsSpan(1));
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(16), 2);   // ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(18), 62);  // x86-64
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(24), paddr);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(32), phoff);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(54), 56);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(56), 1);
        Span<byte> p = f.AsSpan(64);
        BinaryPrimitives.WriteUInt32LittleEndian(p, 1);               // PT_LOAD
        BinaryPrimitives.WriteUInt64LittleEndian(p[24..], paddr);
        BinaryPrimitives.WriteUInt64LittleEndian(p[40..], memsz);
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, f);
        return path;
    }

    // A bzImage header (boot protocol 2.15, 64-bit entry) with one setup sector and a tiny payload.
    private string BzImage(string name, uint cmdlineSize)
    {
        var f = new byte[2048];
        f[0x1F1] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x1FE), 0xAA55);
        f[0x201] = 0x66;
        "HdrS"u8.CopyTo(f.AsSpan(0x202));
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x206), 0x020F);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x236), 1);  // XLF_KERNEL_64
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x238), cmdlineSize);
        BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(0x260), 0x1000);
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, f);
        return path;
    }

    [Fact]
    public void AnInstructionTheCpuDoesNotRunIsUdAndNamedAtTheEnd()
    {
        // vmcall (no hypercall interface) in 32-bit protected mode with no usable IDT: the #UD it
        // raises cannot be delivered, so the machine triple-faults; the run says which instruction.
        string flat = Path.Combine(_dir, "vmcall.bin");
        File.WriteAllBytes(flat, [0x0F, 0x01, 0xC1, 0xF4]);
        var (code, _, err) = Hyve("run", "--kernel", flat, "--load", "0x100000", "--timeout", "60");
        Assert.Equal(2, code);
        Assert.Contains("hyve: note: the guest ran 1 instruction(s) the software CPU does not implement; each raised #UD in the guest (the last: vmcall at 0x100000)", err, StringComparison.Ordinal);
        Assert.Contains("triple-faulted", err, StringComparison.Ordinal);
    }

    [Fact]
    public void VerifyEmulationNeedsTheKvmBackend()
    {
        var (code, _, err) = Hyve("run", "--verify-emulation");
        Assert.Equal(2, code);
        Assert.Contains("--backend kvm", err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    [Fact]
    public void TheKvmBackendRunsTheDemoGuestOrSaysWhyNot()
    {
        var (code, output, err) = Hyve("run", "--backend", "kvm", "--verify-emulation", "--timeout", "120");
        if (KvmUnusable() is { } why)
        {
            Assert.Equal(1, code);
            Assert.Contains(why, err);
            return;
        }
        Assert.Equal(0, code);
        Assert.Contains("powering off", output);
    }

    private static string? KvmUnusable() => global::Hyve.Kvm.KvmSystem.Unusable;

    [Fact]
    public void FilesThatAreNotMultibootKernelsAreRejected()
    {
        string path = Path.Combine(_dir, "not-a-kernel");
        File.WriteAllBytes(path, new byte[10000]);
        var (code, _, err) = Hyve("run", "--kernel", path);
        Assert.Equal(1, code);
        Assert.Contains("not a Multiboot kernel, a Linux bzImage or a vmlinux", err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }
}
