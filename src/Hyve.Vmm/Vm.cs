// A virtual machine: its guest-physical memory, vCPUs, the vmm's own devices, clock, CPUID
// policy and suspend state. The device half drives it only through Vcpu.Run.
using System;
using System.Collections.Generic;
using System.Threading;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Devices;
using Hyve.Vmm.Emulation;

namespace Hyve.Vmm;

/// <summary>The vmm's own devices: device-memory ranges and ports they own, tried before the device half.</summary>
public sealed class VmmDevices : IVmmDevices
{
    private (ulong Start, ulong Size, IMmioHandler Handler)[] _mmio = [];

    /// <summary>Ports of the vmm's devices (PIT, PIC, ELCR, RTC, PM timer, hooks).</summary>
    public PortHooks Ports { get; } = new();

    /// <summary>Gives device memory [<paramref name="start"/>, +<paramref name="size"/>) to <paramref name="handler"/>.</summary>
    public void AddMmio(ulong start, ulong size, IMmioHandler handler)
    {
        foreach (var (s, n, _) in _mmio)
        {
            if (start < s + n && s < start + size)
                throw new InvalidOperationException($"device memory at {start:X} overlaps {s:X}");
        }
        _mmio = [.. _mmio, (start, size, handler)];
    }

    /// <inheritdoc/>
    public bool TryRead(ulong gpa, int bytes, out ulong value)
    {
        foreach (var (s, n, h) in _mmio)
        {
            if (gpa - s < n)
            {
                value = h.Read(gpa - s, bytes);
                return true;
            }
        }
        value = 0;
        return false;
    }

    /// <inheritdoc/>
    public bool TryWrite(ulong gpa, int bytes, ulong value)
    {
        foreach (var (s, n, h) in _mmio)
        {
            if (gpa - s < n)
            {
                h.Write(gpa - s, bytes, value);
                return true;
            }
        }
        return false;
    }

    /// <inheritdoc/>
    public bool TryIn(ushort port, int bytes, out uint value) => Ports.TryIn(port, bytes, out value);

    /// <inheritdoc/>
    public bool TryOut(ushort port, int bytes, uint value) => Ports.TryOut(port, bytes, value);
}

/// <summary>A vmm device's register page: an offset and a sized access.</summary>
public interface IMmioHandler
{
    /// <summary>Reads <paramref name="bytes"/> at <paramref name="offset"/>.</summary>
    ulong Read(ulong offset, int bytes);

    /// <summary>Writes <paramref name="bytes"/> at <paramref name="offset"/>.</summary>
    void Write(ulong offset, int bytes, ulong value);
}

/// <summary>A virtual machine.</summary>
public sealed class Vm : IDisposable
{
    private readonly Vcpu[] _vcpus;
    private int _suspend;

    /// <summary>A VM on <paramref name="backend"/> with <paramref name="cpus"/> vCPUs and the RAM
    /// regions in <paramref name="memory"/>, whose CPUID reports <paramref name="level"/>.</summary>
    public Vm(IBackend backend, int cpus, GuestMemory memory, VmClock? clock = null, CpuLevel level = CpuLevel.V2)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (cpus is < 1 or > 255)
            throw new ArgumentOutOfRangeException(nameof(cpus), "1 to 255 vCPUs");
        Memory = memory;
        Clock = clock ?? new VmClock();
        var backendVcpus = new IBackendVcpu[cpus];
        for (int i = 0; i < cpus; i++)
            backendVcpus[i] = backend.CreateVcpu(i);
        ulong tscHz = backend.TscHz;
        Cpuid = new CpuidPolicy { Vcpus = cpus, TscHz = tscHz != 0 ? tscHz : CpuidPolicy.ClockTscHz, Level = level };
        ApicBus = new ApicBus(this);
        _vcpus = new Vcpu[cpus];
        for (int i = 0; i < cpus; i++)
        {
            backendVcpus[i].SetCpuid(Cpuid, i);
            _vcpus[i] = new Vcpu(this, i, backendVcpus[i]);
        }

