// Port I/O through the emulation context: IN/OUT in every form and size, INS/OUTS with and
// without REP at every address size and direction, page-crossing elements, device memory as the
// memory side, in-vmm port devices, fulfilment checks; and the VMX I/O exit decoding.
using System;
using System.Collections.Generic;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.Vmm.Tests;

/// <summary>A device half with byte ports that remember what was written and answer reads
/// from a script of values.</summary>
public sealed class MockPorts
{
    public List<InoutAccess> Requests { get; } = [];

    public Queue<uint> Inputs { get; } = new();

    public InoutAccess Answer(InoutAccess request)
    {
        Requests.Add(request);
        return request.In ? request with { Eax = Inputs.Count > 0 ? Inputs.Dequeue() : 0xFFFF_FFFF } : request;
    }
}

/// <summary>In-vmm devices that own one port and record what they saw.</summary>
public sealed class MockVmmPort(ushort port, uint value) : IVmmDevices
{
    public List<(ushort Port, int Bytes, bool In, uint Value)> Seen { get; } = [];

    public bool TryRead(ulong gpa, int bytes, out ulong v)
    {
        v = 0;
        return false;
    }

    public bool TryWrite(ulong gpa, int bytes, ulong v) => false;

    public bool TryIn(ushort p, int bytes, out uint v)
    {
        v = value;
        if (p != port)
            return false;
        Seen.Add((p, bytes, true, v));
        return true;
    }

    public bool TryOut(ushort p, int bytes, uint v)
    {
        if (p != port)
            return false;
        Seen.Add((p, bytes, false, v));
        return true;
    }
}

public sealed class VieIoTests
{
    private static readonly PagingState Long = PagingState.Flat;
    private static readonly PagingState Protected = new(PagingState.Cr0PE, 0, 0, 0, 0);
    private static readonly PagingState Real = new(0, 0, 0, 0, 0);

    private static Bitness BitnessOf(MockCpu cpu, PagingState paging) =>
        (paging.Efer & PagingState.EferLMA) != 0 && cpu.GetSegment(Register.CS).Long ? Bitness.Bits64
        : cpu.GetSegment(Register.CS).Big ? Bitness.Bits32 : Bitness.Bits16;

    // Runs the instruction to completion the way the vmm would, answering every request and
    // running REP elements back to back. Returns the final status and the passes taken.
    private static (VieStatus Status, int Passes, Vie Vie) Run(string hex, MockCpu cpu, PagingState paging, MockPorts ports,
        MockGuestMemory? memory = null, MockDeviceHalf? half = null, IVmmDevices? vmm = null)
    {
        byte[] bytes = Convert.FromHexString(hex);
        Assert.Equal(DecodeStatus.Ok, Decoder.Decode(bytes, BitnessOf(cpu, paging), out Instruction insn));
        IoExit exit = IoExit.FromInstruction(in insn, (ushort)cpu.Gpr[2]) ?? throw new InvalidOperationException("not port I/O");
        // Through the VMX encoding and back, as the VMX layer would see it.
        IoExit decoded = VmxIoExit.Decode(VmxIoExit.Qualification(in exit), VmxIoExit.InstructionInformation(in exit), exit.Length);
        Assert.Equal(exit with { AddressSize = exit.String ? exit.AddressSize : (byte)0, Segment = exit.String && !exit.In ? exit.Segment : Register.ES }, decoded);
        var vie = new Vie();
        vie.BeginIo(in decoded, paging, cpu);
        memory ??= new MockGuestMemory();
        half ??= new MockDeviceHalf();
        vmm ??= new MockVmmDevices();
        VieStatus st;
        int passes = 0;
        do
        {
            st = vie.Emulate(cpu, vmm, memory);
            if (st == VieStatus.NeedsDevice)
            {
                FulfillResult r = vie.PendingIsInout ? vie.FulfillInout(ports.Answer(vie.PendingInout)) : vie.Fulfill(half.Answer(vie.Pending));
                Assert.Equal(FulfillResult.Ok, r);
            }
            Assert.True(++passes < 100_000);
        }
        while (st is VieStatus.NeedsDevice or VieStatus.Repeat);
        return (st, passes, vie);
    }

