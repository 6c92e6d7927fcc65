// `hyve run`: builds a machine, loads a guest (the built-in demo guest by default), connects
// COM1 to the terminal and runs until the guest or the time limit ends it. The exit status
// tells how the run ended (see MachineResult.StatusOf).
using System;
using System.IO;
using System.Reflection;
using Hyve.Boot;
using Hyve.Devices;
using Hyve.Devices.Storage;
using Hyve.Kvm;
using Hyve.SoftCpu;
using Hyve.Vmm;
using Hyve.Vmm.Vmx;

namespace Hyve.Cli;

/// <summary>The run subcommand.</summary>
internal static class RunCommand
{
    private const string Name = "run";

    /// <summary>The longest --timeout: the host timer's limit (2^32 - 2 ms, about 49.7 days).</summary>
    public const long MaxTimeoutSeconds = 4_294_967;

    public static int Run(ReadOnlySpan<string> args)
    {
        string? kernel = null, cmdline = null, disk = null, initrd = null, firmware = null, debugcon = null, floppy = null,
            hda = null, cdrom = null, virtioBlk = null, nvram = null;
        long? loadAddress = null, seed = null;
        long cpus = 1, memoryMiB = 256, timeout = 0;
        bool stats = false, kvm = false, verify = false, hdaReadOnly = false, virtioReadOnly = false, noReboot = false;
        CpuLevel cpuLevel = CpuLevel.V2;
        var given = new System.Collections.Generic.HashSet<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a is "-h" or "--help")
            {
                Console.WriteLine(Usage.Run);
                return 0;
            }
            // One value per option: a second one is a mistake, not an override (--drive adds a drive each time).
            if (a.StartsWith('-') && a != "--drive" && !given.Add(a))
                throw new UsageException($"run: {a} is given more than once");
            switch (a)
            {
                case "--kernel": kernel = Arguments.Value(Name, args, ref i, a); break;
                case "--cmdline": cmdline = Arguments.Value(Name, args, ref i, a); break;
                case "--cpus": cpus = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                case "--memory": memoryMiB = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                case "--timeout": timeout = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                case "--stats": stats = true; break;
                case "--no-reboot": noReboot = true; break;
                case "--seed": seed = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                case "--backend":
                    string backend = Arguments.Value(Name, args, ref i, a);
                    if (backend is not ("soft" or "kvm"))
                        throw new UsageException($"run: --backend expects soft or kvm, got '{backend}'");
                    kvm = backend == "kvm";
                    break;
                case "--cpu-features":
                    string level = Arguments.Value(Name, args, ref i, a);
                    cpuLevel = level switch
                    {
                        "v1" => CpuLevel.V1,
                        "v2" => CpuLevel.V2,
                        "v3" => CpuLevel.V3,
                        _ => throw new UsageException($"run: --cpu-features expects v1, v2 or v3, got '{level}'"),
                    };
                    break;
                case "--verify-emulation": verify = true; break;
                case "--firmware": firmware = Arguments.Value(Name, args, ref i, a); break;
                case "--debugcon": debugcon = Arguments.Value(Name, args, ref i, a); break;
                case "--floppy": floppy = Arguments.Value(Name, args, ref i, a); break;
                case "--hda": hda = Arguments.Value(Name, args, ref i, a); break;
                case "--cdrom": cdrom = Arguments.Value(Name, args, ref i, a); break;
                case "--virtio-blk": virtioBlk = Arguments.Value(Name, args, ref i, a); break;
                case "--nvram": nvram = Arguments.Value(Name, args, ref i, a); break;
                case "--drive":
                    {
                        Drive d = Drive.Parse(Arguments.Value(Name, args, ref i, a));
                        string? Take(string? already, string what) => already == null
                            ? d.File
                            : throw new UsageException($"run: --drive: the machine has one {what} (given twice)");
                        switch (d.Interface, d.Cdrom)
                        {
                            case ("ide", false): hda = Take(hda, "IDE hard disk"); hdaReadOnly = d.ReadOnly; break;
                            case ("ide", true): cdrom = Take(cdrom, "CD drive"); break;
                            case ("virtio", false): virtioBlk = Take(virtioBlk, "virtio-blk-pci disk"); virtioReadOnly = d.ReadOnly; break;
                            case ("floppy", false): floppy = Take(floppy, "floppy drive"); break;
                            default: throw new UsageException($"run: --drive: media=cdrom needs if=ide");
                        }
                        break;
                    }
                case "--disk": disk = Arguments.Value(Name, args, ref i, a); break;
                case "--initrd": initrd = Arguments.Value(Name, args, ref i, a); break;
                case "--load": loadAddress = Arguments.Number(Name, Arguments.Value(Name, args, ref i, a), a); break;
                default: throw new UsageException($"run: unknown option '{a}' (try 'hyve run --help')");
            }
        }
        if (cpus is < 1 or > 255)
            throw new UsageException($"run: --cpus must be 1 to 255, got {cpus}");
        if (memoryMiB < (long)(MemoryMap.MinimumRam >> 20) || memoryMiB > 1 << 20)
            throw new UsageException($"run: --memory must be {MemoryMap.MinimumRam >> 20} to {1 << 20} MiB, got {memoryMiB}");
        if (timeout > MaxTimeoutSeconds)
            throw new UsageException($"run: --timeout must be at most {MaxTimeoutSeconds} seconds (about 49 days), got {timeout}");
        if (HostMemory.AvailableMiB() is long free && memoryMiB > free)
            throw new IOException($"run: --memory {memoryMiB} MiB is more than this host can give ({free} MiB available)");

        byte[]? rom = null;
        if (firmware != null)
        {
            if (loadAddress != null)
                throw new UsageException("run: --load places a flat binary without firmware (not with --firmware)");
            if (kernel == null && (initrd != null || cmdline != null))
                throw new UsageException("run: --initrd and --cmdline with --firmware need --kernel (a Linux bzImage the firmware loads)");
            if (nvram != null && firmware != "uefi")
                throw new UsageException("run: --nvram holds OVMF's variables: it needs --firmware uefi");
            rom = nvram != null ? OvmfCode() : ReadFirmware(firmware);
        }
        else if (nvram != null)
        {
            throw new UsageException("run: --nvram holds OVMF's variables: it needs --firmware uefi");
        }
        if (nvram != null)
            CheckNvram(nvram);
        byte[]? firmwareKernel = rom != null && kernel != null ? Arguments.ReadFile(Name, "--kernel", kernel) : null;
        if (firmwareKernel != null && !LinuxBoot.IsBzImage(firmwareKernel))
            throw new InvalidDataException($"{kernel}: firmware loads a Linux bzImage through fw_cfg (this is not one)");
        byte[] image = rom ?? (kernel == null ? DefaultGuest() : Arguments.ReadFile(Name, "--kernel", kernel));
        byte[]? ramdisk = initrd == null ? null : Arguments.ReadFile(Name, "--initrd", initrd);
        string what = firmware ?? kernel ?? "the built-in demo guest";
        bool vmlinux = rom == null && loadAddress == null && LinuxBoot.IsVmlinux(image);
        bool linux = rom == null && loadAddress == null && (LinuxBoot.IsBzImage(image) || vmlinux);
        if (loadAddress != null && kernel == null)
            throw new UsageException("run: --load needs --kernel (a flat binary to place there)");
        if (rom == null && !linux && loadAddress == null && !Multiboot.IsMultiboot(image))
            throw new InvalidDataException($"{what}: not a Multiboot kernel, a Linux bzImage or a vmlinux");
        if (verify && !kvm)
            throw new UsageException("run: --verify-emulation checks the kvm backend's emulation (add --backend kvm)");
        if (kvm && KvmSystem.Unusable is { } why)
            throw new IOException($"run: the kvm backend cannot run here: {why}");
        if (initrd != null && !linux && firmwareKernel == null)
            throw new UsageException("run: --initrd needs a Linux kernel");
        if (disk != null)
            Arguments.CheckWritableFile(Name, "--disk", disk);
        if (floppy != null)
        {
            long size = Arguments.ReadFile(Name, "--floppy", floppy).LongLength;
            if (FloppyController.Geometry(size) == null)
                throw new InvalidDataException($"{floppy}: {size} bytes is not the size of a floppy image (1,474,560 for 1.44 MB)");
            if (firmware == null)
                throw new UsageException("run: --floppy needs --firmware (a BIOS boots from it)");
        }
        foreach (var (option, diskImage, readOnly) in new[] { ("--hda", hda, hdaReadOnly), ("--virtio-blk", virtioBlk, virtioReadOnly) })
        {
            if (diskImage == null)
                continue;
            if (readOnly)
                Arguments.CheckReadableFile(Name, option, diskImage);
            else
                Arguments.CheckWritableFile(Name, option, diskImage);
            long length = new FileInfo(diskImage).Length;
            if (length < 512)
                throw new InvalidDataException($"{diskImage}: the disk image is {(length == 0 ? "empty" : "shorter than one sector")}");
        }
        if (cdrom != null && Arguments.CheckReadableFile(Name, "--cdrom", cdrom) == 0)
            throw new InvalidDataException($"{cdrom}: the CD image is empty");

        if (nvram != null && !File.Exists(nvram))
            NewNvram(nvram);

        // RDRAND's values: from the given seed, so a run repeats exactly, or from the host.
        ulong randomSeed = seed is long fixedSeed ? (ulong)fixedSeed : BitConverter.ToUInt64(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
        using Stream console = Console.OpenStandardOutput();
        using Stream? debugLog = debugcon == null ? null : OpenLog(debugcon);
        var options = new MachineOptions
        {
            Cpus = (int)cpus,
            CpuLevel = cpuLevel,
            MemoryBytes = (ulong)memoryMiB << 20,
            Console = console,
            Disk = disk == null ? null : Path.GetFullPath(disk),
            FirmwareSize = rom?.Length ?? 0,
            Floppy = floppy == null ? null : Path.GetFullPath(floppy),
            HardDisk = hda == null ? null : Path.GetFullPath(hda),
            Cdrom = cdrom == null ? null : Path.GetFullPath(cdrom),
            PciDisk = virtioBlk == null ? null : Path.GetFullPath(virtioBlk),
            HardDiskReadOnly = hdaReadOnly,
            PciDiskReadOnly = virtioReadOnly,
            Nvram = nvram == null ? null : Path.GetFullPath(nvram),
            DebugConsole = debugLog,
            Backend = kvm
                ? (memory, _) => new KvmBackend(memory)
                : (memory, clock) => new VmxBackend(memory, id => new SoftProcessor(memory, clock)
                {
                    RandomSeed = randomSeed + ((ulong)id << 48),
                }, "soft"),
            // KVM runs each vCPU on a host thread of its own, at the host's pace.
            OneThread = !kvm,
            HostTime = kvm,
            VerifyEmulation = verify,
        };
        // A firmware machine resets as a PC does, through its firmware, unless --no-reboot: a
        // reset request ends this machine and a new one starts from the reset vector with the
        // same options (the drives and the variable store keep what the guest wrote).
        bool reboot = rom != null && !noReboot;
        var started = System.Diagnostics.Stopwatch.StartNew();
        Machine? machine = Start(options);
        int resets = 0;
        MachineResult result;
        int signal;
        try
        {
            // The terminal's settings come back before anything else is printed.
            using (var terminal = Terminal.Attach(machine))
            {
                while (true)
                {
                    TimeSpan? left = timeout > 0 ? TimeSpan.FromSeconds(timeout) - started.Elapsed : null;
                    result = left is { } l && l <= TimeSpan.Zero ? new MachineResult(MachineStop.Timeout, MachineResult.StatusOf(MachineStop.Timeout, 0), null) : machine.Run(left);
                    if (!reboot || result.Stop != MachineStop.Reset || terminal.Signal != 0 || terminal.Quit)
                        break;
                    // The old machine goes first (its files closed, its RAM freed); if the new
                    // one cannot be made, nothing is left to dispose twice.
                    machine.Dispose();
                    machine = null;
                    machine = Start(options);
                    terminal.Retarget(machine);
                    resets++;
                }
                signal = terminal.Signal;
            }
            if (signal != 0)
            {
                // Stopped from the host: the shells' convention, 128 + the signal's number.
                Console.Error.WriteLine($"hyve: stopped by signal {signal}");
                return 128 + signal;
            }

            if (stats)
            {
                Console.Error.Write(machine.Statistics());
                if (resets > 0)
                    Console.Error.WriteLine($"resets through the firmware: {resets}");
                if (!kvm)
                    Console.Error.WriteLine($"random seed: {randomSeed} (--seed repeats RDRAND's values)");
            }
            if (machine.UnimplementedSummary() is { } missing)
                Console.Error.WriteLine($"hyve: note: {missing}");
        }
        finally
        {
            machine?.Dispose();
        }
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

        // A machine with the guest loaded, ready to run from its entry (or the reset vector).
        Machine Start(MachineOptions o)
        {
            var machine = new Machine(o);
            try
            {
                BootImage boot;
                try
                {
                    // Linux hears of the virtio-mmio devices on its command line.
                    boot = rom != null
                        ? Firmware.Load(rom)
                        : loadAddress is long at
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
                if (firmwareKernel != null)
                {
                    // As QEMU's -bios with -kernel: the pieces in fw_cfg and its linuxboot option ROM.
                    if (!File.Exists(LinuxBootRom))
                        throw new IOException($"run: --firmware with --kernel needs QEMU's linuxboot option ROM ({LinuxBootRom} is missing; apt-get install qemu-system-data)");
                    try
                    {
                        machine.HandOverKernel(firmwareKernel, ramdisk, $"{cmdline ?? "console=ttyS0"} {machine.VirtioCommandLine}".Trim(),
                            File.ReadAllBytes(LinuxBootRom));
                    }
                    catch (InvalidDataException e)
                    {
                        throw new InvalidDataException($"{kernel}: {e.Message}", e);
                    }
                }
                return machine;
            }
            catch
            {
                machine.Dispose();
                throw;
            }
        }
    }

    /// <summary>QEMU's option ROM that boots a kernel handed over in fw_cfg (Debian's qemu-system-data).</summary>
    public const string LinuxBootRom = "/usr/share/qemu/linuxboot.bin";

    /// <summary>Where Debian's seabios package puts the 256 KiB SeaBIOS QEMU's pc machine uses.</summary>
    public const string SeaBios = "/usr/share/seabios/bios-256k.bin";

    /// <summary>OVMF as Debian's ovmf package installs it: code and variable store in one image
    /// (variables then live in RAM for the run).</summary>
    public const string Ovmf = "/usr/share/ovmf/OVMF.fd";

    /// <summary>OVMF's code and its variable store's template as separate flash images (Debian's
    /// ovmf package, the 4 MiB layout), for <c>--nvram</c>.</summary>
    public const string OvmfCodeImage = "/usr/share/OVMF/OVMF_CODE.fd", OvmfVarsTemplate = "/usr/share/OVMF/OVMF_VARS.fd";

    private static byte[] OvmfCode()
    {
        if (!File.Exists(OvmfCodeImage) || !File.Exists(OvmfVarsTemplate))
            throw new IOException($"run: --nvram needs OVMF's split images from Debian's ovmf package ({OvmfCodeImage} and {OvmfVarsTemplate}; apt-get install ovmf)");
        return File.ReadAllBytes(OvmfCodeImage);
    }

    // An existing variable store must be one OVMF's code can use: the template's size, writable.
    // Nothing is written to it here.
    private static void CheckNvram(string path)
    {
        if (Directory.Exists(path))
            throw new IOException($"run: --nvram {path}: is a directory");
        if (!File.Exists(path))
            return;
        Arguments.CheckWritableFile(Name, "--nvram", path);
        long want = new FileInfo(OvmfVarsTemplate).Length, have = new FileInfo(path).Length;
        if (have != want)
            throw new InvalidDataException($"{path}: an OVMF variable store has {want} bytes (the size of {Path.GetFileName(OvmfVarsTemplate)}); this one has {have}");
    }

    // A new variable store starts as a copy of the template, as QEMU's users make one.
    private static void NewNvram(string path)
    {
        try
        {
            File.Copy(OvmfVarsTemplate, path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"run: --nvram {path}: cannot be created ({e.Message})", e);
        }
    }

    // --firmware bios (Debian's SeaBIOS) or a ROM image file.
    private static byte[] ReadFirmware(string firmware)
    {
        if (firmware == "bios")
        {
            if (!File.Exists(SeaBios))
                throw new IOException($"run: --firmware bios needs SeaBIOS from Debian's seabios package ({SeaBios} is missing; apt-get install seabios)");
            return File.ReadAllBytes(SeaBios);
        }
        if (firmware == "uefi")
        {
            if (!File.Exists(Ovmf))
                throw new IOException($"run: --firmware uefi needs OVMF from Debian's ovmf package ({Ovmf} is missing; apt-get install ovmf)");
            return File.ReadAllBytes(Ovmf);
        }
        byte[] rom = Arguments.ReadFile(Name, "--firmware", firmware);
        try
        {
            Firmware.Load(rom); // checked now, before the machine is built around its size
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{firmware}: {e.Message}", e);
        }
        return rom;
    }

    private static FileStream OpenLog(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"run: --debugcon {path}: {e.Message}", e);
        }
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
}
