// A PC assembled from the vmm and the device half: RAM laid out by the memory map, the buses,
// COM1, the i8042, power control, QEMU's test devices and fw_cfg; a loaded boot image; and the
// device half's run loop (all vCPUs in turn on one thread by default, or a host thread each)
// answering each vCPU's single requests until the guest ends the run or the host does.
using System;
using System.IO;
using System.Text;
using System.Threading;
using Hyve.Boot;
using Hyve.Devices.Chipset;
using Hyve.Devices.Pci;
using Hyve.Devices.Storage;
using Hyve.Devices.Virtio;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Verification;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.Devices;

/// <summary>How a run ended.</summary>
public enum MachineStop : byte
{
    /// <summary>Still running.</summary>
    None,
    /// <summary>The guest wrote to isa-debug-exit (<see cref="MachineResult.Status"/> carries its code).</summary>
    DebugExit,
    /// <summary>The guest powered off.</summary>
    PowerOff,
    /// <summary>The guest asked for a reset.</summary>
    Reset,
    /// <summary>Every vCPU halted with interrupts disabled (or parked): nothing can wake it.</summary>
    Halted,
    /// <summary>A vCPU triple-faulted.</summary>
    TripleFault,
    /// <summary>The host's time limit passed.</summary>
    Timeout,
    /// <summary>Something Hyve could not handle (<see cref="MachineResult.Message"/> says what).</summary>
    Error,
}

/// <summary>How a run ended, and the process exit status that reports it.</summary>
public readonly record struct MachineResult(MachineStop Stop, int Status, string? Message)
{
    /// <summary>The exit status of a run that ended this way: isa-debug-exit's (v &lt;&lt; 1) | 1,
    /// 0 for power-off and reset, 124 for a timeout, 3 for a guest halted for good, 2 for a
    /// triple fault or an internal error.</summary>
    public static int StatusOf(MachineStop stop, int debugExit) => stop switch
    {
        MachineStop.DebugExit => debugExit,
        MachineStop.PowerOff or MachineStop.Reset => 0,
        MachineStop.Timeout => 124,
        MachineStop.Halted => 3,
        _ => 2,
    };
}

/// <summary>What a machine is made of.</summary>
public sealed class MachineOptions
{
    /// <summary>vCPUs (1-255).</summary>
    public int Cpus { get; init; } = 1;

    /// <summary>The x86-64 level the vCPUs' CPUID reports (<c>--cpu-features</c>).</summary>
    public CpuLevel CpuLevel { get; init; } = CpuLevel.V2;

    /// <summary>RAM in bytes.</summary>
    public ulong MemoryBytes { get; init; } = 256UL << 20;

    /// <summary>Creates the backend over the machine's RAM and clock.</summary>
    public required Func<GuestMemory, VmClock, IBackend> Backend { get; init; }

    /// <summary>Where COM1's output goes.</summary>
    public required Stream Console { get; init; }

    /// <summary>A disk image for the virtio block device (none when null).</summary>
    public string? Disk { get; init; }

    /// <summary>A flash image for the firmware's variable store, mapped just below the firmware
    /// image (which then holds only the firmware's code), as QEMU's second pflash device is
    /// (read-write; none: the firmware keeps its variables in RAM for the run).</summary>
    public string? Nvram { get; init; }

    /// <summary>A disk image for the virtio-blk-pci function at 00:03.0, which firmware can boot
    /// from (read-write; none when null).</summary>
    public string? PciDisk { get; init; }

    /// <summary>Whether every vCPU runs on the calling thread in turn (round-robin quanta, so runs
    /// repeat exactly); otherwise each vCPU gets a host thread.</summary>
    public bool OneThread { get; init; } = true;

    /// <summary>Whether the VM's clock follows host time (a backend that runs guest code at the
    /// host's pace, KVM) rather than counting retired instructions.</summary>
    public bool HostTime { get; init; }

    /// <summary>The size of the firmware image the machine will be given (<see cref="Machine.Load"/>
    /// with a <see cref="Firmware"/> image), or 0: RAM then also backs the legacy BIOS area and
    /// the top of 4 GiB, where the chipset decodes the ROM.</summary>
    public int FirmwareSize { get; init; }

    /// <summary>A floppy image for drive A: (read-only; none: the drive is empty).</summary>
    public string? Floppy { get; init; }

    /// <summary>A hard disk image for the IDE primary master (read-write; none: no disk).</summary>
    public string? HardDisk { get; init; }

    /// <summary>Whether the IDE hard disk refuses writes.</summary>
    public bool HardDiskReadOnly { get; init; }

