// The KVM backend through the vmm: segment conversions both ways, a guest's port and device-memory
// accesses reaching the device half as single requests (checked against the vmm's emulator too),
// and a kick from another thread ending KVM_RUN.
using System;
using System.Linq;
using System.Threading;
using Hyve.TestSupport;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Emulation;
using Hyve.Vmm.Verification;
using Hyve.X86;
using Xunit;

namespace Hyve.Kvm.Tests;

public sealed class KvmBackendTests
{
    // Expected KVM fields written out by hand from the SDM's access-rights layout (type 3:0, S 4,
    // DPL 6:5, P 7, AVL 12, L 13, D/B 14, G 15, unusable 16): "type s dpl p avl l db g unusable".
    [Theory]
    [InlineData(0x10, 0UL, 0xFFFF_FFFFu, 0xC09Bu, "11 1 0 1 0 0 1 1 0")]     // 32-bit code, 4 KiB granular
    [InlineData(0x18, 0UL, 0xFFFF_FFFFu, 0xC093u, "3 1 0 1 0 0 1 1 0")]      // 32-bit data
    [InlineData(0x08, 0UL, 0xFFFF_FFFFu, 0xA09Bu, "11 1 0 1 0 1 0 1 0")]     // 64-bit code
    [InlineData(0xF000, 0xF0000UL, 0xFFFFu, 0x93u, "3 1 0 1 0 0 0 0 0")]     // real-mode data
    [InlineData(0x2B, 0x1234_5000UL, 0xFFFu, 0x10F3u, "3 1 3 1 1 0 0 0 0")]  // DPL 3, AVL
    [InlineData(0x40, 0x9000UL, 0x67u, 0x8Bu, "11 0 0 1 0 0 0 0 0")]         // busy 64-bit TSS (a system segment)
    [InlineData(0, 0UL, 0u, 0x1_0000u, "0 0 0 0 0 0 0 0 1")]                 // unusable
    public void SegmentsConvertBothWays(ushort selector, ulong @base, uint limit, uint access, string fields)
    {
        var s = new Segment(selector, @base, limit, access);
        KvmSegment k = KvmVcpu.ToKvm(in s);
        byte[] f = [.. fields.Split(' ').Select(byte.Parse)];
        Assert.Equal((selector, @base, limit), (k.Selector, k.Base, k.Limit));
        Assert.Equal(f, new[] { k.Type, k.S, k.Dpl, k.Present, k.Avl, k.L, k.Db, k.G, k.Unusable });
        Assert.Equal(s, KvmVcpu.FromKvm(in k));
    }

    // 32-bit flat code at 0x1000: OUT 0x80 of 0x42, a dword write and a dword read of
    // pc-testdev-like memory at 0xFF000000, the value read stored at 0x2000, HLT.
    private static readonly byte[] Code =
    [
        0xB0, 0x42,                                           // mov al, 0x42
        0xE6, 0x80,                                           // out 0x80, al
        0xC7, 0x05, 0x00, 0x00, 0x00, 0xFF, 0x78, 0x56, 0x34, 0x12, // mov dword [0xFF000000], 0x12345678
        0xA1, 0x04, 0x00, 0x00, 0xFF,                         // mov eax, [0xFF000004]
        0xA3, 0x00, 0x20, 0x00, 0x00,                         // mov [0x2000], eax
        0xF4,                                                 // hlt
    ];

    private static (Vm Vm, KvmBackend Backend) Machine(byte[] code)
    {
        var memory = new GuestMemory();
        memory.AddRam(0, 16 << 20);
        memory.WriteRam(0x1000, code);
        var backend = new KvmBackend(memory);
        var vm = new Vm(backend, 1, memory, new VmClock(hostTime: true));
        IBackendVcpu cpu = vm.Vcpus[0].Cpu;
        cpu.SetSegment(Register.CS, new Segment(0x10, 0, 0xFFFF_FFFF, 0xC09B));
        foreach (Register r in (ReadOnlySpan<Register>)[Register.DS, Register.ES, Register.FS, Register.GS, Register.SS])
            cpu.SetSegment(r, new Segment(0x18, 0, 0xFFFF_FFFF, 0xC093));
        cpu.Control = new ControlState(PagingState.Cr0PE | 0x10, 0, 0, 0, 0);
        cpu.Rflags = Rflags.Fixed1;
        cpu.Rip = 0x1000;
        return (vm, backend);
    }

