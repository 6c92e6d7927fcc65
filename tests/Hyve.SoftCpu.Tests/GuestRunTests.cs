// Small guest programs run on the software CPU through the whole vmm: the VMX layer, the run
// loop, instruction emulation and the device half's answers.
using System;
using System.Collections.Generic;
using System.Text;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Emulation;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.SoftCpu.Tests;

public sealed class GuestRunTests : IDisposable
{
    private const ulong Code = 0x10000;
    private readonly GuestMemory _memory = new();
    private readonly VmClock _clock = new();
    private Vm _vm;
    private readonly List<MmioAccess> _mmio = [];
    private readonly StringBuilder _console = new();

    public GuestRunTests()
    {
        _memory.AddRam(0, 0x20_0000);
        _vm = new Vm(new VmxBackend(_memory, _ => new SoftProcessor(_memory, _clock), "soft"), 1, _memory, _clock);
    }

    public void Dispose() => _vm.Dispose();

    private VmxVcpu Cpu => (VmxVcpu)_vm.Vcpus[0].Cpu;

    // 64-bit mode with the first 2 MiB identity-mapped by one large page.
    private void LongMode(byte[] code)
    {
        _memory.WriteRam(0x1000, BitConverter.GetBytes(0x2000UL | 3));        // PML4[0]
        _memory.WriteRam(0x2000, BitConverter.GetBytes(0x3000UL | 3));        // PDPT[0]
        _memory.WriteRam(0x3000, BitConverter.GetBytes(0x0UL | 0x83));        // PD[0]: 2 MiB at 0
        _memory.WriteRam(0x2000 + 3 * 8, BitConverter.GetBytes(0x6000UL | 3)); // PDPT[3]: the top gigabyte below 4 GiB
        _memory.WriteRam(0x6000 + 0x1F0 * 8, BitConverter.GetBytes(0xFE00_0000UL | 0x83)); // 2 MiB of device memory at 0xFE000000
        _memory.WriteRam(Code, code);
        Cpu.SetSegment(Register.CS, new Segment(0x08, 0, 0xFFFF_FFFF, 0xA09B));
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            Cpu.SetSegment(s, new Segment(0x10, 0, 0xFFFF_FFFF, 0xC093));
        Cpu.Control = new ControlState(PagingState.Cr0PE | PagingState.Cr0PG | PagingState.Cr0WP, 0, 0x1000,
            PagingState.Cr4PAE | PagingState.Cr4OSFXSR, PagingState.EferLME | PagingState.EferLMA);
        Cpu.Rip = Code;
        Cpu.SetGpr(4, 0x8000);
    }

    // A 64-bit interrupt gate for vector at IDT 0x4000 to handler (Code + 0x100 unless given), with the GDT
    // at 0x5000 holding the 64-bit code segment 0x08. Returns the handler's address.
    private ulong InstallGate(int vector, ulong handler = Code + 0x100)
    {
        ulong gate = (handler & 0xFFFF) | (0x08UL << 16) | (0x8EUL << 40) | ((handler >> 16 & 0xFFFF) << 48);
        _memory.WriteRam(0x4000 + (ulong)vector * 16, BitConverter.GetBytes(gate));
        _memory.WriteRam(0x5008, BitConverter.GetBytes(0x00AF_9B00_0000_FFFFUL));
        return handler;
    }

    // The device half: a debug console on port 0xE9, device memory that remembers nothing.
    private VmExit RunUntilStopped()
    {
        VmEntry entry = VmEntry.Default;
        for (int i = 0; i < 1000; i++)
        {
            VmExit exit = _vm.Vcpus[0].Run(entry);
            switch (exit.Code)
            {
                case VmExitCode.Inout:
                    if (!exit.Inout.In && exit.Inout.Port == 0xE9)
                        _console.Append((char)exit.Inout.Eax);
                    entry = VmEntry.FulfillInout(exit.Inout.In ? exit.Inout with { Eax = 0xFF } : exit.Inout);
                    break;
                case VmExitCode.Mmio:
                    _mmio.Add(exit.Mmio);
                    entry = VmEntry.FulfillMmio(exit.Mmio);
                    break;
                default:
                    return exit;
            }
        }
        throw new InvalidOperationException("the guest did not stop");
    }

    [Fact]
    public void LongModeGuestWritesToTheConsoleAndHalts()
    {
        LongMode(Convert.FromHexString(
            "BAE9000000" +   // mov edx, 0xE9
            "B06F" + "EE" +  // mov al, 'o'; out dx, al
            "B06B" + "EE" +  // mov al, 'k'; out dx, al
            "E8 05000000".Replace(" ", "") + // call +5
            "F4" +           // hlt (after the call returns)
            "90909090" +
            "B00A" + "E6E9" + // mov al, '\n'; out 0xE9, al
            "C3"));          // ret
        VmExit exit = RunUntilStopped();
        Assert.Equal(VmExitCode.Hlt, exit.Code);
        Assert.Equal("ok\n", _console.ToString());
        Assert.Equal(Code + 0x11, Cpu.Rip); // past the HLT
        Assert.Equal(0x8000UL, Cpu.GetGpr(4));
    }

    [Theory]
    [InlineData("660F38DCC1", "aesenc")] // AES, which CPUID does not offer
    [InlineData("0F01C1", "vmcall")]     // no hypercall interface
    [InlineData("C4E279DCC0", "vaesenc")] // the VEX form of AES
    public void AnInstructionTheCpuDoesNotRunRaisesUdInTheGuest(string bytes, string name)
    {
        // As on a processor without the feature: #UD through the guest's IDT, the run goes on,
        // and the vCPU counts it (with the last one named) for --stats.
        ulong handler = InstallGate(ExceptionVector.UD);
        LongMode(Convert.FromHexString(bytes + "F4"));
        _memory.WriteRam(handler, Convert.FromHexString("B055" + "E6E9" + "F4")); // 'U'; hlt
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("U", _console.ToString());
        Span<byte> frame = stackalloc byte[8];
        Assert.True(_memory.ReadRam(Cpu.GetGpr(4), frame));
        Assert.Equal(Code, BitConverter.ToUInt64(frame)); // a fault: RIP on the instruction
        Assert.Equal(1, Cpu.Unimplemented);
        Assert.StartsWith($"{name} ", Cpu.LastUnimplemented, StringComparison.Ordinal);
        Assert.EndsWith($"at 0x{Code:X}", Cpu.LastUnimplemented, StringComparison.Ordinal);
    }

