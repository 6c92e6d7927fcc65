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

    private static string RepoFile(string relative)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Hyve.slnx")))
                return Path.Combine(d.FullName, relative);
        }
        throw new DirectoryNotFoundException("no repository root above the test binaries");
    }

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
    [InlineData(2, "--frobnicate", "1")]
    [InlineData(1, "--kernel", "/nonexistent/kernel")]
    [InlineData(1, "--disk", "/nonexistent/disk.img")]
    [InlineData(2, "--initrd", "/nonexistent/initrd")] // the demo guest is not a Linux kernel
    public void BadOptionsAreOneLineErrors(int status, string option, string value)
    {
        var (code, _, err) = Hyve("run", option, value);
        Assert.Equal(status, code);
        Assert.StartsWith("hyve: ", err);
        Assert.Single(err.TrimEnd().Split('\n'));
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
