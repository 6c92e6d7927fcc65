// Linux for firmware to load, handed over as QEMU hands it over with -bios and -kernel: fw_cfg
// items holding the bzImage's real-mode setup (its header patched with the loader type, the
// command line's address, the initrd's place and the heap's end), its protected-mode kernel,
// the initrd and the command line, each with the address it goes to. QEMU's linuxboot option
// ROM, which the firmware runs from fw_cfg's genroms/ directory, copies them there and enters
// the setup code in real mode (the boot protocol's 16-bit entry).
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Hyve.Boot;

/// <summary>One fw_cfg item: a numbered key and its bytes.</summary>
public sealed record FwCfgItem(ushort Key, byte[] Data);

/// <summary>The fw_cfg items of a Linux kernel for firmware to boot.</summary>
public static class FirmwareLinux
{
    /// <summary>fw_cfg's kernel keys (QEMU's numbering).</summary>
    public const ushort KernelAddr = 0x07, KernelSize = 0x08, InitrdAddr = 0x0A, InitrdSize = 0x0B, KernelData = 0x11,
        InitrdData = 0x12, CmdlineAddr = 0x13, CmdlineSize = 0x14, CmdlineData = 0x15, SetupAddr = 0x16, SetupSize = 0x17,
        SetupData = 0x18;

    // Where QEMU puts a "high and recent" kernel's pieces (boot protocol 2.02 and up).
    private const uint RealModeAddress = 0x1_0000, CommandLineAddress = 0x2_0000, ProtectedModeAddress = 0x10_0000;

    // The top of low RAM the firmware keeps for its ACPI tables (QEMU's margin).
    private const ulong FirmwareReserve = 0x2_0000;

    /// <summary>The items for <paramref name="image"/> (a bzImage), <paramref name="initrd"/> and
    /// <paramref name="cmdline"/> on a machine with <paramref name="ramBelow4G"/> bytes of RAM
    /// below 4 GiB.</summary>
    public static IReadOnlyList<FwCfgItem> Items(byte[] image, byte[]? initrd, string cmdline, ulong ramBelow4G)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(cmdline);
        if (!LinuxBoot.IsBzImage(image))
            throw new InvalidDataException("firmware boots a Linux bzImage (this is not one)");
        ushort protocol = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(0x206));
        if (protocol < 0x202 || (image[0x211] & 0x01) == 0)
            throw new InvalidDataException($"boot protocol {protocol >> 8}.{protocol & 0xFF} is too old to be loaded high by firmware (2.02 needed)");
        int setupSectors = image[0x1F1] == 0 ? 4 : image[0x1F1];
        int setupSize = (setupSectors + 1) * 512;
        if (setupSize >= image.Length)
            throw new InvalidDataException($"the setup code ({setupSize} bytes) fills the whole image");
        byte[] command = [.. Encoding.ASCII.GetBytes(cmdline), 0];
        uint maxCommand = protocol >= 0x206 ? BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x238)) : 255;
        if (command.Length - 1 > maxCommand)
            throw new InvalidDataException($"the command line has {command.Length - 1} bytes; the kernel takes at most {maxCommand}");

        byte[] setup = image[..setupSize];
        setup[0x210] = 0xB0; // type_of_loader: QEMU's
        BinaryPrimitives.WriteUInt32LittleEndian(setup.AsSpan(0x228), CommandLineAddress);
        BinaryPrimitives.WriteUInt16LittleEndian(setup.AsSpan(0x224), (ushort)(CommandLineAddress - RealModeAddress - 0x200));
        setup[0x211] |= 0x80; // CAN_USE_HEAP
        var items = new List<FwCfgItem>();
        if (initrd != null)
        {
            ulong max = protocol >= 0x203 ? BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x22C)) : 0x37FF_FFFF;
            max = Math.Min(max, ramBelow4G - FirmwareReserve - 1);
            if ((ulong)initrd.Length > max - ProtectedModeAddress)
                throw new InvalidDataException($"the initrd ({initrd.Length} bytes) does not fit below 0x{max:X}");
            uint at = (uint)((max - (ulong)initrd.Length) & ~0xFFFUL);
            BinaryPrimitives.WriteUInt32LittleEndian(setup.AsSpan(0x218), at);
            BinaryPrimitives.WriteUInt32LittleEndian(setup.AsSpan(0x21C), (uint)initrd.Length);
            items.Add(new(InitrdAddr, LinuxBoot.Le(at, 4)));
            items.Add(new(InitrdSize, LinuxBoot.Le((uint)initrd.Length, 4)));
            items.Add(new(InitrdData, initrd));
        }
        byte[] kernel = image[setupSize..];
        items.Add(new(SetupAddr, LinuxBoot.Le(RealModeAddress, 4)));
        items.Add(new(SetupSize, LinuxBoot.Le((uint)setup.Length, 4)));
        items.Add(new(SetupData, setup));
        items.Add(new(KernelAddr, LinuxBoot.Le(ProtectedModeAddress, 4)));
        items.Add(new(KernelSize, LinuxBoot.Le((uint)kernel.Length, 4)));
        items.Add(new(KernelData, kernel));
        items.Add(new(CmdlineAddr, LinuxBoot.Le(CommandLineAddress, 4)));
        items.Add(new(CmdlineSize, LinuxBoot.Le((uint)command.Length, 4)));
        items.Add(new(CmdlineData, command));
        return items;
    }
}