    [Fact]
    public void PushAndPopOfMemoryOperandsMoveTheStackOnce()
    {
        _memory.WriteRam(0x9000, BitConverter.GetBytes(0x1122_3344_5566_7788UL));
        LongMode(Convert.FromHexString(
            "BB00900000" +   // mov ebx, 0x9000
            "FF33" +         // push qword [rbx]
            "8F4308" +       // pop qword [rbx+8]
            "FF33" +         // push qword [rbx]
            "8F0424" +       // pop qword [rsp]: the address uses the incremented RSP
            "F4"));
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(0x8000UL, Cpu.GetGpr(4));
        Span<byte> b = stackalloc byte[8];
        Assert.True(_memory.ReadRam(0x9008, b));
        Assert.Equal(0x1122_3344_5566_7788UL, BitConverter.ToUInt64(b));
        Assert.True(_memory.ReadRam(0x8000, b));
        Assert.Equal(0x1122_3344_5566_7788UL, BitConverter.ToUInt64(b));
    }

    [Fact]
    public void AnUnmaskedX87ExceptionRaisesMfAtTheNextWaitingInstruction()
    {
        ulong handler = InstallGate(ExceptionVector.MF);
        LongMode(Convert.FromHexString(
            "DBE3" +                 // fninit
            "C704247B030000" +       // mov dword [rsp], 0x037B: divide-by-zero unmasked
            "D92C24" +               // fldcw [rsp]
            "D9EE" + "D9E8" +        // fldz; fld1
            "D8F1" +                 // fdiv st0, st1: 1/0, withheld
            "DFE0" + "6689C3" +      // fnstsw ax (no wait); mov bx, ax
            "9B" +                   // fwait: #MF
            "F4"));
        // 'M'; fnclex; fstp qword [0x9000]; hlt
        _memory.WriteRam(handler, Convert.FromHexString("B04D" + "E6E9" + "DBE2" + "DD1C2500900000" + "F4"));
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        Cpu.Control = Cpu.Control with { Cr0 = Cpu.Control.Cr0 | 0x20 }; // CR0.NE
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("M", _console.ToString());
        ushort fsw = (ushort)Cpu.GetGpr(3);
        Assert.Equal(0x8080 | 0x04, fsw & 0x80FF);     // B, ES and ZE
        Assert.Equal(6, (fsw >> 11) & 7);              // two pushes, the division withheld
        Span<byte> frame = stackalloc byte[8];
        Assert.True(_memory.ReadRam(Cpu.GetGpr(4), frame));
        Assert.Equal(Code + 23, BitConverter.ToUInt64(frame)); // the FWAIT faulted
        Assert.True(_memory.ReadRam(0x9000, frame));
        Assert.Equal(1.0, BitConverter.ToDouble(frame)); // ST(0) kept its 1, not the masked response's infinity
    }

    [Fact]
    public void AnUnmaskedOverflowOnFstToMemoryStoresNothingAndDoesNotPop()
    {
        _memory.WriteRam(0x9000, BitConverter.GetBytes(0xDEAD_BEEFu));
        _memory.WriteRam(0x9100, [0, 0, 0, 0, 0, 0, 0, 0x80, 0x00, 0x70]); // 2^(0x7000 - 16383), far above any single
        LongMode(Convert.FromHexString(
            "DBE3" +                 // fninit
            "C7042477030000" +       // mov dword [rsp], 0x0377: overflow unmasked
            "D92C24" +               // fldcw [rsp]
            "DB2C2500910000" +       // fld tbyte [0x9100]
            "D91C2500900000" +       // fstp dword [0x9000]: overflows
            "DFE0" + "6689C3" +      // fnstsw ax; mov bx, ax
            "F4"));
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(0xDEAD_BEEFu, Dword(0x9000));             // nothing stored
        ushort fsw = (ushort)Cpu.GetGpr(3);
        Assert.Equal(7, (fsw >> 11) & 7);                      // not popped
        Assert.Equal(0x8088, fsw & 0x8088);                    // B, ES, OE
    }

    [Fact]
    public void AnX87InstructionWhoseOperandFaultsLeavesTheLastInstructionPointer()
    {
        ulong handler = InstallGate(ExceptionVector.PF);
        LongMode(Convert.FromHexString(
            "DBE3" +                 // fninit
            "D9E8" +                 // fld1 (at +2): the last x87 instruction to complete
            "DD042500000040" +       // fld qword [0x40000000]: not mapped, #PF
            "F4"));
        _memory.WriteRam(handler, Convert.FromHexString("D9342500900000" + "F4")); // fnstenv [0x9000]; hlt
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal((uint)Code + 2, Dword(0x9000 + 12));             // FIP: the FLD1
        Assert.Equal(0x01E8u, Dword(0x9000 + 16) >> 16);              // FOP: (D9 & 7) << 8 | E8
        Assert.Equal(7, (int)((Dword(0x9000 + 4) >> 11) & 7));        // one push (TOP 7), not two
    }