    /// <summary>Whether the virtio-blk-pci disk refuses writes (VIRTIO_BLK_F_RO).</summary>
    public bool PciDiskReadOnly { get; init; }

    /// <summary>A CD image for the ATAPI drive at the IDE secondary master (none: no drive).</summary>
    public string? Cdrom { get; init; }

    /// <summary>Where writes to QEMU's debug console port (0x402) go; firmware logs there (none: dropped).</summary>
    public Stream? DebugConsole { get; init; }

    /// <summary>Whether every device-memory instruction a decoding backend (KVM) completes is also
    /// emulated by the vmm and compared (<c>--verify-emulation</c>).</summary>
    public bool VerifyEmulation { get; init; }
}

/// <summary>A PC-like virtual machine.</summary>
public sealed class Machine : IDisposable
{
    private readonly Lock _devices = new();
    private readonly Stream _console;
    private readonly bool[] _haltedForGood;
    private readonly bool _oneThread;
    private readonly IBackend _backend;
    private readonly SerialInput _input;
    private int _stop;
    private int _debugStatus;
    private string? _message;

    /// <summary>Builds the machine described by <paramref name="options"/>.</summary>
    public Machine(MachineOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Map = MemoryMap.Pc(options.MemoryBytes);
        var memory = new GuestMemory();
        foreach (MemoryRange r in Map.RamRegions())
            memory.AddRam(r.Base, r.Length);
        if (options.FirmwareSize > 0)
        {
            memory.AddRam(Firmware.LegacyBase, Firmware.LegacyEnd - Firmware.LegacyBase);
            memory.AddRam(Firmware.HighBase(options.FirmwareSize), (ulong)options.FirmwareSize);
        }
        var clock = new VmClock(options.HostTime);
        _backend = options.Backend(memory, clock);
        Vm = new Vm(_backend, options.Cpus, memory, clock, options.CpuLevel);
        if (options.VerifyEmulation)
        {
            foreach (Vcpu v in Vm.Vcpus)
                v.Verifier = new AccessVerifier();
        }
        _console = options.Console;
        _oneThread = options.OneThread;
        _haltedForGood = new bool[options.Cpus];

        _input = new SerialInput(clock, _devices);
        // Every ISA interrupt source of the device half drives its line through the wired-OR,
        // so a PCI interrupt routed onto the same line does not lose or steal its level.
        IrqLines = new IsaIrqLines(Vm.SetIsaIrq);
        Com1 = new Uart16550(b => _console.WriteByte(b), IrqLines.Source(Uart16550.Com1Irq), _input.ReceiverChanged);
        _input.Uart = Com1;
        Ports.Register(Uart16550.Com1Port, 8, Com1);
        new I8042(r => Stop(ToStop(r))).Register(Ports);
        var power = new PowerControl(r => Stop(ToStop(r)));
        power.Register(Ports);
        Ports.Register(SystemControlPortA.Port, 1, new SystemControlPortA(r => Stop(ToStop(r))));
        // The PCI devices of QEMU's pc machine: the i440FX host bridge, and the PIIX3 south
        // bridge's ISA bridge, IDE controller and (PIIX4) power management. Without firmware the
        // machine starts with the PM block and IDE decoding set up as firmware leaves them.
        bool direct = options.FirmwareSize == 0;
        Pci = new PciBus(Ports, Mmio);
        Pci.Add(0, 0, new HostBridge());
        var isa = new Piix3IsaBridge(IrqLines);
        Pci.Add(1, 0, isa);
        Ide = new IdeController(
            [options.HardDisk == null ? null : new IdeDrive(options.HardDisk, cdrom: false, options.HardDiskReadOnly), null,
             options.Cdrom == null ? null : new IdeDrive(options.Cdrom, cdrom: true), null],
            IrqLines.Sources());
        Ide.Register(Ports);
        if (direct)
            Ide.EnableDecode();
        Pci.Add(1, 1, Ide);
        PowerManagement = new Piix4Pm(Ports, Vm.Devices.Ports, power, Vm.PmTimer, Hyve.Vmm.Devices.PmTimer.DefaultPort,
            direct ? PowerControl.PmBase : null);
        Pci.Add(1, 3, PowerManagement);
        Ports.Register(DebugExit.DefaultPort, 4, new DebugExit(status =>
        {
            _debugStatus = status;
            Stop(MachineStop.DebugExit);
        }));
        Action<int, bool> testLines = IrqLines.Sources();
        TestDev = new PcTestDev((line, level) =>
        {
            if (line < 16)
                testLines(line, level);
            else
                Vm.IoApic.SetPin(line, level);
        });
        TestDev.Register(Ports, Mmio);
        FwCfg = new FwCfg(options.MemoryBytes, options.Cpus);
        FwCfg.AddFile("etc/e820", FwCfg.E820(Map));
        FwCfg.AddFile("etc/boot-fail-wait", BitConverter.GetBytes(-1)); // no boot device: stop there, as QEMU asks
        // The ACPI tables firmware installs (a direct boot places its own copy in low memory),
        // made when the firmware reads them: the FADT names the PM block where the firmware put it.
        var (_, rsdp, loader) = FirmwareAcpi.Files(options.Cpus, PowerControl.PmBase, options.MemoryBytes);
        FwCfg.AddFile(FirmwareAcpi.Tables,
            () => FirmwareAcpi.Files(options.Cpus, PowerManagement.Base > 0 ? (ushort)PowerManagement.Base : PowerControl.PmBase, options.MemoryBytes).Tables);
        FwCfg.AddFile(FirmwareAcpi.Rsdp, rsdp);
        FwCfg.AddFile(FirmwareAcpi.Loader, loader);
        Ports.Register(FwCfg.DefaultPort, 2, FwCfg);
        Ports.Register(DebugConsole.DefaultPort, 1, new DebugConsole(options.DebugConsole));
        if (options.Nvram != null)
        {
            if (options.FirmwareSize == 0)
                throw new ArgumentException("a variable store needs a firmware image above it", nameof(options));
            Nvram = new CfiFlash(options.Nvram);
            Mmio.Register(Firmware.HighBase(options.FirmwareSize) - (ulong)Nvram.Size, (ulong)Nvram.Size, Nvram);
        }
        var dma = new IsaDma(memory);
        dma.Register(Ports);
        Floppy = new FloppyController(options.Floppy, writable: false, dma, IrqLines.Source(FloppyController.Irq));
        Floppy.Register(Ports);
        FillCmos(Vm.Rtc.Cmos, Map, options.Cpus, options.Floppy != null ? Floppy.CmosType : (byte)0, Ide.Drive(0));

        // virtio-mmio: the block device (with a disk) in slot 0, the entropy device in slot 1,
        // the console (sharing COM1's output) in slot 2.
        if (options.Disk != null)
        {
            Disk = new VirtioBlock(memory, options.Disk);
            AddVirtio(0, Disk);
        }
        AddVirtio(1, new VirtioRng(memory));
        AddVirtio(2, new VirtioConsole(memory, bytes => _console.Write(bytes)));
        if (options.PciDisk != null)
        {
            // As QEMU's -device virtio-blk-pci,disable-legacy=on,addr=3: INTA on PIRQ C.
            PciDisk = new VirtioBlock(memory, options.PciDisk, options.PciDiskReadOnly);
            int pirq = Piix3IsaBridge.PirqOf(PciDiskSlot, 1);
            PciDiskFunction = new VirtioPci(PciDisk, memory, Vm.SendMsi, level => isa.SetPirq(pirq, level));
            Pci.Add(PciDiskSlot, 0, PciDiskFunction);
        }
    }

