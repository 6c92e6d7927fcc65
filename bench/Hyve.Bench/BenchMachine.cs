// What the software CPU's benchmarks share: a vCPU in 64-bit mode over 2 MiB of identity-mapped
// RAM, and Iced decoding a loop body as the peer an interpreter that decodes cannot beat.
using System;
using Hyve.SoftCpu;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Vmx;
using Hyve.X86;

namespace Hyve.Bench;

internal static class BenchMachine
{
    /// <summary>A software vCPU in 64-bit mode with CR4 <paramref name="cr4"/> over
    /// <paramref name="memory"/>'s first 2 MiB, mapped by one large page.</summary>
    public static VmxVcpu LongMode(GuestMemory memory, ulong cr4)
    {
        memory.AddRam(0, 0x20_0000);
        memory.WriteRam(0x1000, BitConverter.GetBytes(0x2003UL));
        memory.WriteRam(0x2000, BitConverter.GetBytes(0x3003UL));
        memory.WriteRam(0x3000, BitConverter.GetBytes(0x83UL));
        var vcpu = new VmxVcpu(new SoftProcessor(memory, new VmClock()), 0xF000_0000) { Memory = memory };
        vcpu.SetSegment(Register.CS, Segment.Code64);
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            vcpu.SetSegment(s, Segment.FlatData);
        vcpu.Control = new ControlState(PagingState.Cr0PE | PagingState.Cr0PG, 0, 0x1000, cr4, PagingState.EferLME | PagingState.EferLMA);
        return vcpu;
    }

    /// <summary>Decodes the reader's body <paramref name="perIteration"/> instructions at a time,
    /// <paramref name="iterations"/> times.</summary>
    public static ulong Decode(global::Iced.Intel.Decoder iced, global::Iced.Intel.ByteArrayCodeReader reader, int iterations, int perIteration)
    {
        ulong sum = 0;
        for (int i = 0; i < iterations; i++)
        {
            reader.Position = 0;
            for (int k = 0; k < perIteration; k++)
            {
                iced.Decode(out global::Iced.Intel.Instruction insn);
                sum += (ulong)insn.Length;
            }
        }
        return sum;
    }
}