    [Theory]
    [InlineData("E460", 1)]   // in al, 0x60
    [InlineData("66E560", 2)] // in ax, 0x60
    [InlineData("E560", 4)]   // in eax, 0x60
    [InlineData("EC", 1)]      // in al, dx
    [InlineData("66ED", 2)]    // in ax, dx
    [InlineData("ED", 4)]      // in eax, dx
    public void InMergesNarrowValuesAndZeroExtendsEax(string hex, int size)
    {
        var cpu = new MockCpu { Rip = 0x1000 };
        cpu.Gpr[0] = 0xFFFF_FFFF_FFFF_FFFF;
        cpu.Gpr[2] = 0x1234_0060; // DX = 0x60
        var ports = new MockPorts();
        ports.Inputs.Enqueue(0x8877_6655);
        var (st, passes, _) = Run(hex, cpu, Long, ports);
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(2, passes);
        Assert.Equal([new InoutAccess(0x60, (byte)size, true, 0)], ports.Requests);
        ulong expected = size switch
        {
            1 => 0xFFFF_FFFF_FFFF_FF55,
            2 => 0xFFFF_FFFF_FFFF_6655,
            _ => 0x8877_6655,
        };
        Assert.Equal(expected, cpu.Gpr[0]);
        Assert.Equal(0x1000UL + (ulong)(hex.Length / 2), cpu.Rip);
    }

    [Theory]
    [InlineData("E680", 1)]   // out 0x80, al
    [InlineData("66E780", 2)] // out 0x80, ax
    [InlineData("E780", 4)]   // out 0x80, eax
    [InlineData("EE", 1)]     // out dx, al
    [InlineData("66EF", 2)]   // out dx, ax
    [InlineData("EF", 4)]     // out dx, eax
    public void OutSendsTheValueMaskedToItsSize(string hex, int size)
    {
        var cpu = new MockCpu();
        cpu.Gpr[0] = 0x1122_3344_5566_7788;
        cpu.Gpr[2] = 0x80;
        var ports = new MockPorts();
        Assert.Equal(VieStatus.Done, Run(hex, cpu, Long, ports).Status);
        Assert.Equal([new InoutAccess(0x80, (byte)size, false, (uint)(0x5566_7788UL & Alu.Mask(size)))], ports.Requests);
        Assert.Equal(0x1122_3344_5566_7788UL, cpu.Gpr[0]);
    }

    [Fact]
    public void RealModeAndProtectedModeSizes()
    {
        var cpu = new MockCpu();
        cpu.Segments[Register.CS] = new Segment(0, 0, 0xFFFF, 0x9B); // 16-bit code: ED is in ax, dx
        cpu.Gpr[2] = 0x3F8;
        var ports = new MockPorts();
        ports.Inputs.Enqueue(0xABCD);
        Assert.Equal(VieStatus.Done, Run("ED", cpu, Real, ports).Status);
        Assert.Equal(2, ports.Requests[0].Bytes);
        Assert.Equal(0xABCDUL, cpu.Gpr[0] & 0xFFFF);
        ports.Inputs.Enqueue(0x1234_5678);
        Assert.Equal(VieStatus.Done, Run("66ED", cpu, Protected, ports).Status); // 66 in 16-bit code: in eax, dx
        Assert.Equal(4, ports.Requests[1].Bytes);
    }

    public static IEnumerable<object[]> StringCases()
    {
        foreach (bool input in new[] { true, false })
        {
            foreach (int size in new[] { 1, 2, 4 })
            {
                foreach (int adSize in new[] { 2, 4, 8 })
                {
                    foreach (bool down in new[] { false, true })
                    {
                        foreach (bool rep in new[] { false, true })
                            yield return [input, size, adSize, down, rep];
                    }
                }
            }
        }
    }