    /// <summary>The firmware's variable store, when the machine has one.</summary>
    public CfiFlash? Nvram { get; }

    /// <summary>The PCI slot of the virtio-blk-pci disk.</summary>
    public const int PciDiskSlot = 3;

    /// <summary>The virtio-blk-pci disk's device and function, when the machine has one.</summary>
    public VirtioBlock? PciDisk { get; }

    /// <inheritdoc cref="PciDisk"/>
    public VirtioPci? PciDiskFunction { get; }

    /// <summary>The ISA interrupt lines, shared by the level-triggered sources on them.</summary>
    public IsaIrqLines IrqLines { get; }

    /// <summary>Where the virtio-mmio register pages start (one 4 KiB page per slot).</summary>
    public const ulong VirtioBase = 0xD000_0000;

    /// <summary>The ISA interrupt line of each virtio slot.</summary>
    public static ReadOnlySpan<int> VirtioIrqs => [5, 9, 10, 11];

    /// <summary>The floppy controller (drive A: empty unless <see cref="MachineOptions.Floppy"/>).</summary>
    public FloppyController Floppy { get; }

    /// <summary>The virtio block device, when the machine has a disk.</summary>
    public VirtioBlock? Disk { get; }

    /// <summary>The virtio devices, as Linux's virtio_mmio.device= parameters announce them.</summary>
    public string VirtioCommandLine => string.Join(' ', _virtio.ConvertAll(v => $"virtio_mmio.device=4K@0x{v.Base:x}:{v.Irq}"));

