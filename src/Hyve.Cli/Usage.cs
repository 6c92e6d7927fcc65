// Help text and the error type for bad command lines.
using System;

namespace Hyve.Cli;

/// <summary>The command's help text.</summary>
internal static class Usage
{
    /// <summary>The program's version (the assembly's informational version, without build metadata).</summary>
    public static string Version =>
        (System.Reflection.Assembly.GetExecutingAssembly()
            .GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false) is [System.Reflection.AssemblyInformationalVersionAttribute v, ..]
            ? v.InformationalVersion : "unknown").Split('+')[0];

    public const string Text = """
        usage: hyve <command> [options]       (hyve --version prints the version)

        commands:
          run [--firmware bios|uefi|FILE] [--kernel FILE [--initrd FILE] | --kernel FILE --load ADDR] [--cmdline STR] [--cpus N]
              [--memory MiB] [--disk FILE] [--floppy FILE] [--hda FILE] [--cdrom FILE] [--virtio-blk FILE] [--drive SPEC]... [--nvram FILE] [--no-reboot] [--backend soft|kvm] [--cpu-features v1|v2|v3] [--verify-emulation]
              [--debugcon FILE] [--timeout SECONDS] [--seed N] [--stats]
              Boot a Multiboot kernel, a Linux bzImage, a flat binary at ADDR (entered in 32-bit
              protected mode) or firmware (default: the built-in demo guest) on the software CPU (or KVM) with
              COM1 on the terminal (Ctrl-A x quits, Ctrl-A h lists the keys). 'hyve run --help'
              describes each option and the exit statuses.
          disasm --bits 16|32|64 FILE [--offset N] [--length N] [--section NAME]
              Disassemble FILE (raw bytes, or an ELF64 section with --section) in Intel syntax.
              Numbers are decimal or hex with 0x. Invalid bytes print as (bad) and decoding
              resumes at the next byte; EVEX, XOP and VEX forms outside the decoder's tables print as (vex/evex/xop).
          verify emulator [--cases N] [--seed S]
              Run N random cases (default 1000000) of the MMIO instruction emulator against this
              CPU: each instruction runs natively and through the emulator with its operand in
              device memory (sometimes split with RAM), and registers, flags, SSE registers,
              memory and the device accesses must agree. Ends with "N passed, M failed"; exits 0
              only when nothing failed. x86-64 Linux hosts only.
        """;

    public const string Run = """
        usage: hyve run [options]

        Boots a guest on a PC-like machine and connects COM1 to this terminal. On a terminal,
        keys go to the guest as they are typed (Ctrl-C too); Ctrl-A x quits, Ctrl-A h lists the
        escape keys, Ctrl-A Ctrl-A sends a Ctrl-A. Input that arrives before the guest's serial
        driver is ready waits for it.

        options:
          --kernel FILE       a Multiboot kernel, a Linux bzImage or vmlinux (64-bit boot
                              protocol), or with --load a flat binary (default: the built-in
                              demo guest)
          --initrd FILE       a Linux initial ramdisk
          --cmdline STR       the kernel command line (Linux: default console=ttyS0; the
                              virtio-mmio devices are added to it)
          --load ADDR         place the flat binary at ADDR and enter it in 32-bit protected mode
          --firmware bios|uefi|FILE  start from the reset vector in firmware instead of a kernel:
                              bios is SeaBIOS from Debian's seabios package, uefi OVMF from
                              Debian's ovmf package (OVMF.fd, variables kept for the run), FILE any ROM
                              image (mapped to end at 4 GiB, its last 128 KiB at 0xE0000);
                              with --kernel (a bzImage), --initrd and --cmdline, the firmware
                              loads them from fw_cfg as with QEMU's -bios and -kernel
          --drive SPEC        a drive in QEMU's -drive words: FILE[,if=ide|virtio|floppy]
                              [,media=disk|cdrom][,readonly=on|off] (default if=ide,
                              media=disk, readonly=off; floppies are always read-only);
                              repeatable, one drive of each kind
          --no-reboot         with --firmware: a guest's reset request ends the run (exit status
                              0) instead of restarting the machine through the firmware
          --nvram FILE        with --firmware uefi: OVMF's variable store in FILE (created from
                              Debian's OVMF_VARS.fd when missing), so UEFI variables persist
                              between runs; OVMF's code is then OVMF_CODE.fd
          --floppy FILE       drive A: of the floppy controller, read-only (a 1.44 MB, 720 KB,
                              1.2 MB or 2.88 MB raw image; with --firmware, which boots from it)
          --hda FILE          a hard disk on the IDE controller's primary channel (read-write,
                              a raw image; firmware boots from it)
          --cdrom FILE        a CD/DVD drive with FILE (an ISO image, read-only) on the IDE
                              controller's secondary channel; firmware boots from it
          --virtio-blk FILE   a virtio-blk-pci disk at PCI 00:03.0 (modern virtio, MSI-X;
                              read-write, a raw image); firmware boots from it
          --debugcon FILE     write what the guest sends to QEMU's debug console port 0x402
                              (firmware's log) to FILE
          --cpus N            vCPUs, 1 to 255 (default 1)
          --memory MiB        RAM, at least 16 and no more than the host has free (default 256)
          --disk FILE         a virtio-mmio block device over FILE (read-write)
          --backend soft|kvm  the software CPU (default) or /dev/kvm
          --cpu-features v1|v2|v3  the x86-64 level CPUID reports: v2 (default) adds SSE3, SSSE3,
                              SSE4.1, SSE4.2 and XSAVE (x87 and SSE state) to v1's SSE2; v3 adds
                              AVX, AVX2, FMA, F16C, BMI1, BMI2 and MOVBE; the software CPU runs
                              exactly what is reported
          --verify-emulation  with --backend kvm: emulate each device-memory instruction KVM
                              completes a second time and stop on any difference
          --timeout SECONDS   stop the guest after this long (at most 4294967)
          --seed N            the seed of RDRAND's and RDSEED's values on the software CPU, so
                              a run repeats exactly (default: from the host; --stats shows it)
          --stats             print exits per kind and vCPU, and unclaimed accesses, at the end
          -h, --help          this text

        exit status: (v << 1) | 1 for a guest's write of v to isa-debug-exit (port 0xF4); 0 for
        power-off, a reset request or Ctrl-A x; 124 when --timeout passed; 3 when every vCPU
        halted with interrupts disabled; 2 for a triple fault, an internal error or a bad
        command line; 1 for a file that cannot be used; 128 + N when stopped by signal N.
        """;
}

/// <summary>A malformed command line: reported in one line with exit status 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
