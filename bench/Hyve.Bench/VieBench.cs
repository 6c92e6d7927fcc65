// The full MMIO emulation cycle (begin, decode, emulate, request, fulfil, complete) for single
// accesses, with the device half answering in-process.
using System;
using BenchmarkDotNet.Attributes;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.Bench;

[MemoryDiagnoser]
public class VieBench
{
    private const ulong Gpa = 0xFE00_0000;
    private readonly Vie _vie = new();
    private readonly MockCpu _cpu = new();
    private static readonly byte[] Store = [0x89, 0x08];          // mov [rax], ecx
    private static readonly byte[] Load = [0x8B, 0x08];           // mov ecx, [rax]
    private static readonly byte[] AddImm = [0x83, 0x00, 0x05];   // add dword [rax], 5
    private static readonly byte[] RepMovsb = [0xF3, 0xA4];       // rep movsb
    private readonly Ram _ram = new();
    private readonly Hyve.Devices.PortBus _ports = new();
    private static readonly IoExit OutDx = new(0x80, 1, In: false, String: false, Rep: false, Immediate: false, 0, Register.ES, 1);
    private static readonly IoExit RepOutsb = new(0x80, 1, In: false, String: true, Rep: true, Immediate: false, 8, Register.DS, 2);

    private readonly global::Iced.Intel.ByteArrayCodeReader _reader;
    private readonly global::Iced.Intel.Decoder _iced;

    public VieBench()
    {
        _reader = new global::Iced.Intel.ByteArrayCodeReader(Store);
        _iced = global::Iced.Intel.Decoder.Create(64, _reader);
    }

    // The peer: Iced decoding the same instruction (decode only, no emulation).
    [Benchmark(Baseline = true, Description = "Iced: decode mov [rax], ecx")]
    public int IcedDecode()
    {
        _reader.Position = 0;
        _iced.Decode(out global::Iced.Intel.Instruction insn);
        return insn.Length;
    }

    [Benchmark(Description = "mov [mmio], reg")]
    public ulong StoreCycle() => Cycle(Store);

    [Benchmark(Description = "mov reg, [mmio]")]
    public ulong LoadCycle() => Cycle(Load);

    [Benchmark(Description = "add [mmio], imm")]
    public ulong AddCycle() => Cycle(AddImm);

    // 4 KiB from device memory to RAM: one Begin, then every element inside the vmm (a request
    // and its completion per byte), as a vCPU loop that does not re-enter the guest would run it.
    [Benchmark(Description = "rep movsb 4 KiB from mmio")]
    public ulong RepMovsbCycle()
    {
        _cpu.Rip = 0x1000;
        _cpu.SetGpr(1, 4096);
        _cpu.SetGpr(6, Gpa);
        _cpu.SetGpr(7, Ram.Base);
        _vie.Begin(Gpa, Gpa, glaValid: true, Bitness.Bits64, RepMovsb);
        VieStatus st;
        while ((st = _vie.Emulate(_cpu, NoVmmDevices.Instance, _ram)) is VieStatus.NeedsDevice or VieStatus.Repeat)
        {
            if (st == VieStatus.NeedsDevice)
                _vie.Fulfill(_vie.Pending with { Data = 0x5A });
        }
        return _cpu.GetGpr(7);
    }

    // OUT to a port the device half owns (an unclaimed one here: dropped and counted), full
    // round trip: begin, request, fulfil through the port bus, complete.
    [Benchmark(Description = "out dx, al (device half)")]
    public ulong OutCycle()
    {
        _cpu.Rip = 0x1000;
        _vie.BeginIo(in OutDx, PagingState.Flat, _cpu);
        while (_vie.Emulate(_cpu, NoVmmDevices.Instance) == VieStatus.NeedsDevice)
            _vie.FulfillInout(_ports.Handle(_vie.PendingInout));
        return _cpu.Rip;
    }

    // 4 KiB from RAM to a port, every element inside the vmm.
    [Benchmark(Description = "rep outsb 4 KiB")]
    public ulong RepOutsbCycle()
    {
        _cpu.Rip = 0x1000;
        _cpu.SetGpr(1, 4096);
        _cpu.SetGpr(6, Ram.Base);
        _vie.BeginIo(in RepOutsb, PagingState.Flat, _cpu);
        VieStatus st;
        while ((st = _vie.Emulate(_cpu, NoVmmDevices.Instance, _ram)) is VieStatus.NeedsDevice or VieStatus.Repeat)
        {
            if (st == VieStatus.NeedsDevice)
                _vie.FulfillInout(_ports.Handle(_vie.PendingInout));
        }
        return _cpu.GetGpr(6);
    }

    private ulong Cycle(byte[] insn)
    {
        _cpu.Rip = 0x1000;
        _cpu.SetGpr(0, Gpa);
        _vie.Begin(Gpa, Gpa, glaValid: true, Bitness.Bits64, insn);
        while (_vie.Emulate(_cpu, NoVmmDevices.Instance) == VieStatus.NeedsDevice)
        {
            MmioAccess req = _vie.Pending;
            _vie.Fulfill(req.Write ? req : req with { Data = 41 });
        }
        return _cpu.Rip;
    }

    private sealed class Ram : IGuestMemory
    {
        public const ulong Base = 0x10_0000;
        private readonly byte[] _bytes = new byte[8192];

        public bool ReadRam(ulong gpa, Span<byte> data)
        {
            if (gpa - Base >= (ulong)_bytes.Length)
                return false;
            _bytes.AsSpan((int)(gpa - Base), data.Length).CopyTo(data);
            return true;
        }

        public bool WriteRam(ulong gpa, ReadOnlySpan<byte> data)
        {
            if (gpa - Base >= (ulong)_bytes.Length)
                return false;
            data.CopyTo(_bytes.AsSpan((int)(gpa - Base)));
            return true;
        }
    }

}