        // The PC's interrupt wiring: the 8259 pair behind the BSP's LINT0, the I/O APIC on the
        // APIC bus taking its EOIs.
        Pic = new Pic8259(() => _vcpus[0].Kick());
        Pic.Register(Devices.Ports);
        _vcpus[0].Apic.ExtInt = Pic;
        IoApic = new IoApic(ApicBus);
        Devices.AddMmio(IoApic.DefaultBase, 0x1000, IoApic);
        ApicBus.LevelEoi = IoApic.EndOfInterrupt;
        Pit = new Pit8254(Clock, level => SetIsaIrq(0, level));
        Pit.Register(Devices.Ports);
        // Virtual time starts on a fixed date so runs repeat; host time starts now.
        DateTime start = Clock.HostTime ? DateTime.UtcNow : new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        Rtc = new Rtc146818(Clock, start, level => SetIsaIrq(8, level));
        Rtc.Register(Devices.Ports);
        PmTimer = new PmTimer(Clock);
        Devices.Ports.Register(Hyve.Vmm.Devices.PmTimer.DefaultPort, 4, PmTimer);
    }

    /// <summary>The RTC and CMOS RAM.</summary>
    public Rtc146818 Rtc { get; }

    /// <summary>The ACPI PM timer.</summary>
    public PmTimer PmTimer { get; }

    /// <summary>The 8254 interval timer (and port 0x61).</summary>
    public Pit8254 Pit { get; }

    /// <summary>The 8259 pair.</summary>
    public Pic8259 Pic { get; }

    /// <summary>The I/O APIC.</summary>
    public IoApic IoApic { get; }

    /// <summary>Sets ISA interrupt line <paramref name="irq"/> (0-15): to the 8259 pair and to the
    /// I/O APIC (IRQ 0 arrives on pin 2, the usual interrupt source override).</summary>
    public void SetIsaIrq(int irq, bool level)
    {
        Pic.SetIrq(irq, level);
        IoApic.SetPin(irq == 0 ? 2 : irq, level);
    }

    /// <summary>Delivers a message-signalled interrupt: the write of <paramref name="data"/> to
    /// <paramref name="address"/> (0xFEEx_xxxx) a device makes, as the SDM's MSI format reads it
    /// (address bits 19:12 the destination, bit 2 logical mode; data bits 7:0 the vector, 10:8
    /// the delivery mode, 15 level-triggered). A write elsewhere is no interrupt and is counted.</summary>
    public void SendMsi(ulong address, uint data)
    {
        if ((address >> 20) != 0xFEE)
        {
            Interlocked.Increment(ref _badMsis);
            return;
        }
        ApicBus.Deliver(null, new ApicMessage((byte)data, (DeliveryMode)((data >> 8) & 7), (address & 4) != 0,
            (uint)((address >> 12) & 0xFF), 0, (data & 0x8000) != 0));
    }

    /// <summary>Message-signalled interrupts written outside the interrupt address range.</summary>
    public long BadMsis => Interlocked.Read(ref _badMsis);

    private long _badMsis;

    /// <summary>The bus the local APICs send interrupt messages on.</summary>
    public ApicBus ApicBus { get; }

    /// <summary>Guest-physical memory.</summary>
    public GuestMemory Memory { get; }

    /// <summary>The VM's clock.</summary>
    public VmClock Clock { get; }

    /// <summary>The CPUID every vCPU answers with.</summary>
    public CpuidPolicy Cpuid { get; }

    /// <summary>The vmm's own devices.</summary>
    public VmmDevices Devices { get; } = new();


    /// <summary>The vCPUs; vCPU 0 is the bootstrap processor.</summary>
    public IReadOnlyList<Vcpu> Vcpus => _vcpus;

    /// <summary>Why the VM stopped, or <see cref="SuspendReason.None"/>.</summary>
    public SuspendReason Suspended => (SuspendReason)Volatile.Read(ref _suspend);

    /// <summary>Stops the VM (the first reason wins) and makes every vCPU return.</summary>
    public void Suspend(SuspendReason reason)
    {
        Interlocked.CompareExchange(ref _suspend, (int)reason, 0);
        foreach (Vcpu v in _vcpus)
            v.Kick();
    }

    /// <summary>Whether every vCPU but <paramref name="self"/> is halted or parked with nothing to
    /// wake it (virtual time may then jump to the next deadline). One that can take an interrupt
    /// or a SIPI is not idle: jumping then would run the clock ahead of it.</summary>
    public bool OthersIdle(Vcpu self)
    {
        foreach (Vcpu v in _vcpus)
        {
            if (v != self && v.Busy)
                return false; // it moves the clock itself, or will at its turn
        }
        return true;
    }

    /// <summary>Sends INIT to vCPU <paramref name="target"/> (from an ICR write: recorded only).</summary>
    public void SendInit(int target) => _vcpus[target].RequestInit();

    /// <summary>Sends a startup IPI with <paramref name="vector"/> to vCPU <paramref name="target"/>.</summary>
    public void SendSipi(int target, byte vector) => _vcpus[target].RequestSipi(vector);

    /// <summary>Frees guest memory.</summary>
    public void Dispose() => Memory.Dispose();
}
