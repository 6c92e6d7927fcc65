// QEMU's test devices and fw_cfg, the i8042 and power control, and the MMIO bus, as register
// models: what a guest written for QEMU sees through each port and address.
using System;
using System.Collections.Generic;
using System.Text;
using Hyve.Vmm;
using Hyve.Vmm.Emulation;
using Xunit;

namespace Hyve.Devices.Tests;

public sealed class TestDeviceTests
{
    private sealed class Memory(int size) : IMmioHandler
    {
        public byte[] Bytes { get; } = new byte[size];

        public ulong Read(ulong offset, int bytes) => Bytes[offset] | ((ulong)bytes << 56);

        public void Write(ulong offset, int bytes, ulong value) => Bytes[offset] = (byte)value;
    }

    [Fact]
    public void MmioBusRoutesByRangeAndAnswersNothingWithAllOnes()
    {
        var bus = new MmioBus();
        var a = new Memory(0x1000);
        var b = new Memory(0x10);
        bus.Register(0xFF00_0000, 0x1000, a);
        bus.Register(0xFE00_0000, 0x10, b);
        bus.Handle(new MmioAccess(0xFF00_0010, 1, true, 0x42));
        Assert.Equal(0x42, a.Bytes[0x10]);
        Assert.Equal(0x0400_0000_0000_0042UL, bus.Handle(new MmioAccess(0xFF00_0010, 4, false, 0)).Data);
        bus.Handle(new MmioAccess(0xFE00_000F, 1, true, 7));
        Assert.Equal(7, b.Bytes[15]);
        Assert.Equal(0xFFFFUL, bus.Handle(new MmioAccess(0xFE00_0010, 2, false, 0)).Data);
        Assert.Equal(ulong.MaxValue, bus.Handle(new MmioAccess(0x1000, 8, false, 0)).Data);
        bus.Handle(new MmioAccess(0x1000, 4, true, 1));
        Assert.Equal(2, bus.UnclaimedReads);
        Assert.Equal(1, bus.UnclaimedWrites);
        Assert.Throws<System.ArgumentException>(() => bus.Register(0xFF00_0FFF, 2, a));
    }

    [Fact]
    public void PcTestDevLatchKeepsEachByteWhereItWasWritten()
    {
        var dev = new PcTestDev((_, _) => { });
        dev.Latch.Write(0, 4, 0x1122_3344);
        dev.Latch.Write(2, 2, 0xAABB);
        Assert.Equal(0xAABB_3344u, dev.LatchValue);
        Assert.Equal(0xBBu, dev.Latch.Read(2, 1));
        Assert.Equal(0xAABBu, dev.Latch.Read(2, 2));
        // The byte view takes wider accesses one byte at a time at successive offsets.
        dev.ByteLatch.Write(0, 4, 0x0102_0304);
        Assert.Equal(0x0102_0304u, dev.LatchValue);
        Assert.Equal(0x0304u, dev.ByteLatch.Read(0, 2));
    }

    [Fact]
    public void PcTestDevRaisesAndLowersInterruptLines()
    {
        var lines = new List<(int, bool)>();
        var dev = new PcTestDev((l, v) => lines.Add((l, v)));
        dev.Irq.Write(4, 1, 1);
        dev.Irq.Write(23, 1, 0);
        Assert.Equal([(4, true), (23, false)], lines);
    }

    [Fact]
    public void PcTestDevMemoryReadsBackWhatWasWritten()
    {
        var dev = new PcTestDev((_, _) => { });
        dev.Memory.Write(0x10, 8, 0x0807_0605_0403_0201);
        Assert.Equal(0x0807_0605_0403_0201UL, dev.Memory.Read(0x10, 8));
        Assert.Equal(0x0403UL, dev.Memory.Read(0x12, 2));
        dev.Memory.Write(0x11, 1, 0xFF);
        Assert.Equal(0x0403_FF01UL, dev.Memory.Read(0x10, 4));
        dev.Memory.Write(PcTestDev.MemorySize - 2, 4, 0xAABB_CCDD); // clipped at the end
        Assert.Equal(0xCCDDUL, dev.Memory.Read(PcTestDev.MemorySize - 2, 4));
    }