    [Fact]
    public void AnUnmaskedSimdExceptionRaisesXmAndLeavesTheDestination()
    {
        ulong handler = InstallGate(ExceptionVector.XM);
        LongMode(Convert.FromHexString(
            "C70424801D0000" +       // mov dword [rsp], 0x1D80: divide-by-zero unmasked
            "0FAE1424" +             // ldmxcsr [rsp]
            "0F57C9" +               // xorps xmm1, xmm1
            "F30F5EC1" +             // divss xmm0, xmm1: #XM
            "F4"));
        // 'X'; stmxcsr [0x9000]; hlt
        _memory.WriteRam(handler, Convert.FromHexString("B058" + "E6E9" + "0FAE1C2500900000" + "F4"));
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        Cpu.Control = Cpu.Control with { Cr4 = Cpu.Control.Cr4 | (1 << 10) }; // CR4.OSXMMEXCPT
        Cpu.Area.Xmm[0] = 0x3F80_0000; // 1.0f
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("X", _console.ToString());
        Assert.Equal((UInt128)0x3F80_0000, Cpu.Area.Xmm[0]); // not written
        Span<byte> word = stackalloc byte[8];
        Assert.True(_memory.ReadRam(0x9000, word));
        Assert.Equal(0x1D84u, BitConverter.ToUInt32(word)); // ZE recorded
        Assert.True(_memory.ReadRam(Cpu.GetGpr(4), word));
        Assert.Equal(Code + 14, BitConverter.ToUInt64(word)); // the DIVSS faulted
    }

    private uint Dword(ulong at)
    {
        Span<byte> b = stackalloc byte[4];
        Assert.True(_memory.ReadRam(at, b));
        return BitConverter.ToUInt32(b);
    }