    private readonly System.Collections.Generic.List<(ulong Base, int Irq, VirtioMmio Transport)> _virtio = [];

    private void AddVirtio(int slot, IVirtioDevice device)
    {
        ulong at = VirtioBase + (ulong)slot * VirtioMmio.Size;
        int irq = VirtioIrqs[slot];
        var transport = new VirtioMmio(device, Vm.Memory, IrqLines.Source(irq));
        Mmio.Register(at, VirtioMmio.Size, transport);
        _virtio.Add((at, irq, transport));
    }

    /// <summary>The vmm's VM.</summary>
    public Vm Vm { get; }

    /// <summary>The memory map RAM was laid out from.</summary>
    public MemoryMap Map { get; }

    /// <summary>The port bus.</summary>
    public PortBus Ports { get; } = new();

    /// <summary>The MMIO bus.</summary>
    public MmioBus Mmio { get; } = new();

    /// <summary>PCI bus 0 (configuration mechanism #1) and its functions.</summary>
    public PciBus Pci { get; }

    /// <summary>The IDE controller (PCI 00:01.1).</summary>
    public IdeController Ide { get; }

    /// <summary>The PIIX4 power-management function (PCI 00:01.3), which places the ACPI PM block.</summary>
    public Piix4Pm PowerManagement { get; }

    /// <summary>COM1.</summary>
    public Uart16550 Com1 { get; }

    /// <summary>QEMU's pc-testdev.</summary>
    public PcTestDev TestDev { get; }

    /// <summary>QEMU's fw_cfg.</summary>
    public FwCfg FwCfg { get; }

    /// <summary>MSR accesses the vmm did not own, answered with #GP.</summary>
    public long UnknownMsrs { get; private set; }

    /// <summary>How the run ended so far (<see cref="MachineStop.None"/> while it runs).</summary>
    public MachineStop Stopped => (MachineStop)Volatile.Read(ref _stop);

    /// <summary>Places <paramref name="image"/> in RAM and sets the bootstrap processor up to start it.</summary>
    public void Load(BootImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        byte[] zeros = new byte[64 * 1024];
        foreach (LoadSegment s in image.Segments)
        {
            bool inRam = Vm.Memory.WriteRam(s.Address, s.Data);
            // The zero-filled tail (a kernel's bss) in pieces: it may be larger than one array.
            for (ulong at = s.Address + (ulong)s.Data.Length, left = s.ZeroBytes; inRam && left > 0;)
            {
                int n = (int)Math.Min(left, (ulong)zeros.Length);
                inRam = Vm.Memory.WriteRam(at, zeros.AsSpan(0, n));
                at += (ulong)n;
                left -= (ulong)n;
            }
            if (!inRam)
                throw new InvalidDataException($"the image's segment at 0x{s.Address:X} is not in RAM");
        }
        IBackendVcpu cpu = Vm.Vcpus[0].Cpu;
        if (image.Mode == EntryMode.Reset)
        {
            Vm.Vcpus[0].PowerOnReset();
            return;
        }
        if (image.Mode == EntryMode.Long64)
        {
            // Linux's 64-bit entry: the image's GDT and page tables, flat 64-bit code and data.
            cpu.Gdtr = new TableRegister(image.GdtBase, image.GdtLimit);
            cpu.Idtr = new TableRegister(0, 0);
            cpu.SetSegment(Register.CS, new Segment(image.CodeSelector, 0, 0xFFFF_FFFF, 0xA09B));
            foreach (Register r in (ReadOnlySpan<Register>)[Register.DS, Register.ES, Register.FS, Register.GS, Register.SS])
                cpu.SetSegment(r, new Segment(image.DataSelector, 0, 0xFFFF_FFFF, 0xC093));
            cpu.Control = new ControlState(PagingState.Cr0PE | 0x10 | PagingState.Cr0PG, 0, image.Cr3, PagingState.Cr4PAE,
                PagingState.EferLME | PagingState.EferLMA);
            cpu.Rflags = Rflags.Fixed1;
            cpu.Rip = image.Entry;
            cpu.SetGpr(6, image.Rsi);
            return;
        }
        // Multiboot's state: flat 4 GiB code and data segments (selectors as QEMU's loader uses
        // them, with a matching GDT at 0x500 so reloading them works), CR0.PE only, IF clear.
        const ulong Gdt = 0x500;
        Span<byte> gdt = stackalloc byte[32];
        gdt.Clear();
        BitConverter.TryWriteBytes(gdt[16..], 0x00CF_9B00_0000_FFFFUL);
        BitConverter.TryWriteBytes(gdt[24..], 0x00CF_9300_0000_FFFFUL);
        Vm.Memory.WriteRam(Gdt, gdt);
        cpu.Gdtr = new TableRegister(Gdt, 31);
        cpu.Idtr = new TableRegister(0, 0x3FF);
        cpu.SetSegment(Register.CS, new Segment(0x10, 0, 0xFFFF_FFFF, 0xC09B));
        foreach (Register r in (ReadOnlySpan<Register>)[Register.DS, Register.ES, Register.FS, Register.GS, Register.SS])
            cpu.SetSegment(r, new Segment(0x18, 0, 0xFFFF_FFFF, 0xC093));
        cpu.Control = new ControlState(PagingState.Cr0PE | 0x10, 0, 0, 0, 0);
        cpu.Rflags = Rflags.Fixed1;
        cpu.Rip = image.Entry;
        cpu.SetGpr(0, image.Eax);
        cpu.SetGpr(3, image.Ebx);
    }

