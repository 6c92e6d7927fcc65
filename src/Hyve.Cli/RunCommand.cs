// `hyve run`: builds a machine, loads a guest (the built-in demo guest by default), connects
// COM1 to the terminal and runs until the guest or the time limit ends it. The exit status
// tells how the run ended (see MachineResult.StatusOf).
using System;
using System.Diagnostics;
using System.IO;
using System.Reflection;
using System.Threading;
using Hyve.Boot;
using Hyve.Devices;
using Hyve.Kvm;
using Hyve.SoftCpu;
using Hyve.Vmm.Vmx;

namespace Hyve.Cli;

/// <summary>The run subcommand.</summary>
internal static class RunCommand
{
    private const string Name = "run";

    public static int Run(ReadOnlySpan<string> args)
    {
        string? kernel = null, cmdline = null, disk = null, initrd = null;
        long? loadAddress = null;
        long cpus = 1, memoryMiB = 256, timeout = 0;
        bool stats = false, kvm = false, verify = false;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            switch (a)
            {
                case "--kernel": kernel = Arguments.Value(Name, args, ref i, a); break;
                case "--cmdline": cmdline = Arguments.Value(Name, args, ref i, a); break;
                case "--cpus": cpus = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                case "--memory": memoryMiB = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                case "--timeout": timeout = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                case "--stats": stats = true; break;
                case "--backend":
                    string backend = Arguments.Value(Name, args, ref i, a);
                    if (backend is not ("soft" or "kvm"))
                        throw new UsageException($"run: --backend expects soft or kvm, got '{backend}'");
                    kvm = backend == "kvm";
                    break;
                case "--verify-emulation": verify = true; break;
                case "--disk": disk = Arguments.Value(Name, args, ref i, a); break;
                case "--initrd": initrd = Arguments.Value(Name, args, ref i, a); break;
                case "--load": loadAddress = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                default: throw new UsageException($"run: unknown option '{a}'");
            }
        }
        if (cpus is < 1 or > 255)
            throw new UsageException($"run: --cpus must be 1 to 255, got {cpus}");
        if (memoryMiB < (long)(MemoryMap.MinimumRam >> 20) || memoryMiB > 1 << 20)
            throw new UsageException($"run: --memory must be {MemoryMap.MinimumRam >> 20} to {1 << 20} MiB, got {memoryMiB}");

        byte[] image = kernel == null ? DefaultGuest() : File.ReadAllBytes(kernel);
        string what = kernel ?? "the built-in demo guest";
        bool vmlinux = loadAddress == null && LinuxBoot.IsVmlinux(image);
        bool linux = loadAddress == null && (LinuxBoot.IsBzImage(image) || vmlinux);
        if (loadAddress != null && kernel == null)
            throw new UsageException("run: --load needs --kernel (a flat binary to place there)");
        if (!linux && loadAddress == null && !Multiboot.IsMultiboot(image))
            throw new InvalidDataException($"{what}: not a Multiboot kernel, a Linux bzImage or a vmlinux");
        if (verify && !kvm)
            throw new UsageException("run: --verify-emulation checks the kvm backend's emulation (add --backend kvm)");
        if (kvm && KvmSystem.Unusable is { } why)
            throw new IOException($"run: the kvm backend cannot run here: {why}");
        if (initrd != null && !linux)
            throw new UsageException("run: --initrd needs a Linux kernel");
        byte[]? ramdisk = initrd == null ? null : File.ReadAllBytes(initrd);

        using Stream console = Console.OpenStandardOutput();
        var options = new MachineOptions
        {
            Cpus = (int)cpus,
            MemoryBytes = (ulong)memoryMiB << 20,
            Console = console,
            Disk = disk == null ? null : Path.GetFullPath(disk),
            Backend = kvm
                ? (memory, _) => new KvmBackend(memory)
                : (memory, clock) => new VmxBackend(memory, _ => new SoftProcessor(memory, clock), "soft"),
            // KVM runs each vCPU on a host thread of its own, at the host's pace.
            OneThread = !kvm,
            HostTime = kvm,
            VerifyEmulation = verify,
        };
        using var machine = new Machine(options);
        BootImage boot;
        try
        {
            // Linux hears of the virtio-mmio devices on its command line.
            boot = loadAddress is long at
                ? FlatBinary.Load(image, (ulong)at, machine.Map)
                : vmlinux
                ? LinuxBoot.LoadVmlinux(image, machine.Map, $"{cmdline ?? "console=ttyS0"} {machine.VirtioCommandLine}".Trim(), ramdisk, (int)cpus)
                : linux
                ? LinuxBoot.Load(image, machine.Map, $"{cmdline ?? "console=ttyS0"} {machine.VirtioCommandLine}".Trim(), ramdisk, (int)cpus)
                : Multiboot.Load(image, machine.Map, cmdline ?? "");
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{what}: {e.Message}", e);
        }
        machine.Load(boot);