    // 32-bit protected mode, hand-built as the SDM lays it out: a CPL 3 caller passes two
    // parameters through a call gate to CPL 0 (stack switch from the TSS, parameters copied),
    // returns with RET 8 to the outer level, then calls a task gate twice; the task records what
    // it runs with, returns with IRET (NT), and the second call resumes it after the IRET.
    // 32-bit protected mode without paging at CPL 0 (RIP 0x10000, ESP 0x9000): a GDT at 0x5000
    // with code and data at DPL 0 and 3, TSS A (0x28, for LTR) and TSS B (0x30, entered at 0x11000
    // on its own stack at 0xA000), a call gate (0x38) to 0x08:0x12000 taking two parameters, and a
    // task gate (0x40) to TSS B.
    private void ProtectedModeWithTasks()
    {
        ulong[] gdt =
        [
            0,
            0x00CF_9A00_0000_FFFF, // 0x08: code, DPL 0
            0x00CF_9200_0000_FFFF, // 0x10: data, DPL 0
            0x00CF_FA00_0000_FFFF, // 0x18: code, DPL 3
            0x00CF_F200_0000_FFFF, // 0x20: data, DPL 3
            0x0000_8900_6000_0067, // 0x28: TSS A at 0x6000 (available)
            0x0000_8900_6100_0067, // 0x30: TSS B at 0x6100
            0x0001_EC02_0008_2000, // 0x38: call gate, DPL 3, 2 parameters, to 0x08:0x12000
            0x0000_E500_0030_0000, // 0x40: task gate, DPL 3, to TSS B
        ];
        for (int k = 0; k < gdt.Length; k++)
            _memory.WriteRam(0x5000 + 8 * (ulong)k, BitConverter.GetBytes(gdt[k]));
        _memory.WriteRam(0x6004, BitConverter.GetBytes(0x9000u)); // TSS A: ESP0
        _memory.WriteRam(0x6008, BitConverter.GetBytes(0x10u));   // SS0
        _memory.WriteRam(0x6100 + 32, BitConverter.GetBytes(0x11000u)); // TSS B: EIP
        _memory.WriteRam(0x6100 + 36, BitConverter.GetBytes(2u));       // EFLAGS
        _memory.WriteRam(0x6100 + 56, BitConverter.GetBytes(0xA000u));  // ESP
        foreach (int at in new[] { 72, 80, 84, 88, 92 })
            _memory.WriteRam(0x6100 + (ulong)at, BitConverter.GetBytes(0x10u)); // ES, SS, DS, FS, GS
        _memory.WriteRam(0x6100 + 76, BitConverter.GetBytes(0x08u));            // CS
        Cpu.SetSegment(Register.CS, new Segment(0x08, 0, 0xFFFF_FFFF, 0xC09B));
        foreach (Register r in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            Cpu.SetSegment(r, new Segment(0x10, 0, 0xFFFF_FFFF, 0xC093));
        Cpu.Gdtr = new TableRegister(0x5000, 0x47);
        Cpu.Control = new ControlState(0x11, 0, 0, 0, 0); // PE, ET
        Cpu.Rflags = Rflags.Fixed1;
        Cpu.Rip = 0x10000;
        Cpu.SetGpr(4, 0x9000);

    }

    [Fact]
    public void CallGatesCopyParametersAndTaskGatesSwitchTasksAndBack()
    {
        ProtectedModeWithTasks();
        _memory.WriteRam(0x10000, Convert.FromHexString(
            "B828000000" + "0F00D8" +              // mov eax, 0x28; ltr ax
            "6A23" + "6800800000" + "6802300000" + // push 0x23; push 0x8000; push 0x3002 (IOPL 3)
            "6A1B" + "6800300100" + "CF"));        // push 0x1B; push 0x13000; iret
        _memory.WriteRam(0x13000, Convert.FromHexString(
            "6811111111" + "6822222222" +          // push two parameters
            "9A000000003B00" +                     // call 0x3B:0 (the call gate)
            "36892500710000" +                     // mov ss:[0x7100], esp
            "8CD8" + "36A304710000" +              // mov ss:[0x7104], ds
            "9A000000004300" +                     // call 0x43:0 (the task gate)
            "B041" + "E6E9" +                      // 'A'
            "9A000000004300"));                    // the task gate again
        _memory.WriteRam(0x12000, Convert.FromHexString(
            "66B81000" + "8ED8" +                  // mov ds, 0x10 (the IRET outward made DS null)
            "892500700000" + "8CD0" + "A304700000" + // [0x7000] = esp, [0x7004] = ss
            "8B0424A310700000" + "8B442404A314700000" + "8B442408A318700000" +
            "8B44240CA31C700000" + "8B442410A320700000" + "8B442414A324700000" + // the frame
            "CA0800"));                            // retf 8
        _memory.WriteRam(0x11000, Convert.FromHexString(
            "9C58A300720000" +                     // task B: [0x7200] = eflags
            "0F20C0A304720000" +                   // [0x7204] = cr0
            "892508720000" +                       // [0x7208] = esp
            "B042E6E9" + "CF" + "F4"));            // 'B'; iret; hlt
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        // The call gate: the handler's stack is ESP0 less six dwords, SS0; the frame holds the
        // return address, the caller's CS, both parameters in their order, and its SS:ESP.
        Assert.Equal(0x9000u - 24, Dword(0x7000));
        Assert.Equal(0x10u, Dword(0x7004) & 0xFFFF);
        Assert.Equal(new uint[] { 0x13011, 0x1B, 0x22222222, 0x11111111, 0x7FF8, 0x23 },
            new[] { Dword(0x7010), Dword(0x7014) & 0xFFFF, Dword(0x7018), Dword(0x701C), Dword(0x7020), Dword(0x7024) & 0xFFFF });
        Assert.Equal(0x8000u, Dword(0x7100));  // RET 8 dropped the parameters on both stacks
        Assert.Equal(0u, Dword(0x7104) & 0xFFFF); // and left DS (DPL 0) null at CPL 3
        // Task B ran with NT set, CR0.TS set and its own stack; IRET went back to A, which printed
        // and called again: B resumed after its IRET.
        Assert.Equal("BA", _console.ToString()); // the second entry goes straight to the HLT
        Assert.NotEqual(0u, Dword(0x7200) & (1u << 14));
        Assert.NotEqual(0u, Dword(0x7204) & 8);
        Assert.Equal(0xA000u, Dword(0x7208));
        Assert.Equal(0x1101BUL, Cpu.Rip);
        Assert.Equal(0x08, Cpu.GetSegment(Register.CS).Selector);
        Assert.NotEqual(0UL, Cpu.Rflags & (1UL << 14));
        // The IRET saved B without NT, at the instruction after it; the CALL linked B to A and
        // left both busy; A's state went to its TSS.
        Assert.Equal(0x1101Au, Dword(0x6100 + 32));
        Assert.Equal(0u, Dword(0x6100 + 36) & (1u << 14));
        Assert.Equal(0x28u, Dword(0x6100) & 0xFFFF);
        Assert.Equal(0x8Bu, (Dword(0x5028 + 4) >> 8) & 0xFF);
        Assert.Equal(0x8Bu, (Dword(0x5030 + 4) >> 8) & 0xFF);
        Assert.Equal(new uint[] { 0x13032, 0x8000, 0x1B, 0x23 },
            new[] { Dword(0x6000 + 32), Dword(0x6000 + 56), Dword(0x6000 + 76) & 0xFFFF, Dword(0x6000 + 80) & 0xFFFF });
        Assert.Equal(0x3000u, Dword(0x6000 + 36) & 0x3000);
    }

    [Fact]
    public void AnExceptionThroughATaskGatePushesItsErrorCodeOnTheNewTask()
    {
        ProtectedModeWithTasks();
        _memory.WriteRam(0x4000 + 13 * 8, BitConverter.GetBytes(0x0000_8500_0030_0000UL)); // #GP: task gate to B
        _memory.WriteRam(0x10000, Convert.FromHexString(
            "B828000000" + "0F00D8" +              // mov eax, 0x28; ltr ax
            "B830120000" + "8ED8"));               // mov ds, 0x1230: #GP(0x1230), outside the GDT
        _memory.WriteRam(0x11000, Convert.FromHexString("8B0424" + "F4")); // task B: mov eax, [esp]; hlt
        Cpu.Idtr = new TableRegister(0x4000, 0x7FF);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(0x1230UL, Cpu.GetGpr(0));            // the error code, on B's stack
        Assert.Equal(0xA000UL - 4, Cpu.GetGpr(4));
        Assert.Equal(0x1000Du, Dword(0x6000 + 32));        // A saved at the faulting MOV
        Assert.Equal(0x28u, Dword(0x6100) & 0xFFFF);       // linked, as for a CALL
        Assert.NotEqual(0UL, Cpu.Rflags & (1UL << 14));
    }

    [Fact]
    public void RealModeGuestRunsAtItsSegment()
    {
        _memory.WriteRam(0x10000, Convert.FromHexString("B068" + "E6E9" + "B069" + "E6E9" + "F4")); // 'h', 'i', hlt
        Cpu.SetSegment(Register.CS, Segment.Real(0x1000));
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            Cpu.SetSegment(s, Segment.Real(0));
        Cpu.Control = new ControlState(0x60000010, 0, 0, 0, 0);
        Cpu.Rip = 0;
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("hi", _console.ToString());
        Assert.Equal(9UL, Cpu.Rip);
    }

    [Fact]
    public void DeviceMemoryAccessesAreEmulatedByTheVmm()
    {
        LongMode(Convert.FromHexString(
            "B8000000FE" +           // mov eax, 0xFE000000
            "C70078563412" +         // mov dword [rax], 0x12345678
            "8B5804" +               // mov ebx, [rax+4]
            "F4"));
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal([new MmioAccess(0xFE00_0000, 4, true, 0x1234_5678), new MmioAccess(0xFE00_0004, 4, false, 0)], _mmio);
        Assert.Equal(0UL, Cpu.GetGpr(3));
    }

    [Fact]
    public void InterruptsAreDeliveredThroughTheIdt()
    {
        // IDT at 0x4000 with vector 0x40 -> handler at 0x10100; GDT at 0x5000 with the code segment at 0x08.
        ulong handler = InstallGate(0x40);
        LongMode(Convert.FromHexString("FB" + "90" + "EBFE")); // sti; nop; jmp $
        _memory.WriteRam(handler, Convert.FromHexString("B069" + "E6E9" + "F4")); // 'i'; hlt
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        Cpu.Rflags = Rflags.Fixed1;
        _vm.Vcpus[0].Apic.WriteRegister(0xF0, 0x1FF);
        _vm.Vcpus[0].Apic.Accept(0x40, level: false);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code); // the handler halts with IF clear
        Assert.Equal("i", _console.ToString());
        Assert.Equal(handler + 5, Cpu.Rip);
        ulong rsp = Cpu.GetGpr(4);
        Span<byte> frame = stackalloc byte[40];
        Assert.True(_memory.ReadRam(rsp, frame));
        ulong returnRip = BitConverter.ToUInt64(frame);
        Assert.InRange(returnRip, Code + 1, Code + 4); // interrupted after STI's shadow, in the loop
        Assert.Equal(0x08UL, BitConverter.ToUInt64(frame[8..]));
        Assert.NotEqual(0UL, BitConverter.ToUInt64(frame[16..]) & Rflags.IF);
    }