    [Fact]
    public void DebugExitReportsQemusStatusConvention()
    {
        int status = -1;
        var dev = new DebugExit(s => status = s);
        dev.Write(0, 4, 0);
        Assert.Equal(1, status);
        dev.Write(0, 1, 0x21);
        Assert.Equal(0x43, status);
    }

    [Fact]
    public void FwCfgStreamsItemsFromTheSelectedKey()
    {
        var fw = new FwCfg(256UL << 20, 4);
        fw.Write(0, 2, FwCfg.Signature);
        var sig = new byte[4];
        for (int i = 0; i < 4; i++)
            sig[i] = (byte)fw.Read(1, 1);
        Assert.Equal("QEMU", Encoding.ASCII.GetString(sig));
        Assert.Equal(0u, fw.Read(1, 1)); // past the end
        fw.Write(0, 2, FwCfg.CpuCount);
        Assert.Equal(4u, fw.Read(1, 2));
        fw.Write(0, 2, FwCfg.RamSize);
        Assert.Equal((256u << 20) & 0xFFFF_FFFF, fw.Read(1, 4));
        Assert.Equal(0u, fw.Read(1, 4));
        fw.Write(0, 2, FwCfg.Id);
        Assert.Equal(1u, fw.Read(1, 1));
        fw.Write(0, 2, 0x1234);         // an unknown key reads as zeros
        Assert.Equal(0u, fw.Read(1, 4));
        Assert.Equal(0x1234u, fw.Read(0, 2));
    }

    [Fact]
    public void FwCfgListsFilesAsQemuDoes()
    {
        // The directory: a big-endian count, then per file its big-endian size, key, 2 reserved
        // bytes and a 56-byte name; the file's bytes under its key.
        var fw = new FwCfg(256UL << 20, 1);
        fw.Write(0, 2, FwCfg.FileDir);
        Assert.Equal(0u, fw.Read(1, 4));
        fw.AddFile("etc/e820", FwCfg.E820(Hyve.Boot.MemoryMap.Pc(4UL << 30)));
        fw.AddFile("etc/boot-fail-wait", BitConverter.GetBytes(-1));
        fw.Write(0, 2, FwCfg.FileDir);
        var dir = new byte[4 + 2 * 64];
        for (int i = 0; i < dir.Length; i++)
            dir[i] = (byte)fw.Read(1, 1);
        Assert.Equal(2u, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(dir));
        Assert.Equal(40u, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(dir.AsSpan(4))); // two e820 entries
        ushort key = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(dir.AsSpan(8));
        Assert.Equal(FwCfg.FirstFile, key);
        Assert.Equal("etc/e820", Encoding.ASCII.GetString(dir, 12, 56).TrimEnd('\0'));
        Assert.Equal("etc/boot-fail-wait", Encoding.ASCII.GetString(dir, 12 + 64, 56).TrimEnd('\0'));
        // 4 GiB of RAM: 3 GiB below the device window, 1 GiB at 4 GiB.
        fw.Write(0, 2, key);
        var e820 = new byte[40];
        for (int i = 0; i < 40; i++)
            e820[i] = (byte)fw.Read(1, 1);
        Assert.Equal(0UL, BitConverter.ToUInt64(e820, 0));
        Assert.Equal(0xC000_0000UL, BitConverter.ToUInt64(e820, 8));
        Assert.Equal(1u, BitConverter.ToUInt32(e820, 16));
        Assert.Equal(0x1_0000_0000UL, BitConverter.ToUInt64(e820, 20));
        Assert.Equal(0x4000_0000UL, BitConverter.ToUInt64(e820, 28));
        fw.Write(0, 2, FwCfg.NoGraphic);
        Assert.Equal(1u, fw.Read(1, 2)); // the console is a serial line
        Assert.Throws<ArgumentException>(() => fw.AddFile(new string('x', 56), []));
    }