    // The CMOS bytes a PC BIOS reads for the memory size, CPU count and boot order, as QEMU's pc
    // machine fills them: base memory (KiB), extended memory 1-64 MiB (KiB), memory from 16 MiB
    // to the device window and above 4 GiB (64 KiB units), CPUs - 1, and QEMU's default boot
    // order "cad" (hard disk, floppy, CD: 2, 1, 3) with the floppy signature check on, and
    // drive A:'s type (0: none) with the equipment byte's floppy bit, and the first hard disk's
    // type (47: user-defined) and geometry, with LBA translation where it has over 1,024 cylinders.
    private static void FillCmos(Span<byte> cmosFrom0E, MemoryMap map, int cpus, byte floppyType, IdeDrive? disk)
    {
        static void Put(Span<byte> cmos, int index, int value) => cmos[index - 0x0E] = (byte)value;
        ulong low = map.LowEnd;
        ulong extendedKiB = Math.Min((low - MemoryMap.HighMemory) >> 10, 0xFFFF);
        ulong above16M = low > (16UL << 20) ? Math.Min((low - (16UL << 20)) >> 16, 0xFFFF) : 0;
        ulong above4G = map.RamBytes > MemoryMap.DeviceWindow ? (map.RamBytes - MemoryMap.DeviceWindow) >> 16 : 0;
        Put(cmosFrom0E, 0x15, 640 & 0xFF);
        Put(cmosFrom0E, 0x16, 640 >> 8);
        Put(cmosFrom0E, 0x17, (int)extendedKiB);
        Put(cmosFrom0E, 0x18, (int)(extendedKiB >> 8));
        Put(cmosFrom0E, 0x30, (int)extendedKiB);
        Put(cmosFrom0E, 0x31, (int)(extendedKiB >> 8));
        Put(cmosFrom0E, 0x34, (int)above16M);
        Put(cmosFrom0E, 0x35, (int)(above16M >> 8));
        Put(cmosFrom0E, 0x5B, (int)above4G);
        Put(cmosFrom0E, 0x5C, (int)(above4G >> 8));
        Put(cmosFrom0E, 0x5D, (int)(above4G >> 16));
        Put(cmosFrom0E, 0x5F, cpus - 1);
        Put(cmosFrom0E, 0x3D, (1 << 4) | 2);
        Put(cmosFrom0E, 0x38, 3 << 4);
        Put(cmosFrom0E, 0x10, floppyType << 4);
        if (floppyType != 0)
            Put(cmosFrom0E, 0x14, cmosFrom0E[0x14 - 0x0E] | 0x01);
        if (disk != null)
        {
            int c = disk.Cylinders, h = disk.Heads;
            Put(cmosFrom0E, 0x12, 0xF0);
            Put(cmosFrom0E, 0x19, 47);
            Put(cmosFrom0E, 0x1B, c);
            Put(cmosFrom0E, 0x1C, c >> 8);
            Put(cmosFrom0E, 0x1D, h);
            Put(cmosFrom0E, 0x1E, 0xFF); // no write precompensation
            Put(cmosFrom0E, 0x1F, 0xFF);
            Put(cmosFrom0E, 0x20, 0xC0 | (h > 8 ? 0x08 : 0));
            Put(cmosFrom0E, 0x21, c);    // landing zone
            Put(cmosFrom0E, 0x22, c >> 8);
            Put(cmosFrom0E, 0x23, disk.SectorsPerTrack);
            Put(cmosFrom0E, 0x39, c > 1024 ? 1 : 0);
        }
    }