    [KvmTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void PortAndDeviceMemoryAccessesAreSingleRequests(bool verify)
    {
        (Vm vm, KvmBackend backend) = Machine(Code);
        using (vm)
        using (backend) // first: its memory slots point into the VM's RAM
        {
            Vcpu v = vm.Vcpus[0];
            if (verify)
                v.Verifier = new AccessVerifier();
            VmExit e = v.Run(VmEntry.Default);
            Assert.Equal(VmExitCode.Inout, e.Code);
            Assert.Equal(new InoutAccess(0x80, 1, false, 0x42), e.Inout);
            e = v.Run(VmEntry.FulfillInout(e.Inout));
            Assert.Equal(VmExitCode.Mmio, e.Code);
            Assert.Equal(new MmioAccess(0xFF00_0000, 4, true, 0x1234_5678), e.Mmio);
            e = v.Run(VmEntry.FulfillMmio(e.Mmio));
            Assert.Equal(VmExitCode.Mmio, e.Code);
            Assert.Equal(new MmioAccess(0xFF00_0004, 4, false, 0), e.Mmio);
            e = v.Run(VmEntry.FulfillMmio(e.Mmio with { Data = 0xCAFE_BABE }));
            Assert.Equal(VmExitCode.Hlt, e.Code); // HLT with interrupts off: only the device half can end it
            Span<byte> stored = stackalloc byte[4];
            Assert.True(vm.Memory.ReadRam(0x2000, stored));
            Assert.Equal(0xCAFE_BABEu, BitConverter.ToUInt32(stored));
            Assert.Equal(0x1000UL + (ulong)Code.Length, v.Cpu.Rip);
            if (verify)
                Assert.Equal(2, v.Verifier!.Verified);
        }
    }

    [KvmFact]
    public void AKickFromAnotherThreadEndsTheRun()
    {
        // inc dword [0x2000]; jmp back: the counter shows the guest is running before the kick.
        (Vm vm, KvmBackend backend) = Machine([0xFF, 0x05, 0x00, 0x20, 0x00, 0x00, 0xEB, 0xF8]);
        using (vm)
        using (backend) // first: its memory slots point into the VM's RAM
        {
            IBackendVcpu cpu = vm.Vcpus[0].Cpu;
            BackendExit exit = default;
            var runner = new Thread(() => exit = cpu.Run());
            runner.Start();
            Span<byte> counter = stackalloc byte[4];
            var wait = System.Diagnostics.Stopwatch.StartNew();
            while (vm.Memory.ReadRam(0x2000, counter) && BitConverter.ToUInt32(counter) == 0 && wait.Elapsed < TimeSpan.FromSeconds(10))
                Thread.Yield();
            Assert.NotEqual(0u, BitConverter.ToUInt32(counter)); // inside KVM_RUN, running guest code
            cpu.RequestExit();
            Assert.True(runner.Join(TimeSpan.FromSeconds(10)), "KVM_RUN did not return after the kick");
            Assert.Equal(BackendExitKind.Interrupted, exit.Kind);
            Assert.InRange(cpu.Rip, 0x1000UL, 0x1007UL);
        }
    }

    [Fact]
    public void AHostWithoutKvmGetsAOneLineReason()
    {
        // Either KVM works here or the reason names the device or what it lacks, on one line.
        string? why = KvmSystem.Unusable;
        if (why != null)
        {
            Assert.DoesNotContain('\n', why);
            Assert.Contains("/dev/kvm", why, StringComparison.Ordinal);
        }
        else
        {
            using KvmSystem sys = KvmSystem.Open();
            Assert.True(sys.Fd >= 0);
        }
    }
}
