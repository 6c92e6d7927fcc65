// Hyve's ACPI tables for firmware to install, as QEMU hands its own to SeaBIOS and OVMF: the
// tables in fw_cfg's etc/acpi/tables and the RSDP in etc/acpi/rsdp, laid out from address 0
// so every pointer between them holds an offset, and etc/table-loader, the script that has the
// firmware allocate both (the RSDP in the F segment, where operating systems search for it),
// add the tables' address to each pointer and fix each checksum.
using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;

namespace Hyve.Boot;

/// <summary>The ACPI files a firmware's table loader installs.</summary>
public static class FirmwareAcpi
{
    /// <summary>The fw_cfg file names.</summary>
    public const string Tables = "etc/acpi/tables", Rsdp = "etc/acpi/rsdp", Loader = "etc/table-loader";

    private const uint Allocate = 1, AddPointer = 2, AddChecksum = 3;
    private const byte ZoneHigh = 1, ZoneFSeg = 2;
    private const int EntrySize = 128, NameSize = 56;

    /// <summary>The three files for a machine with <paramref name="cpus"/> vCPUs whose PM1a block
    /// is at <paramref name="pmBase"/>, with <paramref name="ramBytes"/> of RAM (0: as much as fits
    /// below the PCI hole).</summary>
    public static (byte[] Tables, byte[] Rsdp, byte[] Loader) Files(int cpus, ushort pmBase, ulong ramBytes = 0)
    {
        byte[] tables = AcpiTables.Build(0, cpus, out AcpiTables.Layout at, pmBase, ramBytes);
        byte[] rsdp = tables[..36];
        // The checksums the loader computes start at zero: OVMF stores the sum of the range
        // negated (the old checksum byte included), SeaBIOS subtracts it from the byte.
        tables[at.Xsdt + 9] = 0;
        tables[at.Fadt + 9] = 0;
        rsdp[8] = 0;
        rsdp[32] = 0;
        var script = new List<byte>();
        Command(script, Allocate, e =>
        {
            Name(e, 4, Tables);
            BinaryPrimitives.WriteUInt32LittleEndian(e[60..], 64);
            e[64] = ZoneHigh;
        });
        Command(script, Allocate, e =>
        {
            Name(e, 4, Rsdp);
            BinaryPrimitives.WriteUInt32LittleEndian(e[60..], 16);
            e[64] = ZoneFSeg;
        });
        Pointer(script, Rsdp, 24, 8);                    // RSDP -> XSDT
        for (int k = 0; k < (at.XsdtLength - 36) / 8; k++)
            Pointer(script, Tables, at.Xsdt + 36 + 8 * k, 8); // XSDT -> MADT, FADT
        Pointer(script, Tables, at.Fadt + 36, 4);        // FADT -> FACS
        Pointer(script, Tables, at.Fadt + 40, 4);        // FADT -> DSDT
        Pointer(script, Tables, at.Fadt + 140, 8);       // FADT -> DSDT (64-bit)
        Checksum(script, Tables, at.Xsdt, at.XsdtLength);
        Checksum(script, Tables, at.Fadt, BinaryPrimitives.ReadInt32LittleEndian(tables.AsSpan(at.Fadt + 4)));
        Checksum(script, Rsdp, 0, 20, result: 8);        // the ACPI 1.0 checksum, then the extended one
        Checksum(script, Rsdp, 0, 36, result: 32);
        return (tables, rsdp, [.. script]);
    }

    private static void Command(List<byte> script, uint command, SpanAction fill)
    {
        var e = new byte[EntrySize];
        BinaryPrimitives.WriteUInt32LittleEndian(e, command);
        fill(e);
        script.AddRange(e);
    }

    private delegate void SpanAction(Span<byte> entry);

    private static void Name(Span<byte> entry, int at, string name) => Encoding.ASCII.GetBytes(name, entry.Slice(at, NameSize));

    // The size bytes at offset in file hold an offset into the tables; the loader adds their address.
    private static void Pointer(List<byte> script, string file, int offset, byte size) => Command(script, AddPointer, e =>
    {
        Name(e, 4, file);
        Name(e, 4 + NameSize, Tables);
        BinaryPrimitives.WriteUInt32LittleEndian(e[(4 + 2 * NameSize)..], (uint)offset);
        e[8 + 2 * NameSize] = size;
    });

    // The table at start (its checksum byte at start + 9 unless given) sums to zero again.
    private static void Checksum(List<byte> script, string file, int start, int length, int result = -1) => Command(script, AddChecksum, e =>
    {
        Name(e, 4, file);
        BinaryPrimitives.WriteUInt32LittleEndian(e[(4 + NameSize)..], (uint)(result >= 0 ? result : start + 9));
        BinaryPrimitives.WriteUInt32LittleEndian(e[(8 + NameSize)..], (uint)start);
        BinaryPrimitives.WriteUInt32LittleEndian(e[(12 + NameSize)..], (uint)length);
    });
}
