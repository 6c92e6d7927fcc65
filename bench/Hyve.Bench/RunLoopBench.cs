// The vCPU run loop with a backend that does nothing but exit: the vmm's own cost per exit
// (entry action, backend call, dispatch, emulation, the exit back to the device half).
using System;
using BenchmarkDotNet.Attributes;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.X86;

namespace Hyve.Bench;

[MemoryDiagnoser]
public class RunLoopBench
{
    private const ulong Gpa = 0xFE00_0000;
    private Vm _vm = null!;
    private Vcpu _vcpu = null!;
    private VmExit _exit;

    [GlobalSetup]
    public void Setup()
    {
        var memory = new GuestMemory();
        memory.AddRam(0, 0x10_0000);
        _vm = new Vm(new Backend(), 1, memory);
        _vcpu = _vm.Vcpus[0];
        _vcpu.Cpu.SetGpr(0, Gpa);
        _exit = _vcpu.Run(VmEntry.Default);
    }

    [GlobalCleanup]
    public void Cleanup() => _vm.Dispose();

    // One MMIO store exit answered and the next one taken: Run(fulfil) returns the next request.
    [Benchmark(Description = "run loop: mmio exit round trip")]
    public VmExitCode MmioRoundTrip()
    {
        _exit = _vcpu.Run(VmEntry.FulfillMmio(_exit.Mmio));
        return _exit.Code;
    }

    private sealed class Backend : IBackend
    {
        public string Name => "bench";

        public IBackendVcpu CreateVcpu(int id) => new Cpu();
    }

    // Always exits on `mov [rax], ecx` to device memory; RIP is put back so it repeats.
    private sealed class Cpu : IBackendVcpu
    {
        private readonly ulong[] _gpr = new ulong[16];
        private BackendExit _mmio;

        public Cpu()
        {
            _mmio = new BackendExit { Kind = BackendExitKind.Mmio, Gpa = Gpa, Gla = Gpa, GlaValid = true, ByteCount = 2 };
            _mmio.Bytes[0] = 0x89;
            _mmio.Bytes[1] = 0x08;
        }

        public ulong Rip { get; set; } = 0x1000;

        public ulong Rflags { get; set; } = 2;

        public ControlState Control { get; set; } = new(PagingState.Cr0PE, 0, 0, PagingState.Cr4PAE, PagingState.EferLME | PagingState.EferLMA);

        public TableRegister Gdtr { get; set; }

        public TableRegister Idtr { get; set; }

        public bool InterruptWindowOpen => false;

        public bool NmiWindowOpen => false;

        public ulong GetGpr(int n) => _gpr[n];

        public void SetGpr(int n, ulong value) => _gpr[n] = value;

        public Segment GetSegment(Register segment) => segment == Register.CS ? Segment.Code64 : Segment.FlatData;

        public void SetSegment(Register segment, in Segment value)
        {
        }

        public UInt128 GetXmm(int n) => 0;

        public void SetXmm(int n, UInt128 value)
        {
        }

        public ulong GetMm(int n) => 0;

        public void SetMm(int n, ulong value)
        {
        }

        public bool TryGetMsr(uint msr, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool TrySetMsr(uint msr, ulong value) => false;

        public void Inject(in Event e)
        {
        }

        public void RequestInterruptWindow(bool on)
        {
        }

        public void RequestExit()
        {
        }

        public BackendExit Run()
        {
            Rip = 0x1000;
            return _mmio;
        }
    }
}