    /// <summary>Hands <paramref name="bzImage"/>, <paramref name="initrd"/> and <paramref name="cmdline"/>
    /// to the firmware through fw_cfg, as QEMU's -kernel does, with <paramref name="optionRom"/>
    /// (QEMU's linuxboot.bin) for the firmware to run: it loads them and starts the kernel.</summary>
    public void HandOverKernel(byte[] bzImage, byte[]? initrd, string cmdline, byte[] optionRom)
    {
        foreach (FwCfgItem item in FirmwareLinux.Items(bzImage, initrd, cmdline, Map.LowEnd))
            FwCfg.SetItem(item.Key, item.Data);
        FwCfg.AddFile("genroms/linuxboot.bin", optionRom);
    }

    /// <summary>A byte typed on COM1's terminal. It waits until the guest's driver listens and
    /// then arrives at the line's pace (<see cref="SerialInput"/>); false while
    /// <see cref="SerialInput.Capacity"/> bytes are already waiting (try again).</summary>
    public bool Type(byte value) => _input.Offer(value);

    /// <summary>Ends the run (the first reason wins) and makes every vCPU return.</summary>
    public void Stop(MachineStop why, string? message = null)
    {
        if (Interlocked.CompareExchange(ref _stop, (int)why, 0) != 0)
            return;
        _message = message;
        Vm.Suspend(why switch
        {
            MachineStop.Reset => SuspendReason.Reset,
            MachineStop.TripleFault => SuspendReason.TripleFault,
            MachineStop.Halted => SuspendReason.Halt,
            _ => SuspendReason.PowerOff,
        });
    }

    /// <summary>Runs the vCPUs (in turn on this thread, or each on its own thread when the options
    /// say so) until the guest or <paramref name="timeout"/> ends the run.</summary>
    public MachineResult Run(TimeSpan? timeout = null)
    {
        using (timeout is { } limit ? new Timer(_ => Stop(MachineStop.Timeout), null, limit, Timeout.InfiniteTimeSpan) : null)
        {
            Thread? timers = null;
            if (Vm.Clock.HostTime)
            {
                timers = new Thread(FireTimers) { Name = "timers", IsBackground = true };
                timers.Start();
            }
            if (_oneThread)
            {
                RunRoundRobin();
            }
            else
            {
                var threads = new Thread[Vm.Vcpus.Count];
                for (int i = 0; i < threads.Length; i++)
                {
                    int id = i;
                    threads[i] = new Thread(() => RunVcpu(id)) { Name = $"vcpu{id}", IsBackground = true };
                }
                foreach (Thread t in threads)
                    t.Start();
                foreach (Thread t in threads)
                    t.Join();
            }
            timers?.Join();
        }
        _console.Flush();
        MachineStop stop = Stopped;
        return new MachineResult(stop, MachineResult.StatusOf(stop, _debugStatus), _message);
    }

    // Host time: timers fall due while vCPUs run guest code, so a thread of their own fires them
    // (each fire kicks the vCPU it concerns). It sleeps until the next deadline or until a timer
    // is armed, and looks at the machine's state at least every 100 ms.
    private void FireTimers()
    {
        while (Stopped == MachineStop.None)
        {
            Vm.Clock.WaitForDeadline(TimeSpan.FromMilliseconds(100));
            Vm.Clock.FireDue();
        }
    }

    // The device half's loop for one vCPU on its own thread: answer what it asks, until the
    // machine stops.
    private void RunVcpu(int id)
    {
        Vcpu vcpu = Vm.Vcpus[id];
        VmEntry entry = VmEntry.Default;
        try
        {
            while (true)
            {
                VmExit exit = vcpu.Run(entry);
                if (!Answer(id, in exit, out entry))
                    return;
            }
        }
        catch (Exception e) when (e is VmmPanicException or VmEntryException or InvalidOperationException or NotSupportedException)
        {
            Stop(MachineStop.Error, $"vCPU {id}: {e.Message}");
        }
    }