    // INS/OUTS at every size, address size and direction, with and without REP, RAM memory side.
    // 16-bit addressing runs in 16-bit code; 32-bit addressing is 67 in 64-bit code.
    [Theory]
    [MemberData(nameof(StringCases))]
    public void StringIoMovesElementsAndIndexRegisters(bool input, int size, int adSize, bool down, bool rep)
    {
        bool sixteen = adSize == 2;
        string opc = input ? (size == 1 ? "6C" : "6D") : (size == 1 ? "6E" : "6F");
        string osz = size == 1 ? "" : sixteen ? (size == 4 ? "66" : "") : (size == 2 ? "66" : "");
        string hex = osz + (adSize == 4 ? "67" : "") + (rep ? "F3" : "") + opc;
        var cpu = new MockCpu { Rflags = Rflags.Fixed1 | (down ? Rflags.DF : 0) };
        PagingState paging = Long;
        if (sixteen)
        {
            cpu.Segments[Register.CS] = new Segment(0, 0, 0xFFFF, 0x9B);
            paging = Protected;
        }
        int count = rep ? 5 : 1;
        ulong start = 0x4000;
        // Bits above a 16-bit address size stay as they are; a 32-bit one zero-extends.
        ulong upper = adSize == 2 ? 0xAAAA_0000UL : adSize == 4 ? 0xBBBB_0000_0000_0000UL : 0;
        ulong upperOut = adSize == 2 ? upper : 0;
        cpu.Gpr[1] = upper | (rep ? (ulong)count : 0x77);
        cpu.Gpr[2] = 0x3F8;
        cpu.Gpr[input ? 7 : 6] = upper | start;
        cpu.Gpr[0] = 0xDEAD_BEEF_DEAD_BEEF;
        var memory = new MockGuestMemory();
        for (int i = 0; i < 64; i++)
            memory.Ram[0x3FE0 + i] = (byte)(0xA0 + i);
        var ports = new MockPorts();
        for (int i = 0; i < count; i++)
            ports.Inputs.Enqueue(0x1122_3300u + (uint)i);
        var (st, _, _) = Run(hex, cpu, paging, ports, memory);
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(count, ports.Requests.Count);
        long stride = down ? -size : size;
        for (int i = 0; i < count; i++)
        {
            ulong at = (ulong)((long)start + stride * i);
            InoutAccess r = ports.Requests[i];
            Assert.Equal((ushort)0x3F8, r.Port);
            Assert.Equal(size, r.Bytes);
            Assert.Equal(input, r.In);
            if (input)
                Assert.Equal((0x1122_3300UL + (ulong)i) & Alu.Mask(size), ReadRam(memory, at, size));
            else
                Assert.Equal(ReadRam(memory, at, size), r.Eax);
        }
        Assert.Equal(0xDEAD_BEEF_DEAD_BEEFUL, cpu.Gpr[0]); // INS leaves RAX alone
        ulong end = (ulong)((long)start + stride * count);
        Assert.Equal(upperOut | (end & Alu.Mask(adSize)), cpu.Gpr[input ? 7 : 6]);
        Assert.Equal(rep ? upperOut : upper | 0x77UL, cpu.Gpr[1]);
    }

    private static ulong ReadRam(MockGuestMemory m, ulong at, int size)
    {
        ulong v = 0;
        for (int i = size - 1; i >= 0; i--)
            v = (v << 8) | m.Ram[(int)at + i];
        return v;
    }

    [Fact]
    public void RepWithCountZeroDoesNothingAndLargeCountsRunToTheEnd()
    {
        var cpu = new MockCpu();
        cpu.Gpr[2] = 0x80;
        cpu.Gpr[6] = 0x1000;
        var ports = new MockPorts();
        var (st, passes, _) = Run("F36E", cpu, Long, ports);
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(1, passes);
        Assert.Empty(ports.Requests);
        Assert.Equal(0x40_0002UL, cpu.Rip);

        cpu.Gpr[1] = 4096;
        cpu.Rip = 0x40_0000;
        (st, passes, _) = Run("F36E", cpu, Long, ports);
        Assert.Equal(VieStatus.Done, st);
        Assert.Equal(4096, ports.Requests.Count);
        Assert.Equal(0x2000UL, cpu.Gpr[6]);
        Assert.Equal(0UL, cpu.Gpr[1]);
    }

    [Fact]
    public void RipStaysOnTheInstructionBetweenElements()
    {
        var cpu = new MockCpu { Rip = 0x5000 };
        cpu.Gpr[1] = 3;
        cpu.Gpr[2] = 0x80;
        cpu.Gpr[7] = 0x1000;
        Decoder.Decode([0xF3, 0x6C], Bitness.Bits64, out Instruction insn);
        IoExit exit = IoExit.FromInstruction(in insn, 0x80)!.Value;
        var vie = new Vie();
        vie.BeginIo(in exit, Long, cpu);
        var memory = new MockGuestMemory();
        var ports = new MockPorts();
        Assert.Equal(VieStatus.NeedsDevice, vie.Emulate(cpu, new MockVmmDevices(), memory));
        Assert.Equal(FulfillResult.Ok, vie.FulfillInout(ports.Answer(vie.PendingInout)));
        Assert.Equal(VieStatus.Repeat, vie.Emulate(cpu, new MockVmmDevices(), memory));
        Assert.Equal(0x5000UL, cpu.Rip); // an interrupt may be taken here; the guest re-executes
        Assert.Equal(2UL, cpu.Gpr[1]);
        Assert.Equal(0x1001UL, cpu.Gpr[7]);
    }

