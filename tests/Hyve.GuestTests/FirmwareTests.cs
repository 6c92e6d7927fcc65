// Firmware on Hyve against the same firmware on QEMU's pc machine, compared line by line on
// COM1: Debian's SeaBIOS starts from the reset vector, finds the machine through fw_cfg, PCI and
// CMOS, prints its banner (sercon, as with QEMU's -nographic) and with no disk tries each boot
// device in QEMU's order until "No bootable device."; with the FreeDOS boot floppy it boots
// FreeDOS through the floppy controller and ISA DMA to its prompt, where a typed command runs;
// from a GRUB image built with Debian's grub-mkrescue, as a CD or as a hard disk on the IDE
// controller, it boots GRUB, which boots Linux, whose own IDE driver then reads and writes the
// same drive.
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
    private const string SeaBios = "/usr/share/seabios/bios-256k.bin";

    // The FreeDOS boot floppy kept in guests/images, unpacked to a temporary file and checked
    // against its provenance's hash.
    private static string Unpack()
    {
        string packed = Path.Combine(GuestRun.GuestsDir, "images", "freedos-boot-1.44M.img.gz");
        string path = Path.GetTempFileName();
        using (var input = new System.IO.Compression.GZipStream(File.OpenRead(packed), System.IO.Compression.CompressionMode.Decompress))
        using (FileStream output = File.Create(path))
            input.CopyTo(output);
        string hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path)));
        Assert.Equal("2546c15c6cba5814f7a318b1ef4e24158504d73dd24ba6eb6133ffe87686a056", hash);
        return path;
    }

    [Fact]
    public void SeaBiosReachesItsBootMenuAsOnQemu()
    {
        List<string> q = Compare(default, [("No bootable device.", null)]);
        Assert.Contains(q, l => l.StartsWith("SeaBIOS (version ", StringComparison.Ordinal));
    }

    [Fact]
    public void FreeDosBootsFromAFloppyToItsPromptAsOnQemu()
    {
        // The prompt after AUTOEXEC.BAT clears the screen; then VER, answered by FreeCOM.
        string floppy = Unpack();
        try
        {
            List<string> q = Compare(new Media(Floppy: floppy), [("\x1b[01;01HA:\\>", "ver\r"), ("A:\\>", null)]);
            Assert.Contains("Booting from Floppy...", q);
            Assert.Contains(q, l => l.Contains("FreeDOS kernel - ", StringComparison.Ordinal));
            Assert.Equal(2, q.Count(l => l.StartsWith("FreeCom version", StringComparison.Ordinal))); // at boot, and VER's answer
        }
        finally
        {
            File.Delete(floppy);
        }
    }

    [Theory]
    [InlineData(SeaBios)]
    [InlineData(Ovmf)]
    public void FirmwareLoadsLinuxThroughFwCfgAsOnQemu(string rom)
    {
        // As QEMU's -bios with -kernel: the kernel, initramfs and command line in fw_cfg, the ACPI
        // tables through the table loader (the FADT naming the PM block where the firmware put
        // it); SeaBIOS runs QEMU's linuxboot option ROM, OVMF loads the kernel through its EFI
        // stub. Debian's kernel reaches user space and powers off through ACPI on both machines.
        Assert.True(File.Exists(rom), $"{rom} is missing: install Debian's {(rom == Ovmf ? "ovmf" : "seabios")} package");
        Assert.True(Hyve.TestSupport.DebianKernel.Path != null, Hyve.TestSupport.DebianKernel.Why);
        Assert.True(Hyve.TestSupport.DebianBusybox.Path != null, Hyve.TestSupport.DebianBusybox.Why);
        Assert.True(File.Exists(LinuxBootRom), $"{LinuxBootRom} is missing: install Debian's qemu-system-data package");
        const string Init = "#!/bin/busybox sh\n/bin/busybox echo \"user space: $(/bin/busybox uname -sm)\"\n/bin/busybox poweroff -f\n";
        string initrd = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(initrd, Hyve.TestSupport.DebianBusybox.Initramfs(Init));
            var kernel = (Hyve.TestSupport.DebianKernel.Path!, initrd, "console=ttyS0");
            string hyve = OnHyve(File.ReadAllBytes(rom), default, [("reboot: Power down", null)], out string debugLog, kernel);
            string qemu = OnQemu(rom, default, [("reboot: Power down", null)], kernel);
            log.WriteLine($"hyve:\n{hyve}\nqemu:\n{qemu}\nhyve's firmware debug log:\n{debugLog}");
            string[] firmwareLines = rom == Ovmf
                ? ["EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path"]
                : ["SeaBIOS (version ", "Booting from ROM..."];
            foreach (string line in firmwareLines.Concat(["Linux version 6.", "ACPI: Interpreter enabled", "ACPI: PM: (supports S0 ",
                "Run /init as init process", "user space: Linux x86_64", "ACPI: PM: Preparing to enter system sleep state S5", "reboot: Power down"]))
            {
                Assert.Contains(line, qemu, StringComparison.Ordinal);
                Assert.Contains(line, hyve, StringComparison.Ordinal);
            }
            Assert.Empty(Hyve.TestSupport.KernelLog.Errors(hyve));
        }
        finally
        {
            File.Delete(initrd);
        }
    }

    [Theory]
    [InlineData(SeaBios, "cd")]
    [InlineData(SeaBios, "ide")]
    [InlineData(SeaBios, "virtio")]
    [InlineData(Ovmf, "cd")]
    [InlineData(Ovmf, "virtio")]
    public void GrubBootsLinuxFromADriveAsOnQemu(string firmware, string where)
    {
        // SeaBIOS boots the image (El Torito from the ATAPI drive, or the MBR from the IDE disk
        // or the virtio-blk-pci disk) and GRUB reads its modules, the kernel and the initramfs
        // through the BIOS; OVMF boots GRUB's EFI image (El Torito's EFI entry on the CD, the EFI
        // system partition on the disk) and GRUB reads through UEFI's block I/O. Linux's ata_piix
        // or virtio_blk (loaded from the initramfs) finds the drive, mounts the image's ISO 9660
        // file system and hashes the kernel on it; on a disk it also writes the last sector,
        // which must then be in the image file.
        Assert.True(File.Exists(firmware), $"{firmware} is missing: install Debian's {(firmware == Ovmf ? "ovmf" : "seabios")} package");
        bool hardDisk = where != "cd", uefi = firmware == Ovmf;
        Assert.True(Qemu.Path != null, Qemu.Why);
        Assert.True(Hyve.TestSupport.DebianKernel.Path != null, Hyve.TestSupport.DebianKernel.Why);
        Assert.True(Hyve.TestSupport.DebianBusybox.Path != null, Hyve.TestSupport.DebianBusybox.Why);
        Assert.Null(Hyve.TestSupport.GrubImage.Unavailable);
        string kernel = Hyve.TestSupport.DebianKernel.Path!;
        string[] modules = where == "virtio"
            ? ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk", "cdrom", "isofs"]
            : ["scsi_common", "scsi_mod", "libata", "ata_piix", "cdrom", "sr_mod", "sd_mod", "isofs"];
        string moduleDir = Directory.GetDirectories(Path.Combine(Path.GetDirectoryName(kernel)!, "..", "lib", "modules"))[0];
        var files = modules.Select(m => ("/bin/" + m + ".ko",
            File.ReadAllBytes(Directory.GetFiles(moduleDir, m + ".ko", SearchOption.AllDirectories)[0]))).ToArray();
        string init = $$"""
            #!/bin/busybox sh
            /bin/busybox --install -s /bin
            mkdir -p /mnt
            mount -t proc proc /proc
            mount -t sysfs sysfs /sys
            mount -t devtmpfs devtmpfs /dev
            for m in {{string.Join(' ', modules)}}; do insmod /bin/$m.ko || echo "insmod $m failed"; done
            sleep 1
            for d in sda sr0 vda; do
              if [ -b /dev/$d ]; then
                echo "disk $d: $(cat /sys/block/$d/size) sectors"
                mount -t iso9660 -o ro /dev/$d /mnt && echo "kernel on $d: $(sha256sum /mnt/boot/vmlinuz | cut -c1-64)" && umount /mnt
              fi
            done
            for d in sda vda; do
              if [ -b /dev/$d ]; then
                last=$(( $(cat /sys/block/$d/size) - 1 ))
                echo "written by the guest" | dd of=/dev/$d bs=512 seek=$last conv=notrunc,fsync 2>/dev/null && echo "wrote sector $last"
              fi
            done
            grep virtio /proc/interrupts | while read n counts; do
              set -- $counts
              echo "interrupt: $2 $3 $4 (used: $([ $1 -gt 0 ] && echo yes || echo no))"
            done
            poweroff -f

            """;
        string hyveImage = Hyve.TestSupport.GrubImage.Build(kernel, Hyve.TestSupport.DebianBusybox.Initramfs(init, files), "console=ttyS0 quiet");
        string qemuImage = Path.GetTempFileName();
        try
        {
            File.Copy(hyveImage, qemuImage, overwrite: true);
            long sectors = new FileInfo(hyveImage).Length / 512;
            Media On(string image) => where switch
            {
                "cd" => new Media(Cdrom: image),
                "ide" => new Media(HardDisk: image),
                _ => new Media(VirtioBlk: image),
            };
            Media media = On(hyveImage), qemuMedia = On(qemuImage);
            (string, string?)[] dialog = [("reboot: Power down", null)];
            string hyve = OnHyve(File.ReadAllBytes(firmware), media, dialog, out string debugLog);
            string qemu = OnQemu(firmware, qemuMedia, dialog);
            log.WriteLine($"hyve:\n{hyve}\nqemu:\n{qemu}\nhyve's firmware debug log:\n{debugLog}");
            string hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(kernel)));
            string drive = where switch { "cd" => "sr0", "ide" => "sda", _ => "vda" };
            // OVMF names a boot option after the drive's IDENTIFY model and serial number, which
            // are each machine's own ("HYVE DVD-ROM" and a serial from the image's size, "QEMU
            // DVD-ROM QM00003").
            List<string> h = [.. KernelLines(hyve).Select(DriveName)], q = [.. KernelLines(qemu).Select(DriveName)];
            static string DriveName(string line) => DvdRom().Replace(line, "UEFI DVD-ROM\"");
            string booting = uefi
                ? (hardDisk ? "BdsDxe: starting Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x3,0x0)" : "BdsDxe: starting Boot0001 \"UEFI DVD-ROM\" from PciRoot(0x0)/Pci(0x1,0x1)/Ata(Secondary,Master,0x0)")
                : (hardDisk ? "Booting from Hard Disk..." : "Booting from DVD/CD...");
            foreach (string line in new[] { booting, "GRUB: loading Linux",
                $"disk {drive}: {sectors} sectors", $"kernel on {drive}: {hash}", "reboot: Power down" })
            {
                Assert.Contains(line, q);
                Assert.Contains(line, h);
            }
            Assert.Equal(q, h);
            Assert.Empty(Hyve.TestSupport.KernelLog.Errors(hyve));
            if (where == "virtio")
            {
                // The driver's interrupts are message-signalled, a vector for configuration changes
                // and one for the request queue, which has fired (Linux names the vector in the
                // hardware number, 00:03.0's requester ID << 11 + the MSI-X entry; QEMU's equal).
                Assert.Contains("interrupt: PCI-MSI 49152-edge virtio0-config (used: no)", h);
                Assert.Contains("interrupt: PCI-MSI 49153-edge virtio0-req.0 (used: yes)", h);
            }
            if (hardDisk)
            {
                Assert.Contains($"wrote sector {sectors - 1}", h);
                foreach (string image in new[] { hyveImage, qemuImage })
                {
                    byte[] all = File.ReadAllBytes(image);
                    Assert.Equal("written by the guest\n", Encoding.ASCII.GetString(all, all.Length - 512, 21));
                }
            }
        }
        finally
        {
            File.Delete(hyveImage);
            File.Delete(qemuImage);
        }
    }

    // The console's lines with the kernel's timestamps taken off (the two machines' clocks differ)
    // and without GRUB's greeting: GRUB prints it through INT 10h, which SeaBIOS's serial console
    // writes out lazily, so where its last character lands among what GRUB then sends to the
    // serial port itself depends on how much time passes on each machine.
    private static List<string> KernelLines(string output) =>
        [.. Lines(output)
            .Select(l => Timestamp().Replace(l, "").Replace("Welcome to GRUB!", "", StringComparison.Ordinal)
                .Replace("Welcome to GRUB", "", StringComparison.Ordinal))
            .Where(l => l.Length > 0 && l != "!")];

    [GeneratedRegex(@"^\[\s*\d+\.\d+\] ")]
    private static partial Regex Timestamp();

    [GeneratedRegex(@"UEFI (HYVE|QEMU) DVD-ROM [A-Z0-9]+ """)]
    private static partial Regex DvdRom();

    /// <summary>The drives a run has: a floppy in drive A:, an IDE hard disk, a CD, a virtio-blk-pci disk.</summary>
    /// <summary>With <c>Nvram</c>, the firmware is OVMF's code alone and its variables live in that
    /// flash image.</summary>
    private readonly record struct Media(string? Floppy = null, string? HardDisk = null, string? Cdrom = null, string? VirtioBlk = null,
        string? Nvram = null);

    private const string Ovmf = "/usr/share/ovmf/OVMF.fd";

    [Fact]
    public void OvmfReachesTheUefiShellAndShutsDownAsOnQemu()
    {
        // Debian's OVMF (code and variables in one image) from the reset vector through PEI, DXE
        // and BDS to the UEFI shell on COM1; ESC skips startup.nsh, VER is answered, and RESET -S
        // shuts the machine down through the PM block OVMF placed (PIIX4 PMBA 0xB000).
        Assert.True(File.Exists(Ovmf), $"{Ovmf} is missing: install Debian's ovmf package");
        Assert.True(Qemu.Path != null, Qemu.Why);
        (string, string?)[] dialog = [("startup.nsh", "\x1b"), ("Shell> ", "ver\r"), ("Shell> ", "reset -s\r")];
        string hyve = OnHyve(File.ReadAllBytes(Ovmf), default, dialog, out _);
        string qemu = OnQemu(Ovmf, default, dialog);
        log.WriteLine($"hyve:\n{hyve}\nqemu:\n{qemu}");
        List<string> h = Shown(hyve), q = Shown(qemu);
        foreach (string line in new[] { "UEFI Interactive Shell v2.2", "Shell> ver", "Shell> reset -s" })
        {
            Assert.Contains(line, q);
            Assert.Contains(line, h);
        }
        Assert.Equal(q, h);
    }

    // The countdown is drawn over itself as time passes: how far it got when ESC arrived differs.
    private static List<string> Shown(string output) => [.. Lines(output).Where(l => !l.StartsWith("Press ESC in", StringComparison.Ordinal))];

    private const string OvmfCode = "/usr/share/OVMF/OVMF_CODE.fd", OvmfVars = "/usr/share/OVMF/OVMF_VARS.fd";

    [Fact]
    public void OvmfKeepsUefiVariablesInItsNvramFileAsOnQemu()
    {
        // OVMF's code with its variable store as a flash image of its own: the shell sets a
        // non-volatile variable, the machine powers off, and the next boot from the same file
        // reads it back. QEMU runs the same images as its two pflash devices.
        Assert.True(File.Exists(OvmfCode) && File.Exists(OvmfVars), $"{OvmfCode} and {OvmfVars} are missing: install Debian's ovmf package");
        Assert.True(Qemu.Path != null, Qemu.Why);
        const string Guid = "4e2a5b7c-1234-4abc-9def-0123456789ab";
        string hyveVars = Path.GetTempFileName(), qemuVars = Path.GetTempFileName();
        try
        {
            File.Copy(OvmfVars, hyveVars, overwrite: true);
            File.Copy(OvmfVars, qemuVars, overwrite: true);
            byte[] code = File.ReadAllBytes(OvmfCode);
            (string, string?)[] set = [("startup.nsh", "\x1b"), ("Shell> ", $"setvar HyveTest -guid {Guid} -nv -bs -rt =\"hyve\"\r"), ("Shell> ", "reset -s\r")];
            (string, string?)[] get = [("startup.nsh", "\x1b"), ("Shell> ", $"setvar HyveTest -guid {Guid}\r"), ("Shell> ", "reset -s\r")];
            var results = new List<(List<string> Hyve, List<string> Qemu)>();
            foreach (var dialog in new[] { set, get })
            {
                string hyve = OnHyve(code, new Media(Nvram: hyveVars), dialog, out _);
                string qemu = OnQemu(OvmfCode, new Media(Nvram: qemuVars), dialog);
                log.WriteLine($"hyve:\n{hyve}\nqemu:\n{qemu}");
                results.Add((Shown(hyve), Shown(qemu)));
            }
            foreach (var (h, q) in results)
            {
                Assert.Contains("Shell> reset -s", q);
                Assert.Equal(q, h);
            }
            // The first boot wrote the store (its boot options, then the variable); the second
            // found the variable there.
            Assert.NotEqual(File.ReadAllBytes(OvmfVars), File.ReadAllBytes(hyveVars));
            Assert.Contains("4E2A5B7C-1234-4ABC-9DEF-0123456789AB - HyveTest - 0004 Bytes", results[1].Hyve);
            Assert.Contains("68 79 76 65", results[1].Hyve);
            Assert.Contains("HyveTest", Encoding.Unicode.GetString(File.ReadAllBytes(hyveVars)), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(hyveVars);
            File.Delete(qemuVars);
        }
    }

    private const string LinuxBootRom = "/usr/share/qemu/linuxboot.bin";

    // Runs both machines through the dialog (wait for each text, then type its answer; the last
    // text ends the run) and requires the same console lines; returns QEMU's.
    private List<string> Compare(Media media, IReadOnlyList<(string After, string? Type)> dialog)
    {
        Assert.True(File.Exists(SeaBios), $"{SeaBios} is missing: install Debian's seabios package");
        Assert.True(Qemu.Path != null, Qemu.Why);
        string hyve = OnHyve(File.ReadAllBytes(SeaBios), media, dialog, out string debugLog);
        string qemu = OnQemu(SeaBios, media, dialog);
        log.WriteLine($"hyve:\n{hyve}\nqemu:\n{qemu}\nhyve's SeaBIOS debug log:\n{debugLog}");
        List<string> h = Lines(hyve), q = Lines(qemu);
        Assert.DoesNotContain(q, l => l.StartsWith("[qemu", StringComparison.Ordinal)); // the reference reached the end
        Assert.Equal(q, h);
        return q;
    }

    // The console's lines without terminal escape sequences, blank lines or carriage returns.
    private static List<string> Lines(string output) =>
        [.. Escape().Replace(output, "").Split('\n').Select(l => l.Trim('\r', ' ')).Where(l => l.Length > 0)];

    [GeneratedRegex(@"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")]
    private static partial Regex Escape();

    private static string OnHyve(byte[] rom, Media media, IReadOnlyList<(string After, string? Type)> dialog, out string debugLog,
        (string Kernel, string Initrd, string Cmdline)? linux = null)
    {
        using var console = new WatchedStream();
        using var debug = new MemoryStream();
        var options = new MachineOptions
        {
            Cpus = 1,
            MemoryBytes = 256UL << 20,
            Console = console,
            FirmwareSize = rom.Length,
            Floppy = media.Floppy,
            HardDisk = media.HardDisk,
            Cdrom = media.Cdrom,
            PciDisk = media.VirtioBlk,
            Nvram = media.Nvram,
            DebugConsole = debug,
            Backend = (memory, clock) => new VmxBackend(memory, _ => new SoftProcessor(memory, clock), "soft"),
        };
        using var machine = new Machine(options);
        machine.Load(Firmware.Load(rom));
        if (linux is var (kernel, initrd, cmdline))
            machine.HandOverKernel(File.ReadAllBytes(kernel), File.ReadAllBytes(initrd), cmdline, File.ReadAllBytes(LinuxBootRom));
        Step(0);
        MachineResult r = machine.Run(TimeSpan.FromSeconds(180));
        debugLog = Encoding.ASCII.GetString(debug.ToArray());
        return Encoding.UTF8.GetString(console.ToArray()) + (r.Message != null || r.Stop == MachineStop.Timeout ? $"\n[hyve: {r.Stop}: {r.Message}]\n" : "");

        // After the last step the guest ends the run (a last step without text stops it).
        void Step(int k)
        {
            if (k < dialog.Count)
                Watch(k);
        }

        void Watch(int k) => console.Watch(dialog[k].After, () =>
        {
            if (dialog[k].Type is not { } text)
            {
                machine.Stop(MachineStop.PowerOff);
                return;
            }
            foreach (byte b in Encoding.ASCII.GetBytes(text))
                machine.Type(b);
            Step(k + 1);
        });
    }

    // QEMU's pc machine with the same firmware and drives, no other devices, the console on a
    // serial line (-nographic, which tells SeaBIOS through fw_cfg). QEMU's local APICs bring a
    // paravirtual option ROM (kvmvapic.bin) that SeaBIOS runs as a legacy option ROM, which puts
    // "Hard Disk" first; Hyve has no such ROM, so it is off.
    private static string OnQemu(string rom, Media media, IReadOnlyList<(string After, string? Type)> dialog,
        (string Kernel, string Initrd, string Cmdline)? linux = null)
    {
        var args = new List<string> { "-accel", "tcg", "-machine", "pc", "-nodefaults", "-nographic", "-serial", "stdio", "-m", "256",
            "-no-reboot", "-global", "apic-common.vapic=off" };
        if (media.Nvram != null)
            args.AddRange(["-drive", $"if=pflash,format=raw,unit=0,file={rom},readonly=on", "-drive", $"if=pflash,format=raw,unit=1,file={media.Nvram}"]);
        else
            args.AddRange(["-bios", rom]);
        if (linux is var (k, i, c))
            args.AddRange(["-kernel", k, "-initrd", i, "-append", c]);
        if (media.Floppy != null)
            args.AddRange(["-drive", $"if=floppy,file={media.Floppy},format=raw,readonly=on"]);
        if (media.HardDisk != null)
            args.AddRange(["-drive", $"if=ide,index=0,file={media.HardDisk},format=raw"]);
        if (media.Cdrom != null)
            args.AddRange(["-drive", $"if=ide,index=2,media=cdrom,file={media.Cdrom},format=raw,readonly=on"]);
        if (media.VirtioBlk != null)
            args.AddRange(["-drive", $"if=none,id=vd0,file={media.VirtioBlk},format=raw",
                "-device", "virtio-blk-pci,drive=vd0,disable-legacy=on,disable-modern=off,addr=3"]);
        ProcessStartInfo psi = Qemu.StartInfo(args);
        using Process p = Process.Start(psi)!;
        var output = new StringBuilder();
        int step = 0, scanned = 0;
        var done = new System.Threading.ManualResetEventSlim();
        var reader = new System.Threading.Thread(() =>
        {
            var buf = new char[256];
            int n;
            while ((n = p.StandardOutput.Read(buf, 0, buf.Length)) > 0)
            {
                lock (output)
                {
                    output.Append(buf, 0, n);
                    string text = output.ToString(scanned, output.Length - scanned);
                    int at;
                    while (step < dialog.Count && (at = text.IndexOf(dialog[step].After, StringComparison.Ordinal)) >= 0)
                    {
                        scanned += at + dialog[step].After.Length;
                        text = output.ToString(scanned, output.Length - scanned);
                        if (dialog[step].Type is { } typed)
                        {
                            p.StandardInput.Write(typed);
                            p.StandardInput.Flush();
                        }
                        if (++step == dialog.Count)
                            done.Set();
                    }
                }
            }
        })
        { IsBackground = true };
        reader.Start();
        bool ended = done.Wait(TimeSpan.FromSeconds(180));
        // A dialog whose last step types something runs on until the guest ends it.
        if (ended && dialog[^1].Type != null)
            ended = p.WaitForExit(TimeSpan.FromSeconds(180));
        p.Kill(true);
        p.WaitForExit();
        reader.Join();
        lock (output)
            return output + (ended ? "" : "\n[qemu: timed out]\n");
    }
}
