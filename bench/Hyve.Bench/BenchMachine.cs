// What the software CPU's benchmarks share: a vCPU in 64-bit mode over 2 MiB of identity-mapped
// RAM with the loops written into it, and Iced decoding a loop body as the peer an interpreter
// that decodes cannot beat.
using System;
using BenchmarkDotNet.Attributes;
using Hyve.SoftCpu;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Vmx;
using Hyve.X86;

namespace Hyve.Bench;

/// <summary>A software vCPU in 64-bit mode, loops placed in its RAM, and an Iced decoder over a
/// loop body.</summary>
public abstract class BenchMachine
{
    private GuestMemory _memory = null!;
    private global::Iced.Intel.ByteArrayCodeReader _reader = null!;
    private global::Iced.Intel.Decoder _iced = null!;

    /// <summary>The vCPU.</summary>
    protected VmxVcpu Vcpu { get; private set; } = null!;

    /// <summary>Maps 2 MiB with CR4 <paramref name="cr4"/>, writes each (address, code) pair, and
    /// points the decoder at <paramref name="body"/>.</summary>
    protected void Start(ulong cr4, byte[] body, params (ulong At, byte[] Code)[] code)
    {
        _memory = new GuestMemory();
        _memory.AddRam(0, 0x20_0000);
        _memory.WriteRam(0x1000, BitConverter.GetBytes(0x2003UL));
        _memory.WriteRam(0x2000, BitConverter.GetBytes(0x3003UL));
        _memory.WriteRam(0x3000, BitConverter.GetBytes(0x83UL));
        foreach (var (at, bytes) in code)
            _memory.WriteRam(at, bytes);
        Vcpu = new VmxVcpu(new SoftProcessor(_memory, new VmClock()), 0xF000_0000) { Memory = _memory };
        Vcpu.SetSegment(Register.CS, Segment.Code64);
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            Vcpu.SetSegment(s, Segment.FlatData);
        Vcpu.Control = new ControlState(PagingState.Cr0PE | PagingState.Cr0PG, 0, 0x1000, cr4, PagingState.EferLME | PagingState.EferLMA);
        _reader = new global::Iced.Intel.ByteArrayCodeReader(body);
        _iced = global::Iced.Intel.Decoder.Create(64, _reader);
    }

    /// <summary>Releases the guest memory.</summary>
    [GlobalCleanup]
    public void Cleanup() => _memory.Dispose();

    /// <summary>Decodes the body <paramref name="perIteration"/> instructions at a time,
    /// <paramref name="iterations"/> times.</summary>
    protected ulong Decode(int iterations, int perIteration)
    {
        ulong sum = 0;
        for (int i = 0; i < iterations; i++)
        {
            _reader.Position = 0;
            for (int k = 0; k < perIteration; k++)
            {
                _iced.Decode(out global::Iced.Intel.Instruction insn);
                sum += (ulong)insn.Length;
            }
        }
        return sum;
    }
}
