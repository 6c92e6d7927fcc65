// The software CPU's interpretation speed on a tight integer loop (one VM entry runs 30,000
// guest instructions and exits on HLT), against Iced decoding the same instruction stream:
// decode alone is the floor an interpreter that decodes every instruction cannot beat.
using System;
using BenchmarkDotNet.Attributes;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Vmx;
using Hyve.X86;

namespace Hyve.Bench;

[MemoryDiagnoser]
public class SoftCpuBench
{
    private const int Iterations = 10_000; // three instructions each
    private static readonly byte[] Loop = Convert.FromHexString("B910270000" + "01C8" + "FFC9" + "75FA" + "F4"); // mov ecx, 10000; L: add eax, ecx; dec ecx; jnz L; hlt
    private static readonly byte[] Body = Convert.FromHexString("01C8FFC975FA");
    private GuestMemory _memory = null!;
    private VmxVcpu _vcpu = null!;
    private global::Iced.Intel.ByteArrayCodeReader _reader = null!;
    private global::Iced.Intel.Decoder _iced = null!;

    [GlobalSetup]
    public void Setup()
    {
        _memory = new GuestMemory();
        _vcpu = BenchMachine.LongMode(_memory, PagingState.Cr4PAE);
        _memory.WriteRam(0x10000, Loop);
        _reader = new global::Iced.Intel.ByteArrayCodeReader(Body);
        _iced = global::Iced.Intel.Decoder.Create(64, _reader);
    }

    [GlobalCleanup]
    public void Cleanup() => _memory.Dispose();

    [Benchmark(Baseline = true, Description = "Iced: decode 30,000 loop instructions")]
    public ulong IcedDecode() => BenchMachine.Decode(_iced, _reader, Iterations, 3);

    [Benchmark(Description = "SoftCpu: run 30,000 loop instructions")]
    public ulong Run()
    {
        _vcpu.Rip = 0x10000;
        _vcpu.SetGpr(0, 0);
        BackendExit exit = _vcpu.Run();
        return exit.Kind == BackendExitKind.Hlt ? _vcpu.GetGpr(0) : 0;
    }
}
