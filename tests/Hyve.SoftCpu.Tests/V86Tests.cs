// Virtual-8086 mode against the SDM, hand-derived (the host cannot run it): a CPL 0 task in
// 32-bit protected mode enters it with IRET; the 8086 program's segments load as in real mode,
// the IOPL-sensitive instructions fault below IOPL 3, interrupts leave for a CPL 0 handler with
// the segment registers on its stack, IRET comes back, VME virtualizes IF and redirects INT n
// by the TSS's bitmap, and the I/O bitmap applies at any IOPL.
using System;
using Hyve.Vmm;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Vmx;
using Hyve.X86;
using Xunit;

namespace Hyve.SoftCpu.Tests;

public sealed class V86Tests : IDisposable
{
    private const ulong Vm = 1UL << 17, Vif = 1UL << 19, Vip = 1UL << 20, Iopl3 = 3UL << 12, If = 1UL << 9;
    private const ulong Gdt = 0x5000, Tss = 0x6000, Idt = 0x4000, Handlers = 0x7000, Kernel = 0x10000;
    private const ulong V86Code = 0x30000; // 3000:0000
    private const int IoMap = 0x88;        // the redirection bitmap is the 32 bytes below it
    private readonly System.Collections.Generic.List<GuestMemory> _memories = [];
    private GuestMemory _memory = null!;

    public void Dispose()
    {
        foreach (GuestMemory m in _memories)
            m.Dispose();
    }

    private sealed record Outcome(BackendExit Exit, int Vector, VmxVcpu Cpu, GuestMemory Memory)
    {
        // The vector whose handler halted (handlers are HLT at Handlers + 4 × vector).
        public int Handler => (int)((Cpu.Rip - 1 - Handlers) / 4);

        public uint Stack(int k)
        {
            Span<byte> b = stackalloc byte[4];
            Assert.True(Memory.ReadRam(Cpu.GetGpr(4) + 4 * (ulong)k, b));
            return BitConverter.ToUInt32(b);
        }
    }

    // Enters virtual-8086 mode at 3000:0000 (stack 2000:0FFE) with eflags, from CPL 0, and runs
    // until an exit: with exits, every exception exits (Vector); otherwise they reach the
    // handlers (a HLT each; vector 0x30's gate is DPL 3).
    private Outcome Run(string code, ulong eflags, ulong cr4 = 0, bool exits = false, Action<GuestMemory>? setup = null)
    {
        _memory = new GuestMemory();
        _memories.Add(_memory);
        _memory.AddRam(0, 0x20_0000);
        var vcpu = new VmxVcpu(new SoftProcessor(_memory, new VmClock()), 0xF000_0000) { Memory = _memory };
        // GDT: null, 0x08 code (DPL 0), 0x10 data (DPL 0), 0x18 the 32-bit TSS.
        ulong tssLimit = IoMap + 0x2000;
        ulong tssDescriptor = (tssLimit & 0xFFFF) | ((Tss & 0xFF_FFFF) << 16) | (0x89UL << 40) | ((tssLimit >> 16) << 48);
        Write(Gdt, [0, 0x00CF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF, tssDescriptor]);
        _memory.WriteRam(Tss + 4, BitConverter.GetBytes(0x9000u));          // ESP0
        _memory.WriteRam(Tss + 8, BitConverter.GetBytes(0x10u));            // SS0
        _memory.WriteRam(Tss + 0x66, BitConverter.GetBytes((ushort)IoMap)); // I/O map base
        _memory.WriteRam(Tss + IoMap + 0x2000, [0xFF]);
        for (int v = 0; v < 256; v++)
        {
            ulong handler = Handlers + 4 * (ulong)v;
            ulong dpl = v == 0x30 ? 3UL : 0;
            ulong gate = (handler & 0xFFFF) | (0x08UL << 16) | ((0x8EUL | (dpl << 5)) << 40) | ((handler >> 16) << 48);
            Write(Idt + 8 * (ulong)v, [gate]);
            _memory.WriteRam(handler, [0xF4, 0xF4, 0xF4, 0xF4]);
        }
        // ltr ax (0x18); push GS, FS, DS, ES, SS, ESP, EFLAGS, CS, EIP; iret.
        var k = new System.Collections.Generic.List<byte> { 0x66, 0xB8, 0x18, 0x00, 0x0F, 0x00, 0xD8 };
        foreach (uint v in new uint[] { 0, 0, 0, 0, 0x2000, 0x0FFE, (uint)eflags, 0x3000, 0 })
            k.AddRange([0x68, .. BitConverter.GetBytes(v)]);
        k.Add(0xCF);
        _memory.WriteRam(Kernel, [.. k]);
        _memory.WriteRam(V86Code, Convert.FromHexString(code));
        setup?.Invoke(_memory);
        HostCpuHarness.EnterMode(vcpu, _memory, 32, cr4);
        vcpu.Gdtr = new TableRegister(Gdt, 0x1F);
        vcpu.Idtr = new TableRegister(Idt, 0x7FF);
        vcpu.SetGpr(4, 0x8000);
        if (exits)
            Vmcs.Write(vcpu.State, VmcsField.ExceptionBitmap, 0xFFFF_FFFF);
        BackendExit exit = vcpu.Run();
        return new Outcome(exit, HostCpuHarness.ExitVector(vcpu, exit, exceptionOnly: false), vcpu, _memory);
    }