    // Every vCPU on this thread, in turn, each for up to a quantum of instructions or until it
    // halts or parks: runs repeat exactly, whatever the host's scheduling.
    private void RunRoundRobin()
    {
        var entries = new VmEntry[Vm.Vcpus.Count];
        foreach (Vcpu v in Vm.Vcpus)
            v.Cooperative = true;
        try
        {
            while (true)
            {
                bool progressed = false;
                for (int id = 0; id < entries.Length; id++)
                {
                    Vcpu v = Vm.Vcpus[id];
                    long start = v.Cpu.Retired;
                    while (true)
                    {
                        long used = v.Cpu.Retired - start;
                        if (used >= Quantum)
                            break;
                        v.Cpu.Quantum = (uint)(Quantum - used);
                        VmExit exit = v.Run(entries[id]);
                        if (!Answer(id, in exit, out entries[id]))
                            return;
                        if (exit.Code is VmExitCode.Bogus or VmExitCode.RunState or VmExitCode.Hlt)
                            break;
                    }
                    progressed |= v.Cpu.Retired != start;
                }
                if (!progressed)
                    Thread.Sleep(1); // every vCPU is waiting (for input, or for nothing at all)
            }
        }
        catch (Exception e) when (e is VmmPanicException or VmEntryException or InvalidOperationException or NotSupportedException)
        {
            Stop(MachineStop.Error, e.Message);
        }
    }

    /// <summary>Guest instructions a vCPU runs before the next one's turn (round-robin mode).</summary>
    public const int Quantum = 50_000;

    // One exit answered. False when this vCPU's loop is over (the machine stopped).
    private bool Answer(int id, in VmExit exit, out VmEntry entry)
    {
        entry = VmEntry.Default;
        if (exit.Code is not (VmExitCode.Bogus or VmExitCode.RunState or VmExitCode.Hlt))
            Volatile.Write(ref _haltedForGood[id], false);
        switch (exit.Code)
        {
            case VmExitCode.Inout:
                lock (_devices)
                    entry = VmEntry.FulfillInout(Ports.Handle(in exit.Inout));
                return true;
            case VmExitCode.Mmio:
                lock (_devices)
                    entry = VmEntry.FulfillMmio(Mmio.Handle(in exit.Mmio));
                return true;
            case VmExitCode.Rdmsr:
            case VmExitCode.Wrmsr:
                // An MSR nobody implements: #GP, as a processor without it would raise.
                lock (_devices)
                    UnknownMsrs++;
                entry = VmEntry.FulfillMsr(0, fault: true);
                return true;
            case VmExitCode.Hlt:
                Volatile.Write(ref _haltedForGood[id], true);
                if (AllIdle())
                    Stop(MachineStop.Halted, $"every vCPU halted with interrupts disabled (vCPU {id} at 0x{exit.Rip:X})");
                return true;
            case VmExitCode.Bogus:
            case VmExitCode.RunState:
                if (Stopped == MachineStop.None && Volatile.Read(ref _haltedForGood[id]) && AllIdle())
                    Stop(MachineStop.Halted, $"every vCPU halted with interrupts disabled (vCPU {id} at 0x{exit.Rip:X})");
                return true;
            case VmExitCode.Suspended:
                Stop(ToStop(exit.Suspend));
                return false;
            case VmExitCode.InstEmul:
                Stop(MachineStop.Error, $"vCPU {id}: cannot emulate the device-memory access at 0x{exit.Rip:X} " +
                    $"(bytes {Convert.ToHexString(((ReadOnlySpan<byte>)exit.InstructionBytes)[..exit.InstructionLength])})");
                return false;
            default:
                Stop(MachineStop.Error, $"vCPU {id}: unhandled exit {exit}{Describe(Vm.Vcpus[id].Cpu, exit.Rip)}");
                return false;
        }
    }

    // The instruction at rip, for an error message: ": the instruction is xorps xmm0, xmm0".
    private string Describe(IBackendVcpu cpu, ulong rip)
    {
        ControlState c = cpu.Control;
        var paging = new PagingState(c.Cr0, c.Cr3, c.Cr4, c.Efer, cpu.GetSegment(Register.SS).Dpl);
        Segment cs = cpu.GetSegment(Register.CS);
        Bitness bits = CodeSize.Of(in paging, in cs);
        ulong la = bits == Bitness.Bits64 ? rip : (uint)(cs.Base + rip);
        Span<byte> bytes = stackalloc byte[15];
        int n = PageWalker.FetchLinear(Vm.Memory, in paging, la, bits == Bitness.Bits64, bytes);
        if (n == 0 || Hyve.X86.Decoding.Decoder.Decode(bytes[..n], bits, out Instruction insn) != DecodeStatus.Ok)
            return "";
        return $": the instruction is {Formatter.Format(in insn, rip)} ({Convert.ToHexString(bytes[..insn.Length])})";
    }

    private bool AllIdle()
    {
        for (int i = 0; i < _haltedForGood.Length; i++)
        {
            if (!Volatile.Read(ref _haltedForGood[i]) && Vm.Vcpus[i].State != RunState.Init)
                return false;
        }
        return true;
    }