    [Fact]
    public void Cr8IsTheApicsTaskPriority()
    {
        // CR8 = 5 sets TPR to 0x50, which holds back vector 0x40 (class 4) even with IF set; the
        // guest prints 'a', then lowers CR8 to 0 and the interrupt arrives ('i', then HLT). CR8
        // reads back through another register (r12).
        ulong handler = InstallGate(0x40);
        LongMode(Convert.FromHexString(
            "B805000000" + "440F22C0" + "450F20C4" + // mov eax, 5; mov cr8, rax; mov r12, cr8
            "FB" + "90" + "90" + "B061" + "E6E9" +   // sti; nop; nop; mov al, 'a'; out 0xE9, al
            "31C0" + "440F22C0" + "EBFE"));           // xor eax, eax; mov cr8, rax; jmp $
        _memory.WriteRam(handler, Convert.FromHexString("B069" + "E6E9" + "F4")); // 'i'; hlt
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        Cpu.Rflags = Rflags.Fixed1;
        var apic = _vm.Vcpus[0].Apic;
        apic.WriteRegister(0xF0, 0x1FF);
        apic.Accept(0x40, level: false);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("ai", _console.ToString());
        Assert.Equal(5UL, Cpu.GetGpr(12));
        Assert.Equal(0u, apic.ReadRegister(0x80));
    }

    [Fact]
    public void Cr8WithReservedBitsIsGeneralProtection()
    {
        ulong handler = InstallGate(13);
        LongMode(Convert.FromHexString("B810000000" + "440F22C0" + "F4")); // mov eax, 0x10; mov cr8, rax
        _memory.WriteRam(handler, Convert.FromHexString("B067" + "E6E9" + "F4")); // 'g'; hlt
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        Cpu.Rflags = Rflags.Fixed1;
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("g", _console.ToString());
        Assert.Equal(0u, _vm.Vcpus[0].Apic.ReadRegister(0x80));
    }

    // Sets CR4.OSFXSR and CR4.OSXSAVE (mov rax, cr4; or eax, 0x40200; mov cr4, rax).
    private const string EnableXsave = "0F20E0" + "0D00020400" + "0F22E0";

    [Fact]
    public void XsaveStateGoesThroughXsetbvXsaveAndXrstor()
    {
        // XGETBV reads XCR0 = 1 (x87) after reset; XSETBV (a VM exit the vmm completes) sets x87
        // and SSE; XSAVE of both to a 64-byte aligned area, XMM3 cleared, XRSTOR brings it back.
        // XSAVE writes nothing but the components and XSTATE_BV: the bytes software may use (416)
        // and the rest of the header keep what they held.
        _memory.WriteRam(0x9000 + 416, BitConverter.GetBytes(0x5A5A_5A5A_5A5A_5A5AUL));
        _memory.WriteRam(0x9220, BitConverter.GetBytes(0xA5A5_A5A5_A5A5_A5A5UL)); // header bytes XRSTOR does not check
        LongMode(Convert.FromHexString(EnableXsave +
            "31C9" + "0F01D0" + "4989C0" +                 // xor ecx, ecx; xgetbv; mov r8, rax
            "B803000000" + "31D2" + "0F01D1" +             // mov eax, 3; xor edx, edx; xsetbv
            "0F01D0" + "4989C1" +                          // xgetbv; mov r9, rax
            "48B88877665544332211" + "66480F6ED8" +        // mov rax, 0x1122334455667788; movq xmm3, rax
            "B803000000" + "31D2" + "0FAE242500900000" +   // mov eax, 3; xor edx, edx; xsave [0x9000]
            "660FEFDB" + "0FAE2C2500900000" +              // pxor xmm3, xmm3; xrstor [0x9000]
            "66490F7EDA" + "F4"));                         // movq r10, xmm3; hlt
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(1UL, Cpu.GetGpr(8));
        Assert.Equal(3UL, Cpu.GetGpr(9));
        Assert.Equal(0x1122334455667788UL, Cpu.GetGpr(10));
        Assert.Equal(3UL, Cpu.Xcr0);
        Span<byte> area = stackalloc byte[576];
        Assert.True(_memory.ReadRam(0x9000, area));
        Assert.Equal(0x037FU, BitConverter.ToUInt16(area));              // FCW
        Assert.Equal(0x1F80U, BitConverter.ToUInt32(area[24..]));        // MXCSR
        Assert.Equal(0x1122334455667788UL, BitConverter.ToUInt64(area[(160 + 3 * 16)..])); // XMM3
        Assert.Equal(3UL, BitConverter.ToUInt64(area[512..]));           // XSTATE_BV
        Assert.Equal(0x5A5A_5A5A_5A5A_5A5AUL, BitConverter.ToUInt64(area[416..]));
        Assert.Equal(0xA5A5_A5A5_A5A5_A5A5UL, BitConverter.ToUInt64(area[544..]));
        Assert.Equal(0UL, BitConverter.ToUInt64(area[520..]));           // XCOMP_BV untouched
    }

