// The software CPU's floating point: a loop of SSE2 scalar double multiply and add, and the same
// loop in x87 instructions (each VM entry runs 40,000 guest instructions and exits on HLT),
// against Iced decoding the SSE loop's instruction stream, the floor an interpreter cannot beat.
// Floating point is computed exactly in integers (ExtendedReal) and rounded once, as the SDM
// specifies, so these loops show what that exactness costs next to the integer loop of
// SoftCpuBench.
using System;
using BenchmarkDotNet.Attributes;
using Hyve.Vmm.Backend;
using Hyve.X86;

namespace Hyve.Bench;

[MemoryDiagnoser]
public class FloatBench : BenchMachine
{
    private const int Iterations = 10_000; // four instructions each
    // mov ecx, 10000; L: mulsd xmm0, xmm1; addsd xmm0, xmm2; dec ecx; jnz L; hlt
    private static readonly byte[] SseLoop = Convert.FromHexString("B910270000" + "F20F59C1" + "F20F58C2" + "FFC9" + "75F4" + "F4");
    private static readonly byte[] SseBody = Convert.FromHexString("F20F59C1F20F58C2FFC975F4");
    // fninit; fld1 (three times); mov ecx, 10000; L: fmul st0, st1; fadd st0, st2; dec ecx; jnz L; hlt
    private static readonly byte[] X87Loop = Convert.FromHexString("DBE3" + "D9E8D9E8D9E8" + "B910270000" + "D8C9" + "D8C2" + "FFC9" + "75F8" + "F4");

    [GlobalSetup]
    public void Setup()
    {
        Start(PagingState.Cr4PAE | PagingState.Cr4OSFXSR, SseBody, (0x10000, SseLoop), (0x11000, X87Loop));
    }

    [Benchmark(Baseline = true, Description = "Iced: decode 40,000 SSE loop instructions")]
    public ulong IcedDecode() => Decode(Iterations, 4);

    [Benchmark(Description = "SoftCpu: run 40,000 SSE2 loop instructions")]
    public UInt128 Sse()
    {
        Vcpu.Rip = 0x10000;
        Vcpu.Area.Xmm[0] = (ulong)BitConverter.DoubleToInt64Bits(1.0);
        Vcpu.Area.Xmm[1] = (ulong)BitConverter.DoubleToInt64Bits(1.0000001);
        Vcpu.Area.Xmm[2] = (ulong)BitConverter.DoubleToInt64Bits(1e-9);
        BackendExit exit = Vcpu.Run();
        return exit.Kind == BackendExitKind.Hlt ? Vcpu.Area.Xmm[0] : 0;
    }

    [Benchmark(Description = "SoftCpu: run 40,000 x87 loop instructions")]
    public ulong X87()
    {
        Vcpu.Rip = 0x11000;
        BackendExit exit = Vcpu.Run();
        return exit.Kind == BackendExitKind.Hlt ? Vcpu.GetMm(0) : 0;
    }
}