    [Fact]
    public void AFileBuiltOnSelectionIsMadeAgainEachTimeItIsSelected()
    {
        // As QEMU's ACPI tables: the bytes reflect what the firmware set up before reading them.
        var fw = new FwCfg(256UL << 20, 1);
        byte value = 1;
        fw.AddFile("etc/acpi/tables", () => [value, 0xAA]);
        fw.Write(0, 2, FwCfg.FirstFile);
        Assert.Equal(0xAA01u, fw.Read(1, 2));
        value = 7;
        Assert.Equal(0u, fw.Read(1, 1));            // the selected copy stays until the next selection
        fw.Write(0, 2, FwCfg.FirstFile);
        Assert.Equal(0xAA07u, fw.Read(1, 2));
        var grown = new FwCfg(256UL << 20, 1);
        int length = 2;
        grown.AddFile("etc/acpi/tables", () => new byte[length]);
        length = 3;                                 // the directory says 2: a host bug, stopped at once
        Assert.Throws<InvalidOperationException>(() => grown.Write(0, 2, FwCfg.FirstFile));
    }

    [Fact]
    public void PortA92KeepsA20AndResetsOnARisingBit0()
    {
        var stops = new List<SuspendReason>();
        var port = new Hyve.Devices.Chipset.SystemControlPortA(stops.Add);
        Assert.Equal(0x02u, port.Read(0, 1));     // A20 on
        port.Write(0, 1, 0x00);                   // A20 off: recorded
        Assert.Equal(0x00u, port.Read(0, 1));
        Assert.Empty(stops);
        port.Write(0, 1, 0x03);                   // bit 0 rises: reset
        Assert.Equal([SuspendReason.Reset], stops);
        port.Write(0, 1, 0x03);                   // still set: no second reset
        Assert.Single(stops);
    }

    [Fact]
    public void DebugConsoleAnswersE9AndLogsWrites()
    {
        using var log = new System.IO.MemoryStream();
        var con = new DebugConsole(log);
        Assert.Equal(0xE9u, con.Read(0, 1));
        foreach (char c in "ok\n")
            con.Write(0, 1, c);
        Assert.Equal("ok\n", Encoding.ASCII.GetString(log.ToArray()));
        new DebugConsole(null).Write(0, 1, 'x'); // no log: dropped
    }

    [Fact]
    public void I8042PassesSelfTestAndResetsThroughPulse()
    {
        var stops = new List<SuspendReason>();
        var kbc = new I8042(stops.Add);
        var bus = new PortBus();
        kbc.Register(bus);
        bus.Handle(new InoutAccess(0x64, 1, false, 0xAA));
        Assert.Equal(1u, bus.Handle(new InoutAccess(0x64, 1, true, 0)).Eax & 1);
        Assert.Equal(0x55u, bus.Handle(new InoutAccess(0x60, 1, true, 0)).Eax);
        Assert.Equal(0u, bus.Handle(new InoutAccess(0x64, 1, true, 0)).Eax & 1);
        Assert.Equal(0x10u, bus.Handle(new InoutAccess(0x64, 1, true, 0)).Eax & 0x10); // no keylock
        bus.Handle(new InoutAccess(0x64, 1, false, 0x60)); // write the command byte
        bus.Handle(new InoutAccess(0x60, 1, false, 0x47));
        bus.Handle(new InoutAccess(0x64, 1, false, 0x20));
        Assert.Equal(0x47u, bus.Handle(new InoutAccess(0x60, 1, true, 0)).Eax);
        Assert.Empty(stops);
        bus.Handle(new InoutAccess(0x64, 1, false, 0xFE));
        Assert.Equal([SuspendReason.Reset], stops);
    }

    [Fact]
    public void PowerControlPowersOffOnS5AndResetsThroughCf9()
    {
        var stops = new List<SuspendReason>();
        var pm = new PowerControl(stops.Add);
        var bus = new PortBus();
        pm.Register(bus);
        bus.Register(PowerControl.PmBase, 6, pm); // where the PIIX4 function places it for a direct boot
        bus.Handle(new InoutAccess(0x604, 2, false, 0x1400)); // sleep type 5 without SLP_EN: nothing
        bus.Handle(new InoutAccess(0x604, 2, false, 0x3400)); // SLP_EN with type 5: not S5 on this chipset
        Assert.Empty(stops);
        bus.Handle(new InoutAccess(0xCF9, 1, false, 0x02));
        Assert.Empty(stops);
        bus.Handle(new InoutAccess(0xCF9, 1, false, 0x06));
        bus.Handle(new InoutAccess(0x604, 2, false, 0x2000));
        Assert.Equal([SuspendReason.Reset, SuspendReason.PowerOff], stops);
    }
}
