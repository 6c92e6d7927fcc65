// The local APIC against the SDM's description: priorities (TPR/PPR), EOI and level-triggered
// EOI broadcast, the ICR (fixed, NMI, INIT, SIPI, shorthands, logical destinations), the timer
// in its three modes, the xAPIC page through instruction emulation, x2APIC MSRs and ExtINT.
using System;
using System.Collections.Generic;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Devices;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class LocalApicTests : IDisposable
{
    private readonly FakeBackend _backend = new();
    private readonly Vm _vm;

    public LocalApicTests()
    {
        _vm = _backend.NewVm(4, enableApics: true);
    }

    public void Dispose() => _vm.Dispose();

    private LocalApic Bsp => _vm.Vcpus[0].Apic;

    [Fact]
    public void IdentityRegisters()
    {
        Assert.Equal(2u << 24, _vm.Vcpus[2].Apic.ReadRegister(0x20));
        Assert.Equal(0x14u, Bsp.ReadRegister(0x30) & 0xFF);
        Assert.Equal(6u, (Bsp.ReadRegister(0x30) >> 16) & 0xFF);
        Assert.Equal(0xFFFF_FFFFu, Bsp.ReadRegister(0xE0)); // flat model after reset
    }

    [Fact]
    public void PriorityFollowsTprAndTheInServiceClass()
    {
        Bsp.Accept(0x31, level: false);
        Bsp.Accept(0x51, level: false);
        Assert.Equal(0x51, Bsp.PendingInterrupt);
        Bsp.AcceptInterrupt(0x51);
        Assert.Equal(0x50u, Bsp.ReadRegister(0xA0)); // PPR: the in-service class
        Assert.Equal(-1, Bsp.PendingInterrupt);       // 0x31 is in a lower class
        Bsp.Accept(0x52, level: false);
        Assert.Equal(-1, Bsp.PendingInterrupt);       // same class as the one in service
        Bsp.Accept(0x61, level: false);
        Assert.Equal(0x61, Bsp.PendingInterrupt);
        Bsp.AcceptInterrupt(0x61);
        Bsp.WriteRegister(0xB0, 0);                   // EOI ends 0x61 (the highest in service)
        Assert.Equal(0x50u, Bsp.ReadRegister(0xA0));
        Bsp.WriteRegister(0xB0, 0);                   // and then 0x51
        Assert.Equal(0x52, Bsp.PendingInterrupt);
        Bsp.WriteRegister(0x80, 0x60);                // TPR 0x60 holds back classes 6 and below
        Assert.Equal(-1, Bsp.PendingInterrupt);
        Assert.Equal(0x60u, Bsp.ReadRegister(0xA0));
        Bsp.WriteRegister(0x80, 0x40);
        Assert.Equal(0x52, Bsp.PendingInterrupt);
        Assert.NotEqual(0u, Bsp.ReadRegister(0x200 + 0x10 * (0x31 >> 5)) & (1u << (0x31 & 31))); // IRR bit
    }

    [Fact]
    public void LevelTriggeredEoiIsBroadcast()
    {
        var eois = new List<int>();
        _vm.ApicBus.LevelEoi = eois.Add;
        Bsp.Accept(0x70, level: true);
        Assert.NotEqual(0u, Bsp.ReadRegister(0x180 + 0x10 * (0x70 >> 5)) & (1u << (0x70 & 31))); // TMR
        Bsp.AcceptInterrupt(0x70);
        Bsp.WriteRegister(0xB0, 0);
        Assert.Equal([0x70], eois);
        Bsp.Accept(0x71, level: false);
        Bsp.AcceptInterrupt(0x71);
        Bsp.WriteRegister(0xB0, 0);
        Assert.Equal([0x70], eois); // edge: no broadcast
    }

    [Fact]
    public void IllegalVectorsSetTheErrorStatus()
    {
        Bsp.Accept(5, level: false);
        Assert.Equal(-1, Bsp.PendingInterrupt);
        Assert.Equal(0x40u, Bsp.ReadRegister(0x280));
        Bsp.WriteRegister(0x280, 0);
        Assert.Equal(0u, Bsp.ReadRegister(0x280));
    }

    [Fact]
    public void IcrDeliversFixedAndNmiByDestinationAndShorthand()
    {
        Bsp.WriteRegister(0x310, 2u << 24);
        Bsp.WriteRegister(0x300, 0x0040); // fixed, physical, vector 0x40 to APIC 2
        Assert.Equal(0x40, _vm.Vcpus[2].Apic.PendingInterrupt);
        Assert.Equal(-1, _vm.Vcpus[1].Apic.PendingInterrupt);
        Assert.Equal(0u, Bsp.ReadRegister(0x300) & (1u << 12)); // delivery status idle

        Bsp.WriteRegister(0x300, 0xC_0041); // all excluding self
        Assert.Equal(-1, Bsp.PendingInterrupt);
        Assert.Equal(0x41, _vm.Vcpus[3].Apic.PendingInterrupt);
        Bsp.WriteRegister(0x300, 0x4_0042); // self
        Assert.Equal(0x42, Bsp.PendingInterrupt);

        // Logical, flat: APICs 1 and 3 have logical IDs 0x02 and 0x08; destination 0x0A names both.
        _vm.Vcpus[1].Apic.WriteRegister(0xD0, 0x02u << 24);
        _vm.Vcpus[3].Apic.WriteRegister(0xD0, 0x08u << 24);
        Bsp.WriteRegister(0x310, 0x0Au << 24);
        Bsp.WriteRegister(0x300, 0x0850);
        Assert.Equal(0x50, _vm.Vcpus[1].Apic.PendingInterrupt);
        Assert.Equal(0x50, _vm.Vcpus[3].Apic.PendingInterrupt);
        Assert.NotEqual(0x50, _vm.Vcpus[2].Apic.PendingInterrupt);

        // Cluster model: cluster 1, member bit 2.
        _vm.Vcpus[2].Apic.WriteRegister(0xE0, 0x0FFF_FFFF);
        _vm.Vcpus[2].Apic.WriteRegister(0xD0, 0x12u << 24);
        Bsp.WriteRegister(0x310, 0x16u << 24);
        Bsp.WriteRegister(0x300, 0x0860);
        Assert.Equal(0x60, _vm.Vcpus[2].Apic.PendingInterrupt);

        Bsp.WriteRegister(0x310, 1u << 24);
        Bsp.WriteRegister(0x300, 0x0400); // NMI
        Assert.True(_vm.Vcpus[1].Apic.NmiPending);
    }

    [Fact]
    public void InitSipiSequenceThroughTheIcrStartsAnAp()
    {
        FakeVcpu ap = _backend.Vcpus[1];
        Bsp.WriteRegister(0x310, 1u << 24);
        Bsp.WriteRegister(0x300, 0x0_C500); // INIT, level, assert
        Bsp.WriteRegister(0x300, 0x0_8500); // INIT level de-assert: ignored
        Bsp.WriteRegister(0x300, 0x0_0699); // SIPI, vector 0x99
        Bsp.WriteRegister(0x300, 0x0_0677); // the second SIPI of the pair
        ap.Script.Enqueue(v =>
        {
            Assert.Equal(0x9_9000UL, v.Segments[Register.CS].Base);
            Assert.Equal(0UL, v.Rip);
            return new BackendExit { Kind = BackendExitKind.TripleFault };
        });
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[1].Run(VmEntry.Default).Code);
        Assert.Empty(ap.Script);
    }

    [Fact]
    public void OneShotPeriodicAndDeadlineTimers()
    {
        VmClock clock = _vm.Clock;
        Bsp.WriteRegister(0x3E0, 0xB);         // divide by 1
        Bsp.WriteRegister(0x320, 0x40);        // one-shot, vector 0x40
        Bsp.WriteRegister(0x380, 1000);
        clock.Advance(400);
        Assert.Equal(600u, Bsp.ReadRegister(0x390));
        clock.Advance(599);
        Assert.Equal(-1, Bsp.PendingInterrupt);
        clock.Advance(1);
        Assert.Equal(0x40, Bsp.PendingInterrupt);
        Assert.Equal(0u, Bsp.ReadRegister(0x390));
        Bsp.AcceptInterrupt(0x40);
        Bsp.WriteRegister(0xB0, 0);

        Bsp.WriteRegister(0x320, 0x2_0041);    // periodic, vector 0x41
        Bsp.WriteRegister(0x3E0, 0x0);         // divide by 2
        Bsp.WriteRegister(0x380, 100);         // 200 ns
        clock.Advance(200);
        Assert.Equal(0x41, Bsp.PendingInterrupt);
        Bsp.AcceptInterrupt(0x41);
        Bsp.WriteRegister(0xB0, 0);
        clock.Advance(50);
        Assert.Equal(75u, Bsp.ReadRegister(0x390)); // 150 ns left of the second period, /2
        clock.Advance(150);
        Assert.Equal(0x41, Bsp.PendingInterrupt);
        Bsp.AcceptInterrupt(0x41);
        Bsp.WriteRegister(0xB0, 0);

        Bsp.WriteRegister(0x320, 0x1_0041);    // masked: the timer runs, nothing is raised
        clock.Advance(400);
        Assert.Equal(-1, Bsp.PendingInterrupt);

        Bsp.WriteRegister(0x320, 0x4_0042);    // TSC-deadline mode (stops the periodic timer)
        var cpu = _backend.Vcpus[0];
        ulong tsc = _vm.Vcpus[0].Msrs.Tsc(clock.Now);
        Assert.Equal(MsrResult.Handled, _vm.Vcpus[0].Msrs.Write(Msr.TscDeadline, tsc + 500, cpu, clock.Now));
        clock.Advance(499);
        Assert.Equal(-1, Bsp.PendingInterrupt);
        clock.Advance(1);
        Assert.Equal(0x42, Bsp.PendingInterrupt);
        Assert.Equal(0UL, Bsp.TscDeadline);
    }

    [Fact]
    public void TheXapicPageIsEmulatedInsideTheVmm()
    {
        FakeVcpu cpu = _backend.Vcpus[0];
        cpu.Gpr[0] = LocalApic.DefaultBase + 0x80;
        cpu.Gpr[1] = 0x30;
        cpu.Script.Enqueue(_ => FakeVcpu.Mmio(LocalApic.DefaultBase + 0x80, "8908")); // mov [rax], ecx: TPR
        cpu.Script.Enqueue(v => { v.Gpr[0] = LocalApic.DefaultBase + 0x20; return FakeVcpu.Mmio(LocalApic.DefaultBase + 0x20, "8B08"); }); // read the ID
        Assert.Equal(VmExitCode.Suspended, _vm.Vcpus[0].Run(VmEntry.Default).Code);
        Assert.Equal(0x30u, Bsp.ReadRegister(0x80));
        Assert.Equal(0UL, cpu.Gpr[1]);
        Assert.Equal(0, _vm.Vcpus[0].Requests); // nothing crossed to the device half
        Assert.Equal(0, _vm.Vcpus[0].ExitCounts[(int)VmExitCode.Mmio]);
    }

    [Fact]
    public void X2ApicMsrs()
    {
        Vcpu v = _vm.Vcpus[2];
        FakeVcpu cpu = _backend.Vcpus[2];
        MsrFile msrs = v.Msrs;
        Assert.Equal(MsrResult.Fault, msrs.Read(0x802, cpu, 0, out _));                 // xAPIC mode
        Assert.Equal(MsrResult.Fault, msrs.Write(Msr.ApicBase, 0xFEE0_0400, cpu, 0));    // EXTD without EN
        Assert.Equal(MsrResult.Handled, msrs.Write(Msr.ApicBase, 0xFEE0_0C00, cpu, 0));
        Assert.Equal(MsrResult.Handled, msrs.Read(0x802, cpu, 0, out ulong id));
        Assert.Equal(2UL, id);
        Assert.Equal(MsrResult.Handled, msrs.Read(0x80D, cpu, 0, out ulong ldr));
        Assert.Equal((1UL << 2), ldr);                                                   // cluster 0, bit 2
        Assert.Equal(MsrResult.Handled, msrs.Write(0x830, (3UL << 32) | 0x55, cpu, 0));  // ICR: fixed 0x55 to APIC 3
        Assert.Equal(0x55, _vm.Vcpus[3].Apic.PendingInterrupt);
        Assert.Equal(MsrResult.Handled, msrs.Write(0x83F, 0x66, cpu, 0));                // SELF IPI
        Assert.Equal(0x66, v.Apic.PendingInterrupt);
        Assert.Equal(MsrResult.Fault, msrs.Write(0x802, 5, cpu, 0));                     // the ID is read-only
        Assert.Equal(MsrResult.Fault, msrs.Write(Msr.ApicBase, 0xFEE0_0800, cpu, 0));    // x2APIC to xAPIC directly
        Assert.Equal(0UL, v.Apic.Read(0x20, 4));                                         // the page is gone
    }

    private sealed class Pic(int vector) : IExtIntSource
    {
        public int Acks { get; private set; }

        public int PeekVector() => vector;

        public int Acknowledge()
        {
            Acks++;
            return vector;
        }
    }

    [Fact]
    public void Lint0InExtIntModePassesThe8259Through()
    {
        var pic = new Pic(0x08);
        Bsp.ExtInt = pic;
        Assert.Equal(-1, Bsp.PendingInterrupt);          // LINT0 masked
        Bsp.WriteRegister(0x350, 0x700);                  // ExtINT, unmasked
        Assert.Equal(0x08, Bsp.PendingInterrupt);
        Bsp.AcceptInterrupt(0x08);
        Assert.Equal(1, pic.Acks);
        Assert.Equal(0u, Bsp.ReadRegister(0x100));        // not in the APIC's ISR
        Bsp.Accept(0x90, level: false);
        Assert.Equal(0x90, Bsp.PendingInterrupt);         // the APIC's own come first
    }

    [Fact]
    public void SoftwareDisableMasksTheLvts()
    {
        Bsp.WriteRegister(0x320, 0x40);
        Bsp.WriteRegister(0xF0, 0xFF);
        Assert.NotEqual(0u, Bsp.ReadRegister(0x320) & (1u << 16));
        Bsp.WriteRegister(0x350, 0x700);                  // cannot be unmasked while disabled
        Assert.NotEqual(0u, Bsp.ReadRegister(0x350) & (1u << 16));
        Bsp.Write(0x80, 2, 0x20);                         // a narrow write is dropped
        Assert.Equal(0u, Bsp.ReadRegister(0x80));
        Assert.Equal(1, Bsp.DroppedWrites);
    }
}
