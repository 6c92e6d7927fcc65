// What firmware is handed for a Linux kernel (QEMU's fw_cfg kernel items) and the table-loader
// script for the ACPI tables, against the boot protocol and SeaBIOS's loader format
// (hand-derived): the setup header patched, every piece at its address, each pointer and
// checksum command where the tables put them.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Xunit;

namespace Hyve.Boot.Tests;

public sealed class FirmwareLinuxTests
{
    // A bzImage-shaped file: 2 setup sectors after the boot sector, protocol 2.15, loaded high.
    private static byte[] Image()
    {
        var image = new byte[3 * 512 + 4096];
        image[0x1F1] = 2;
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(0x1FE), 0xAA55);
        "HdrS"u8.CopyTo(image.AsSpan(0x202));
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(0x206), 0x020F);
        image[0x211] = 0x01;                                                      // LOADED_HIGH
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x22C), 0x7FFF_FFFF); // initrd_addr_max
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(0x238), 2047);        // cmdline_size
        image[^1] = 0x5A;
        return image;
    }

    [Fact]
    public void TheSetupHeaderIsPatchedAndEveryPieceHasItsAddress()
    {
        byte[] initrd = new byte[10_000];
        Dictionary<ushort, byte[]> items = FirmwareLinux.Items(Image(), initrd, "console=ttyS0", 256UL << 20).ToDictionary(i => i.Key, i => i.Data);
        uint U32(ushort key) => BinaryPrimitives.ReadUInt32LittleEndian(items[key]);
        Assert.Equal(0x1_0000u, U32(FirmwareLinux.SetupAddr));
        Assert.Equal(3u * 512, U32(FirmwareLinux.SetupSize));
        Assert.Equal(0x10_0000u, U32(FirmwareLinux.KernelAddr));
        Assert.Equal(4096u, U32(FirmwareLinux.KernelSize));
        Assert.Equal(0x5A, items[FirmwareLinux.KernelData][^1]);
        Assert.Equal(0x2_0000u, U32(FirmwareLinux.CmdlineAddr));
        Assert.Equal("console=ttyS0\0", Encoding.ASCII.GetString(items[FirmwareLinux.CmdlineData]));
        // The initrd ends below RAM's top minus the firmware's 128 KiB, page-aligned.
        uint initrdAt = U32(FirmwareLinux.InitrdAddr);
        Assert.Equal((uint)(((256UL << 20) - 0x2_0000 - 1 - 10_000) & ~0xFFFUL), initrdAt);
        byte[] setup = items[FirmwareLinux.SetupData];
        Assert.Equal(0xB0, setup[0x210]);                                                     // type_of_loader
        Assert.Equal(0x81, setup[0x211]);                                                     // LOADED_HIGH | CAN_USE_HEAP
        Assert.Equal(0x2_0000u, BinaryPrimitives.ReadUInt32LittleEndian(setup.AsSpan(0x228))); // cmd_line_ptr
        Assert.Equal((ushort)(0x2_0000 - 0x1_0000 - 0x200), BinaryPrimitives.ReadUInt16LittleEndian(setup.AsSpan(0x224)));
        Assert.Equal(initrdAt, BinaryPrimitives.ReadUInt32LittleEndian(setup.AsSpan(0x218)));
        Assert.Equal(10_000u, BinaryPrimitives.ReadUInt32LittleEndian(setup.AsSpan(0x21C)));
    }

    [Fact]
    public void KernelsFirmwareCannotLoadAreRefused()
    {
        Assert.Throws<InvalidDataException>(() => FirmwareLinux.Items(new byte[8192], null, "", 256UL << 20));
        byte[] old = Image();
        BinaryPrimitives.WriteUInt16LittleEndian(old.AsSpan(0x206), 0x0201);
        Assert.Throws<InvalidDataException>(() => FirmwareLinux.Items(old, null, "", 256UL << 20));
        Assert.Throws<InvalidDataException>(() => FirmwareLinux.Items(Image(), null, new string('x', 2048), 256UL << 20));
    }

    [Fact]
    public void TheTableLoaderAllocatesPatchesAndChecksums()
    {
        var (tables, rsdp, loader) = FirmwareAcpi.Files(2, 0x600);
        Assert.Equal(0, loader.Length % 128);
        var commands = new List<(uint Command, string File, string Other, uint A, uint B)>();
        for (int at = 0; at < loader.Length; at += 128)
        {
            ReadOnlySpan<byte> e = loader.AsSpan(at, 128);
            uint cmd = BinaryPrimitives.ReadUInt32LittleEndian(e);
            string file = Encoding.ASCII.GetString(e.Slice(4, 56)).TrimEnd('\0');
            commands.Add(cmd switch
            {
                1 => (cmd, file, "", BinaryPrimitives.ReadUInt32LittleEndian(e[60..]), e[64]),             // align, zone
                2 => (cmd, file, Encoding.ASCII.GetString(e.Slice(60, 56)).TrimEnd('\0'),
                    BinaryPrimitives.ReadUInt32LittleEndian(e[116..]), e[120]),                                // offset, size
                _ => (cmd, file, "", BinaryPrimitives.ReadUInt32LittleEndian(e[60..]), BinaryPrimitives.ReadUInt32LittleEndian(e[64..])),
            });
        }
        Assert.Equal((1u, "etc/acpi/tables", "", 64u, 1u), commands[0]); // the high zone
        Assert.Equal((1u, "etc/acpi/rsdp", "", 16u, 2u), commands[1]);   // the F segment
        Assert.Equal((2u, "etc/acpi/rsdp", "etc/acpi/tables", 24u, 8u), commands[2]);
        // Each pointer's current value is an offset into the tables, at a table's start.
        foreach (var c in commands.Where(c => c.Command == 2))
        {
            byte[] file = c.File == "etc/acpi/rsdp" ? rsdp : tables;
            ulong value = c.B == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan((int)c.A)) : BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan((int)c.A));
            Assert.Contains(Encoding.ASCII.GetString(tables, (int)value, 4), new[] { "XSDT", "APIC", "FACP", "FACS", "DSDT" });
        }
        Assert.Equal(4, commands.Count(c => c.Command == 3));
        Assert.Equal("RSD PTR ", Encoding.ASCII.GetString(rsdp, 0, 8));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EitherFirmwaresLoaderLeavesEveryTableSummingToZero(bool ovmf)
    {
        // SeaBIOS subtracts the range's sum from the checksum byte; OVMF stores the range's sum
        // negated, the byte's old value included, so it is right only if that byte starts at 0.
        // Run the script both ways with the tables at 0x7000_0000 and the RSDP at 0xF0000, and
        // follow the pointers from the RSDP: every table sums to zero, and the FADT names the
        // PM block the firmware placed.
        var (tables, rsdp, loader) = FirmwareAcpi.Files(2, 0xB000);
        var files = new Dictionary<string, (byte[] Data, ulong Base)> { ["etc/acpi/tables"] = (tables, 0x7000_0000), ["etc/acpi/rsdp"] = (rsdp, 0xF0000) };
        for (int at = 0; at < loader.Length; at += 128)
        {
            ReadOnlySpan<byte> e = loader.AsSpan(at, 128);
            string name = Encoding.ASCII.GetString(e.Slice(4, 56)).TrimEnd('\0');
            switch (BinaryPrimitives.ReadUInt32LittleEndian(e))
            {
                case 2:
                    {
                        byte[] f = files[name].Data;
                        ulong pointee = files[Encoding.ASCII.GetString(e.Slice(60, 56)).TrimEnd('\0')].Base;
                        int offset = (int)BinaryPrimitives.ReadUInt32LittleEndian(e[116..]);
                        if (e[120] == 8)
                            BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(offset), BinaryPrimitives.ReadUInt64LittleEndian(f.AsSpan(offset)) + pointee);
                        else
                            BinaryPrimitives.WriteUInt32LittleEndian(f.AsSpan(offset), BinaryPrimitives.ReadUInt32LittleEndian(f.AsSpan(offset)) + (uint)pointee);
                        break;
                    }
                case 3:
                    {
                        byte[] f = files[name].Data;
                        int result = (int)BinaryPrimitives.ReadUInt32LittleEndian(e[60..]);
                        int start = (int)BinaryPrimitives.ReadUInt32LittleEndian(e[64..]);
                        int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(e[68..]);
                        byte sum = 0;
                        foreach (byte b in f.AsSpan(start, length))
                            sum += b;
                        f[result] = ovmf ? (byte)-sum : (byte)(f[result] - sum);
                        break;
                    }
            }
        }
        static byte Sum(ReadOnlySpan<byte> bytes)
        {
            byte s = 0;
            foreach (byte b in bytes)
                s += b;
            return s;
        }
        Assert.Equal(0, Sum(rsdp.AsSpan(0, 20)));
        Assert.Equal(0, Sum(rsdp.AsSpan(0, 36)));
        ReadOnlySpan<byte> Table(ulong address)
        {
            int offset = (int)(address - 0x7000_0000);
            return tables.AsSpan(offset, BinaryPrimitives.ReadInt32LittleEndian(tables.AsSpan(offset + 4)));
        }
        ReadOnlySpan<byte> xsdt = Table(BinaryPrimitives.ReadUInt64LittleEndian(rsdp.AsSpan(24)));
        Assert.Equal(0, Sum(xsdt));
        var seen = new List<string>();
        for (int k = 36; k < xsdt.Length; k += 8)
        {
            ReadOnlySpan<byte> t = Table(BinaryPrimitives.ReadUInt64LittleEndian(xsdt[k..]));
            Assert.Equal(0, Sum(t));
            string signature = Encoding.ASCII.GetString(t[..4]);
            seen.Add(signature);
            if (signature == "FACP")
            {
                Assert.Equal(0, Sum(Table(BinaryPrimitives.ReadUInt64LittleEndian(t[140..]))));      // the DSDT
                Assert.Equal(0xB000u, BinaryPrimitives.ReadUInt32LittleEndian(t[56..]));          // PM1a_EVT_BLK
                Assert.Equal(0xB004u, BinaryPrimitives.ReadUInt32LittleEndian(t[64..]));          // PM1a_CNT_BLK
                Assert.Equal(0xB004UL, BinaryPrimitives.ReadUInt64LittleEndian(t[176..]));        // X_PM1a_CNT_BLK's address
            }
        }
        Assert.Equal(["APIC", "FACP"], seen);
    }
}