        using var terminal = Terminal.Attach(machine);
        MachineResult result = machine.Run(timeout > 0 ? TimeSpan.FromSeconds(timeout) : null);
        terminal.Dispose();

        if (stats)
            Console.Error.Write(machine.Statistics());
        switch (result.Stop)
        {
            case MachineStop.Timeout:
                Console.Error.WriteLine($"hyve: the guest was stopped after {timeout} s (--timeout)");
                break;
            case MachineStop.TripleFault:
                Console.Error.WriteLine("hyve: the guest triple-faulted (the machine would reset)");
                break;
            case MachineStop.Halted:
            case MachineStop.Error:
                Console.Error.WriteLine($"hyve: {(result.Stop == MachineStop.Error ? "internal error: " : "")}{result.Message}");
                break;
        }
        return result.Status;
    }

    // The demo guest built from guests/demo.c and embedded in this program.
    private static byte[] DefaultGuest()
    {
        using Stream? s = Assembly.GetExecutingAssembly().GetManifestResourceStream("demo.elf")
            ?? throw new InvalidOperationException("the built-in demo guest is missing from this build");
        var buf = new byte[s.Length];
        s.ReadExactly(buf);
        return buf;
    }

    /// <summary>COM1's input: the terminal in raw mode (Ctrl-A then x quits), or a pipe.</summary>
    private sealed class Terminal : IDisposable
    {
        private readonly string? _saved;
        private readonly Machine _machine;

        private Terminal(Machine machine, string? saved)
        {
            _machine = machine;
            _saved = saved;
            var pump = new Thread(Pump) { IsBackground = true, Name = "console-input" };
            pump.Start();
        }

        public static Terminal Attach(Machine machine)
        {
            string? saved = null;
            if (!Console.IsInputRedirected && OperatingSystem.IsLinux())
            {
                saved = Stty("-g")?.Trim();
                if (saved != null)
                    Stty("raw -echo");
            }
            return new Terminal(machine, saved);
        }

        private void Pump()
        {
            using Stream input = Console.OpenStandardInput();
            var one = new byte[1];
            bool escape = false;
            while (_machine.Stopped == MachineStop.None)
            {
                int n;
                try
                {
                    n = input.Read(one, 0, 1);
                }
                catch (IOException)
                {
                    return;
                }
                if (n == 0)
                    return; // end of input: the guest keeps running without it
                byte b = one[0];
                if (_saved != null)
                {
                    if (escape && (b == 'x' || b == 'X'))
                    {
                        _machine.Stop(MachineStop.PowerOff);
                        return;
                    }
                    escape = b == 0x01 && !escape;
                    if (escape)
                        continue;
                }
                while (!_machine.Type(b) && _machine.Stopped == MachineStop.None)
                    Thread.Sleep(1); // the guest has not drained its FIFO: nothing typed is lost
            }
        }

        public void Dispose()
        {
            if (_saved != null)
                Stty(_saved);
        }

        private static string? Stty(string args)
        {
            try
            {
                var psi = new ProcessStartInfo("stty", args) { RedirectStandardOutput = true, UseShellExecute = false };
                psi.Environment["LC_ALL"] = "C";
                // stty works on its standard input, which the child inherits from us: the terminal.
                using Process? p = Process.Start(psi);
                if (p == null)
                    return null;
                string output = p.StandardOutput.ReadToEnd();
                p.WaitForExit();
                return p.ExitCode == 0 ? output : null;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return null;
            }
        }
    }
}