    private void Write(ulong at, ulong[] words)
    {
        for (int i = 0; i < words.Length; i++)
            _memory.WriteRam(at + 8 * (ulong)i, BitConverter.GetBytes(words[i]));
    }

    [Fact]
    public void SegmentsLoadAsInRealModeAndAnInterruptLeavesForCpl0WithThemOnTheStack()
    {
        // mov ax, 0x1234; mov ds, ax; mov word [0x10], 0xABCD; int 0x30 (IOPL 3).
        Outcome o = Run("B834128ED8C7061000CDABCD30", Vm | Iopl3 | 2);
        Assert.Equal(BackendExitKind.Hlt, o.Exit.Kind);
        Assert.Equal(0x30, o.Handler);
        Span<byte> w = stackalloc byte[2];
        Assert.True(_memory.ReadRam(0x12350, w));
        Assert.Equal(0xABCD, BitConverter.ToUInt16(w));
        // EIP, CS, EFLAGS (VM set), ESP, SS, ES, DS, FS, GS on the TSS's CPL 0 stack.
        Assert.Equal(0x9000UL - 36, o.Cpu.GetGpr(4));
        uint[] frame = [0x0D, 0x3000, 0, 0x0FFE, 0x2000, 0, 0x1234, 0, 0];
        for (int k = 0; k < frame.Length; k++)
        {
            if (k != 2)
                Assert.Equal(frame[k], o.Stack(k));
        }
        Assert.Equal(Vm | Iopl3, o.Stack(2) & (Vm | Iopl3));
        Assert.Equal((ushort)0x08, o.Cpu.GetSegment(Register.CS).Selector);
        Assert.Equal((ushort)0x10, o.Cpu.GetSegment(Register.SS).Selector);
        Assert.Equal((ushort)0, o.Cpu.GetSegment(Register.DS).Selector);
        Assert.Equal(0UL, o.Cpu.Rflags & Vm);
    }

    [Fact]
    public void IretFromTheHandlerReturnsToTheProgram()
    {
        // int 0x30 (its handler is IRET); cli; hlt: HLT at CPL 3 is #GP, whose handler halts
        // with the error code and the frame of the HLT.
        Outcome o = Run("CD30FAF4", Vm | Iopl3 | If | 2, setup: m => m.WriteRam(Handlers + 4 * 0x30, [0xCF]));
        Assert.Equal(13, o.Handler);
        Assert.Equal(0u, o.Stack(0));       // error code
        Assert.Equal(3u, o.Stack(1));       // EIP of the HLT
        Assert.Equal(0x3000u, o.Stack(2));
        Assert.Equal(0UL, o.Stack(3) & If); // CLI ran at IOPL 3
    }

    [Theory]
    [InlineData("FAF4")]   // cli
    [InlineData("FBF4")]   // sti
    [InlineData("9CF4")]   // pushf
    [InlineData("9DF4")]   // popf
    [InlineData("CD21F4")] // int 0x21
    [InlineData("CFF4")]   // iret
    public void SensitiveInstructionsFaultBelowIopl3(string code)
    {
        Outcome o = Run(code, Vm | 2, exits: true);
        Assert.Equal(13, o.Vector);
        Assert.Equal(0UL, o.Cpu.Rip); // #GP(0) on the instruction itself
    }