    [Fact]
    public void XrstorInitialisesComponentsTheHeaderMarksUnused()
    {
        // XSTATE_BV = SSE only: XRSTOR loads XMM3 and MXCSR from the area and puts the x87 state
        // (loaded by FLDPI) back to its initial state, whatever the area's x87 bytes say.
        _memory.WriteRam(0x9000, BitConverter.GetBytes((ushort)0x027F));
        _memory.WriteRam(0x9018, BitConverter.GetBytes(0x1FC0u));
        _memory.WriteRam(0x9000 + 160 + 48, BitConverter.GetBytes(0xCAFEF00DUL));
        _memory.WriteRam(0x9200, BitConverter.GetBytes(2UL));
        LongMode(Convert.FromHexString(EnableXsave +
            "31C9B80300000031D20F01D1" +                   // xsetbv x87 | SSE
            "D9EB" + "B80300000031D2" + "0FAE2C2500900000" + // fldpi; xrstor [0x9000] with RFBM 3
            "D93C2500A00000" + "0FAE1C2504A00000" +        // fnstcw [0xA000]; stmxcsr [0xA004]
            "DFE0" + "4989C3" + "66490F7EDA" + "F4"));     // fnstsw ax; mov r11, rax; movq r10, xmm3; hlt
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Span<byte> saved = stackalloc byte[8];
        Assert.True(_memory.ReadRam(0xA000, saved));
        Assert.Equal(0x037FU, BitConverter.ToUInt16(saved));    // FCW initialised, not the area's 0x027F
        Assert.Equal(0x1FC0U, BitConverter.ToUInt32(saved[4..])); // MXCSR from the area
        Assert.Equal(0UL, Cpu.GetGpr(11) & 0xFFFF);              // FSW: TOP back to 0
        Assert.Equal(0xCAFEF00DUL, Cpu.GetGpr(10));
    }

    [Fact]
    public void XsaveCarriesAvxStateAtV3()
    {
        // At x86-64-v3 XSETBV accepts AVX's state; YMM1 all ones goes (by XSAVEOPT) to the area's AVX component
        // (576 + 16) and back through XRSTOR after VPXOR cleared it, and XSTATE_BV has all three bits.
        // A v3 machine over the same RAM (a Vm owns nothing else; the fixture disposes the RAM).
        _vm = new Vm(new VmxBackend(_memory, _ => new SoftProcessor(_memory, _clock), "soft"), 1, _memory, _clock, CpuLevel.V3);
        LongMode(Convert.FromHexString(EnableXsave +
            "B80700000031D231C90F01D1" +                // xsetbv x87 | SSE | AVX
            "C5F574C9" +                                // vpcmpeqb ymm1, ymm1, ymm1
            "B80700000031D20FAE342500900000" +          // xsaveopt [0x9000]
            "C5F5EFC9" +                                // vpxor ymm1, ymm1, ymm1
            "B80700000031D20FAE2C2500900000" +          // xrstor [0x9000]
            "C5FE7F0C2500A00000" + "F4"));              // vmovdqu [0xA000], ymm1; hlt
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(7UL, Cpu.Xcr0);
        Span<byte> area = stackalloc byte[832];
        Assert.True(_memory.ReadRam(0x9000, area));
        Assert.Equal(7UL, BitConverter.ToUInt64(area[512..]));                     // XSTATE_BV
        Assert.Equal(UInt128.MaxValue, BitConverter.ToUInt128(area[(160 + 16)..])); // XMM1
        Assert.Equal(UInt128.MaxValue, BitConverter.ToUInt128(area[(576 + 16)..])); // YMM1's upper half
        Span<byte> ymm = stackalloc byte[32];
        Assert.True(_memory.ReadRam(0xA000, ymm));
        Assert.Equal(-1, ymm.IndexOfAnyExcept((byte)0xFF)); // all 256 bits back
    }

    [Theory]
    [InlineData("B9010000000F01D0", 'g')]                                      // XGETBV of XCR1
    [InlineData("31C9B80200000031D20F01D1", 'g')]                              // XSETBV without x87
    [InlineData("31C9B80700000031D20F01D1", 'g')]                              // XSETBV of AVX, not offered
    [InlineData("B901000000B80100000031D20F01D1", 'g')]                        // XSETBV of XCR1
    [InlineData("B80300000031D20FAE242510900000", 'g')]                        // XSAVE to an area 16 bytes off 64
    [InlineData("48C704250892000001000000B80300000031D20FAE2C2500900000", 'g')] // XRSTOR with XCOMP_BV set
    [InlineData("48C704250092000004000000B80300000031D20FAE2C2500900000", 'g')] // XRSTOR of a component XCR0 lacks
    [InlineData("31C9B80300000031D20F01D1C7042518900000000001000FAE2C2500900000", 'g')] // XRSTOR of a reserved MXCSR bit
    [InlineData("X0F01D0", 'u')]                                               // XGETBV with CR4.OSXSAVE clear
    public void XsaveFaultsAsTheSdmSays(string hex, char expected)
    {
        // #UD prints 'u', #GP 'g'; "X" runs the code without setting CR4.OSXSAVE first.
        bool withoutXsave = hex.StartsWith('X');
        LongMode(Convert.FromHexString((withoutXsave ? "" : EnableXsave) + hex.TrimStart('X') + "F4"));
        _memory.WriteRam(InstallGate(6), Convert.FromHexString("B075E6E9F4"));
        _memory.WriteRam(InstallGate(13, Code + 0x200), Convert.FromHexString("B067E6E9F4"));
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(expected.ToString(), _console.ToString());
        Assert.Equal(1UL, Cpu.Xcr0 & ~2UL); // no rejected value reached XCR0
    }