    [Fact]
    public void ElementsThatCrossAPageAndDeviceMemoryAsTheMemorySide()
    {
        // insd with ES:rDI two bytes before the end of a RAM page whose next page is device memory.
        var cpu = new MockCpu();
        cpu.Gpr[2] = 0x60;
        cpu.Gpr[7] = 0xFFFFE; // the last RAM page of the mock ends at 1 MiB
        var ports = new MockPorts();
        ports.Inputs.Enqueue(0xAABB_CCDD);
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        Assert.Equal(VieStatus.Done, Run("6D", cpu, Long, ports, memory, half).Status);
        Assert.Equal(0xCCDD, memory.Ram[0xFFFFE] | (memory.Ram[0xFFFFF] << 8));
        Assert.Equal([new MmioAccess(0x100000, 2, true, 0xAABB)], half.Requests);

        // outsw from device memory: the memory read crosses the boundary as a device request first.
        cpu = new MockCpu();
        cpu.Gpr[2] = 0x61;
        cpu.Gpr[6] = MockGuestMemory.MmioBase + 0x10;
        half = new MockDeviceHalf();
        half.Store(MockGuestMemory.MmioBase + 0x10, 0x4321, 2);
        ports = new MockPorts();
        Assert.Equal(VieStatus.Done, Run("666F", cpu, Long, ports, memory, half).Status);
        Assert.Equal([new MmioAccess(MockGuestMemory.MmioBase + 0x10, 2, false, 0)], half.Requests);
        Assert.Equal([new InoutAccess(0x61, 2, false, 0x4321)], ports.Requests);
    }

    [Fact]
    public void InsChecksItsDestinationBeforeReadingThePort()
    {
        var cpu = new MockCpu();
        cpu.Gpr[2] = 0x60;
        cpu.Gpr[7] = 0x0000_8000_0000_0000; // not canonical
        Decoder.Decode([0x6C], Bitness.Bits64, out Instruction insn);
        var vie = new Vie();
        vie.BeginIo(IoExit.FromInstruction(in insn, 0x60)!.Value, Long, cpu);
        Assert.Equal(VieStatus.Fault, vie.Emulate(cpu, new MockVmmDevices(), new MockGuestMemory()));
        Assert.Equal(new GuestFault(ExceptionVector.GP, 0), vie.Fault);
        Assert.Equal(0, vie.Requests);
    }

    [Fact]
    public void VmmPortsAreTriedFirst()
    {
        var cpu = new MockCpu();
        var vmm = new MockVmmPort(0x40, 0x5A);
        var ports = new MockPorts();
        Assert.Equal(VieStatus.Done, Run("E440", cpu, Long, ports, vmm: vmm).Status);
        Assert.Equal(0x5AUL, cpu.Gpr[0] & 0xFF);
        cpu.Gpr[0] = 0x77;
        Assert.Equal(VieStatus.Done, Run("E640", cpu, Long, ports, vmm: vmm).Status);
        Assert.Empty(ports.Requests);
        Assert.Equal([((ushort)0x40, 1, true, 0x5Au), ((ushort)0x40, 1, false, 0x77u)], vmm.Seen);
    }

    [Fact]
    public void FulfilmentsMustMatchTheRequest()
    {
        var cpu = new MockCpu();
        Decoder.Decode([0xE4, 0x60], Bitness.Bits64, out Instruction insn);
        var vie = new Vie();
        vie.BeginIo(IoExit.FromInstruction(in insn, 0)!.Value, Long, cpu);
        Assert.Equal(VieStatus.NeedsDevice, vie.Emulate(cpu, new MockVmmDevices()));
        Assert.True(vie.PendingIsInout);
        Assert.Equal(FulfillResult.Mismatch, vie.FulfillInout(new InoutAccess(0x61, 1, true, 0)));
        Assert.Equal(FulfillResult.Mismatch, vie.FulfillInout(new InoutAccess(0x60, 2, true, 0)));
        Assert.Equal(FulfillResult.Mismatch, vie.FulfillInout(new InoutAccess(0x60, 1, false, 0)));
        Assert.Equal(FulfillResult.Mismatch, vie.Fulfill(new MmioAccess(0x60, 1, false, 0)));
        Assert.Equal(VieStatus.NeedsDevice, vie.Emulate(cpu, new MockVmmDevices())); // re-emitted
        Assert.Equal(1, vie.Requests);
        Assert.Equal(FulfillResult.Ok, vie.FulfillInout(new InoutAccess(0x60, 1, true, 0x1FF)));
        Assert.Equal(FulfillResult.NotPending, vie.FulfillInout(new InoutAccess(0x60, 1, true, 0)));
        Assert.Equal(VieStatus.Done, vie.Emulate(cpu, new MockVmmDevices()));
        Assert.Equal(0xFFUL, cpu.Gpr[0]); // masked to the size
    }
}
