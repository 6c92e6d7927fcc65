// The software CPU's interpretation speed on a tight integer loop (one VM entry runs 30,000
// guest instructions and exits on HLT), against Iced decoding the same instruction stream:
// decode alone is the floor an interpreter that decodes every instruction cannot beat.
using System;
using BenchmarkDotNet.Attributes;
using Hyve.Vmm.Backend;
using Hyve.X86;

namespace Hyve.Bench;

[MemoryDiagnoser]
public class SoftCpuBench : BenchMachine
{
    private const int Iterations = 10_000; // three instructions each
    private static readonly byte[] Loop = Convert.FromHexString("B910270000" + "01C8" + "FFC9" + "75FA" + "F4"); // mov ecx, 10000; L: add eax, ecx; dec ecx; jnz L; hlt
    private static readonly byte[] Body = Convert.FromHexString("01C8FFC975FA");

    [GlobalSetup]
    public void Setup()
    {
        Start(PagingState.Cr4PAE, Body, (0x10000, Loop));
    }

    [Benchmark(Baseline = true, Description = "Iced: decode 30,000 loop instructions")]
    public ulong IcedDecode() => Decode(Iterations, 3);

    [Benchmark(Description = "SoftCpu: run 30,000 loop instructions")]
    public ulong Run()
    {
        Vcpu.Rip = 0x10000;
        Vcpu.SetGpr(0, 0);
        BackendExit exit = Vcpu.Run();
        return exit.Kind == BackendExitKind.Hlt ? Vcpu.GetGpr(0) : 0;
    }
}