    [Fact]
    public void TimersFireInVirtualTimeWhileTheGuestRuns()
    {
        // The local APIC timer interrupts a spinning guest: virtual time moves with retired instructions.
        ulong handler = InstallGate(0x30);
        LongMode(Convert.FromHexString("FB" + "EBFE")); // sti; jmp $
        _memory.WriteRam(handler, Convert.FromHexString("B074" + "E6E9" + "F4"));
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0xFF);
        var apic = _vm.Vcpus[0].Apic;
        apic.WriteRegister(0xF0, 0x1FF);
        apic.WriteRegister(0x3E0, 0xB);    // divide by 1
        apic.WriteRegister(0x320, 0x30);   // one-shot, vector 0x30
        apic.WriteRegister(0x380, 100_000); // 100 µs of virtual time
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("t", _console.ToString());
        Assert.InRange(_clock.Now, 100_000, 110_000);
    }

    [Fact]
    public void ProtectedModeGuestSwitchesToLongMode()
    {
        // What a Multiboot kernel does first: from flat 32-bit protected mode, PAE, CR3, EFER.LME
        // (RDMSR/WRMSR through the vmm), paging on, a far jump into a 64-bit code segment.
        _memory.WriteRam(0x1000, BitConverter.GetBytes(0x2000UL | 3));
        _memory.WriteRam(0x2000, BitConverter.GetBytes(0x3000UL | 3));
        _memory.WriteRam(0x3000, BitConverter.GetBytes(0x0UL | 0x83));
        _memory.WriteRam(0x5008, BitConverter.GetBytes(0x00CF_9A00_0000_FFFFUL)); // 0x08: 32-bit code
        _memory.WriteRam(0x5010, BitConverter.GetBytes(0x00CF_9200_0000_FFFFUL)); // 0x10: data
        _memory.WriteRam(0x5018, BitConverter.GetBytes(0x00AF_9A00_0000_FFFFUL)); // 0x18: 64-bit code
        _memory.WriteRam(Code, Convert.FromHexString(
            "0F20E0" + "83C820" + "0F22E0" +      // mov eax, cr4; or eax, PAE; mov cr4, eax
            "B800100000" + "0F22D8" +              // mov eax, 0x1000; mov cr3, eax
            "B9800000C0" + "0F32" +                // mov ecx, EFER; rdmsr
            "0D00010000" + "0F30" +                // or eax, LME; wrmsr
            "0F20C0" + "0D00000080" + "0F22C0" +  // mov eax, cr0; or eax, PG; mov cr0, eax
            "EA0001010018 00".Replace(" ", "")));  // jmp 0x18:0x10100
        _memory.WriteRam(Code + 0x100, Convert.FromHexString("B036E6E9" + "B034E6E9" + "F4")); // '6', '4', hlt
        Cpu.SetSegment(Register.CS, new Segment(0x08, 0, 0xFFFF_FFFF, 0xC09B));
        foreach (Register s in new[] { Register.ES, Register.SS, Register.DS, Register.FS, Register.GS })
            Cpu.SetSegment(s, new Segment(0x10, 0, 0xFFFF_FFFF, 0xC093));
        Cpu.Gdtr = new TableRegister(0x5000, 0x1F);
        Cpu.Control = new ControlState(PagingState.Cr0PE | 0x10, 0, 0, 0, 0);
        Cpu.Rip = Code;
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("64", _console.ToString());
        ControlState c = Cpu.Control;
        Assert.Equal(PagingState.EferLME | PagingState.EferLMA, c.Efer & (PagingState.EferLME | PagingState.EferLMA));
        Assert.NotEqual(0UL, c.Cr0 & PagingState.Cr0PG);
        Assert.Equal(0x18, Cpu.GetSegment(Register.CS).Selector);
        Assert.True(Cpu.GetSegment(Register.CS).Long);
        Assert.NotEqual(0UL, Vmcs.Read(Cpu.State, VmcsField.EntryControls) & VmxConversions.EntryIa32eMode);
    }

    [Fact]
    public void HandlersReturnWithIret()
    {
        // 64-bit: an interrupt handler prints and returns with IRETQ; the main code then halts.
        ulong handler = InstallGate(0x40);
        _memory.WriteRam(0x5010, BitConverter.GetBytes(0x00CF_9300_0000_FFFFUL));
        LongMode(Convert.FromHexString("FB" + "90" + "90" + "FA" + "B072E6E9" + "F4")); // sti; nop; nop; cli; 'r'; hlt
        _memory.WriteRam(handler, Convert.FromHexString("B069E6E9" + "48CF")); // 'i'; iretq
        Cpu.Idtr = new TableRegister(0x4000, 0xFFF);
        Cpu.Gdtr = new TableRegister(0x5000, 0x17);
        Cpu.Rflags = Rflags.Fixed1;
        _vm.Vcpus[0].Apic.WriteRegister(0xF0, 0x1FF);
        _vm.Vcpus[0].Apic.Accept(0x40, level: false);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("ir", _console.ToString());
        Assert.Equal(0x8000UL, Cpu.GetGpr(4)); // the frame was popped
    }

    [Fact]
    public void StringInstructionsFillCopyAndCompare()
    {
        LongMode(Convert.FromHexString(
            "BF00000200" + "B964000000" + "B041" + "F3AA" +          // rdi=0x20000, rcx=100, al='A', rep stosb
            "BE00000200" + "BF00000300" + "B964000000" + "F3A4" +    // rep movsb to 0x30000
            "BE00000200" + "BF00000300" + "B964000000" + "F3A6" +    // repe cmpsb
            "7504" + "B079" + "EB02" + "B06E" + "E6E9" +             // jne +4; 'y' or 'n'; out
            "F4"));
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal("y", _console.ToString());
        Span<byte> copy = stackalloc byte[101];
        Assert.True(_memory.ReadRam(0x30000, copy));
        Assert.Equal(-1, copy[..100].IndexOfAnyExcept((byte)'A')); // all 100 copied
        Assert.Equal(0, copy[100]);
        Assert.Equal(0UL, Cpu.GetGpr(1));
        Assert.Equal(0x30064UL, Cpu.GetGpr(7));
    }

    [Fact]
    public void FramesLoopsAndByteSwaps()
    {
        LongMode(Convert.FromHexString(
            "55" + "4889E5" + "4883EC10" + "C9" +         // push rbp; mov rbp, rsp; sub rsp, 16; leave
            "B903000000" + "31C0" + "FFC0" + "E2FC" +     // mov ecx, 3; xor eax, eax; L: inc eax; loop L
            "67E302" + "B0FF" +                           // jecxz +2 (taken: ecx is 0); mov al, 0xFF (skipped)
            "BB44332211" + "0FCB" +                       // mov ebx, 0x11223344; bswap ebx
            "F4"));
        Cpu.SetGpr(5, 0x1234);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(0x8000UL, Cpu.GetGpr(4));          // LEAVE undid the frame and popped RBP
        Assert.Equal(0x1234UL, Cpu.GetGpr(5));
        Assert.Equal(3UL, Cpu.GetGpr(0));               // LOOP ran three times; JECXZ skipped the MOV
        Assert.Equal(0x4433_2211UL, Cpu.GetGpr(3));
    }

    [Fact]
    public void CodeWrittenInsideTheRunningBlockRunsAsWritten()
    {
        // Both instructions are fast forms, so they make one block; the store rewrites the
        // immediate of the MOV that follows it in the same block.
        LongMode(Convert.FromHexString(
            "C605010000000" + "2" + // mov byte [rip+1], 2: the MOV's first immediate byte
            "B801000000" +          // mov eax, 1 (becomes mov eax, 2)
            "F4"));
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(2UL, Cpu.GetGpr(0));
    }

    [Fact]
    public void CodeRewrittenBetweenRunsOfABlockRunsAsWritten()
    {
        LongMode(Convert.FromHexString(
            "B902000000" +            // mov ecx, 2
            "31DB" +                  // xor ebx, ebx
            "B801000000" +            // L: mov eax, 1 (its immediate becomes 5)
            "01C3" +                  // add ebx, eax
            "C605F3FFFFFF05" +        // mov byte [rip-13], 5: the immediate above
            "FFC9" +                  // dec ecx
            "75EE" +                  // jnz L
            "F4"));
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(6UL, Cpu.GetGpr(3));
        Assert.Equal(1 + 1 + 2 * 5L, Cpu.Retired);
    }

    [Fact]
    public void SelectorQueriesAnswerFromTheDescriptors()
    {
        LongMode(Convert.FromHexString(
            "66B81000" + "0F00E8" + "410F94C0" +  // mov ax, 0x10; verw ax (writable data); setz r8b
            "66B80800" + "0F00E8" + "410F94C1" +  // mov ax, 0x08; verw ax (code); setz r9b
            "0F00E0" + "410F94C2" +               // verr ax (readable code); setz r10b
            "66B81800" + "0F00E0" + "410F94C3" +  // mov ax, 0x18; verr ax (execute-only code); setz r11b
            "66B82000" + "0F03D8" + "0F02C8" +    // mov ax, 0x20; lsl ebx, ax; lar ecx, ax (byte-granular DPL 3 data)
            "66B81000" + "0F03D0" +               // mov ax, 0x10; lsl edx, ax (4 KiB granular)
            "31F6" + "66B80000" + "0F03F0" + "410F94C4" + // xor esi, esi; mov ax, 0; lsl esi, ax (null); setz r12b
            "F4"));
        _memory.WriteRam(0x5008, BitConverter.GetBytes(0x00AF_9B00_0000_FFFFUL)); // 64-bit code, readable
        _memory.WriteRam(0x5010, BitConverter.GetBytes(0x00CF_9300_0000_FFFFUL)); // data, writable, G
        _memory.WriteRam(0x5018, BitConverter.GetBytes(0x00AF_9900_0000_FFFFUL)); // code, execute-only
        _memory.WriteRam(0x5020, BitConverter.GetBytes(0x0040_F100_0000_1234UL)); // data, read-only, DPL 3
        Cpu.Gdtr = new TableRegister(0x5000, 0x27);
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(1UL, Cpu.GetGpr(8));
        Assert.Equal(0UL, Cpu.GetGpr(9));
        Assert.Equal(1UL, Cpu.GetGpr(10));
        Assert.Equal(0UL, Cpu.GetGpr(11));
        Assert.Equal(0x1234UL, Cpu.GetGpr(3));
        Assert.Equal(0x40F100UL, Cpu.GetGpr(1));
        Assert.Equal(0xFFFF_FFFFUL, Cpu.GetGpr(2));
        Assert.Equal(0UL, Cpu.GetGpr(6));
        Assert.Equal(0UL, Cpu.GetGpr(12));
    }

    [Fact]
    public void ConversionsAndScalarLoadsTakeMemoryOperands()
    {
        // The register forms are checked against the host CPU; these are the memory forms, with
        // values worked out by hand: 3.75 truncates to 3 and rounds to 4; -2.5 truncates to -2
        // and rounds (to even) to -2; a MOVSD load clears the upper half of the register.
        _memory.WriteRam(0x9000, BitConverter.GetBytes(3.75));
        _memory.WriteRam(0x9008, BitConverter.GetBytes(-2.5f));
        LongMode(Convert.FromHexString(
            "48C7C000900000" +  // mov rax, 0x9000
            "F20F2C08" +        // cvttsd2si ecx, [rax]
            "F20F2D10" +        // cvtsd2si edx, [rax]
            "F3480F2C5808" +    // cvttss2si rbx, [rax+8]
            "F3480F2D7008" +    // cvtss2si rsi, [rax+8]
            "F20F1000" +        // movsd xmm0, [rax]
            "F4"));
        Cpu.Control = Cpu.Control with { Cr4 = Cpu.Control.Cr4 | PagingState.Cr4OSFXSR };
        Cpu.Area.Xmm[0] = UInt128.MaxValue;
        Assert.Equal(VmExitCode.Hlt, RunUntilStopped().Code);
        Assert.Equal(3UL, Cpu.GetGpr(1));
        Assert.Equal(4UL, Cpu.GetGpr(2));
        Assert.Equal(unchecked((ulong)-2L), Cpu.GetGpr(3));
        Assert.Equal(unchecked((ulong)-2L), Cpu.GetGpr(6));
        Assert.Equal((UInt128)(ulong)BitConverter.DoubleToInt64Bits(3.75), Cpu.Area.Xmm[0]);
    }
}