    private static MachineStop ToStop(SuspendReason r) => r switch
    {
        SuspendReason.Reset => MachineStop.Reset,
        SuspendReason.TripleFault => MachineStop.TripleFault,
        SuspendReason.Halt => MachineStop.Halted,
        _ => MachineStop.PowerOff,
    };

    /// <summary>A line saying how many instructions the guest ran that the processor does not
    /// implement (each raised #UD in the guest) and the last of them; null when there were none.</summary>
    public string? UnimplementedSummary()
    {
        long count = 0;
        string? last = null;
        foreach (Vcpu v in Vm.Vcpus)
        {
            count += v.Cpu.Unimplemented;
            last = v.Cpu.LastUnimplemented ?? last;
        }
        return count == 0 ? null
            : $"the guest ran {count} instruction(s) the software CPU does not implement; each raised #UD in the guest (the last: {last})";
    }

    /// <summary>Exit counts by kind, per vCPU, and the buses' unclaimed accesses.</summary>
    public string Statistics()
    {
        var sb = new StringBuilder();
        foreach (Vcpu v in Vm.Vcpus)
        {
            sb.Append($"vcpu{v.Id}:");
            ReadOnlySpan<long> counts = v.ExitCounts;
            for (int k = 0; k < counts.Length; k++)
            {
                if (counts[k] != 0)
                    sb.Append($" {(VmExitCode)k}={counts[k]}");
            }
            sb.Append($" device-requests={v.Requests} rip=0x{v.Cpu.Rip:x}");
            if (v.DeviceFetches > 0)
                sb.Append($" device-fetches={v.DeviceFetches} (#UD)");
            if (v.Verifier is { } check)
                sb.Append($" verified={check.Verified} accesses-compared={check.Accesses} not-emulated={check.Skipped} not-found={check.Unreconstructed} kvm-deviations={check.KnownDeviations} given-up={check.GivenUp}");
            if (v.Cpu.Retired > 0)
                sb.Append($" instructions={v.Cpu.Retired}");
            if (v.Cpu.Unimplemented > 0)
                sb.Append($" unimplemented={v.Cpu.Unimplemented} (#UD; last: {v.Cpu.LastUnimplemented})");
            sb.AppendLine();
        }
        foreach (var v in _virtio)
            sb.AppendLine($"virtio at 0x{v.Base:x} (irq {v.Irq}): status 0x{v.Transport.Status:x}, malformed chains {v.Transport.Malformed}, bad register accesses {v.Transport.BadAccesses}");
        if (Disk != null)
            sb.AppendLine($"disk: {Disk.Completed} requests, {Disk.Failed} failed");
        if (PciDisk != null && PciDiskFunction != null)
            sb.AppendLine($"virtio-blk-pci at 00:{PciDiskSlot:x2}.0 (BAR4 0x{PciDiskFunction.BarAddress(VirtioPci.ConfigBar):x}): status 0x{PciDiskFunction.Status:x}, " +
                $"{PciDisk.Completed} requests, {PciDisk.Failed} failed, {PciDiskFunction.MsixSent} MSI-X messages, {PciDiskFunction.IntxRaised} INTx, " +
                $"malformed chains {PciDiskFunction.Malformed}, bad register accesses {PciDiskFunction.BadAccesses}, BAR conflicts {PciDiskFunction.BarConflicts}");
        if (Nvram != null)
            sb.AppendLine($"nvram: {Nvram.Programmed} bytes programmed, {Nvram.Erased} blocks erased, {Nvram.BadCommands} bad commands");
        foreach (var (name, channel) in (ReadOnlySpan<(string, IdeChannel)>)[("primary", Ide.Primary), ("secondary", Ide.Secondary)])
        {
            if (channel.HasDrives)
                sb.AppendLine($"ide {name}: {channel.Completed} commands, {channel.Aborted} aborted, {channel.StrayData} stray data accesses");
        }
        sb.AppendLine($"unclaimed: port reads={Ports.UnclaimedReads} port writes={Ports.UnclaimedWrites} (last 0x{Ports.LastUnclaimed:x}) " +
            $"mmio reads={Mmio.UnclaimedReads} mmio writes={Mmio.UnclaimedWrites} (last 0x{Mmio.LastUnclaimed:x}); unknown MSRs={UnknownMsrs}; uart overruns={Com1.Overruns}");
        return sb.ToString();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Disk?.Dispose();
        PciDisk?.Dispose();
        Nvram?.Dispose();
        Floppy.Dispose();
        Ide.Dispose();
        // The backend first: KVM's memory slots point into the RAM the VM frees.
        (_backend as IDisposable)?.Dispose();
        Vm.Dispose();
    }
}