    [Fact]
    public void AtIopl3TheSensitiveInstructionsRun()
    {
        // cli; sti; pushf; popf; int 0x30 (its handler is IRET); pushf; push cs; push 0x000E;
        // iret (to 3000:000E); nop; nop; hlt: only the HLT faults.
        Outcome o = Run("FAFB9C9DCD309C0E680E00CF9090F4", Vm | Iopl3 | 2, setup: m => m.WriteRam(Handlers + 4 * 0x30, [0xCF]));
        Assert.Equal(13, o.Handler);
        Assert.Equal(0x0Eu, o.Stack(1));
        Assert.Equal(If, o.Stack(3) & If); // STI ran
    }

    [Fact]
    public void VmeKeepsTheInterruptFlagVirtual()
    {
        // cli; pushf; sti; pushf; hlt with IOPL 0 and IF set: the pushed images carry VIF as IF
        // and IOPL 3; the real IF never changes.
        Outcome o = Run("FA9CFB9CF4", Vm | If | 2, cr4: 1, exits: true);
        Assert.Equal(13, o.Vector);
        Assert.Equal(4UL, o.Cpu.Rip);
        Span<byte> b = stackalloc byte[4];
        Assert.True(_memory.ReadRam(0x20FFA, b));
        ushort second = BitConverter.ToUInt16(b), first = BitConverter.ToUInt16(b[2..]);
        Assert.Equal(0, first & (int)If);
        Assert.Equal((int)If, second & (int)If);
        Assert.Equal((int)Iopl3, first & (int)Iopl3);
        Assert.Equal(If | Vif, o.Cpu.Rflags & (If | Vif | Iopl3));
        // STI with an interrupt pending (VIP) faults instead.
        Outcome pending = Run("FBF4", Vm | Vip | 2, cr4: 1, exits: true);
        Assert.Equal(13, pending.Vector);
        Assert.Equal(0UL, pending.Cpu.Rip);
        // PUSHFD is #GP(0) even with VME.
        Assert.Equal(0UL, Run("669CF4", Vm | 2, cr4: 1, exits: true).Cpu.Rip);
    }

    [Fact]
    public void VmeRedirectsSoftwareInterruptsByTheTssBitmap()
    {
        // int 0x21 with bit 0x21 clear: the 8086 program's vector 0x21 (4000:0000) gets FLAGS, CS
        // and IP; there, int 0x30 has its bit set and IOPL is 0: #GP(0).
        Outcome o = Run("CD21", Vm | If | Vif | 2, cr4: 1, exits: true, setup: m =>
        {
            m.WriteRam(0x84, BitConverter.GetBytes(0x4000_0000u));
            m.WriteRam(0x40000, [0xCD, 0x30]);
            m.WriteRam(Tss + IoMap - 32 + (0x30 >> 3), [1 << (0x30 & 7)]);
        });
        Assert.Equal(13, o.Vector);
        Assert.Equal((ushort)0x4000, o.Cpu.GetSegment(Register.CS).Selector);
        Assert.Equal(0UL, o.Cpu.Rip);
        Span<byte> b = stackalloc byte[6];
        Assert.True(_memory.ReadRam(0x20FF8, b));
        Assert.Equal(2, BitConverter.ToUInt16(b));           // IP after the INT
        Assert.Equal(0x3000, BitConverter.ToUInt16(b[2..])); // CS
        Assert.Equal((int)(If | Iopl3), BitConverter.ToUInt16(b[4..]) & (int)(If | Iopl3)); // VIF was set
        Assert.Equal(If, o.Cpu.Rflags & (If | Vif));         // VIF cleared, IF kept
    }

    [Fact]
    public void PortsFollowTheIoBitmapEvenAtIopl3()
    {
        // out 0x80, al with port 0x80's bit set faults; out 0x81, al exits to the vmm.
        Action<GuestMemory> bitmap = m => m.WriteRam(Tss + IoMap + (0x80 >> 3), [1]);
        Assert.Equal(13, Run("E680", Vm | Iopl3 | 2, exits: true, setup: bitmap).Vector);
        Outcome port = Run("E681", Vm | Iopl3 | 2, exits: true, setup: bitmap);
        Assert.Equal(BackendExitKind.Io, port.Exit.Kind);
    }

    [Theory]
    [InlineData("0F00C8")] // str ax
    [InlineData("0F02C0")] // lar ax, ax
    [InlineData("0F00E0")] // verr ax
    [InlineData("63C0")]   // arpl ax, ax
    public void DescriptorInstructionsAreUndefined(string code) =>
        Assert.Equal(6, Run(code, Vm | Iopl3 | 2, exits: true).Vector);
}
