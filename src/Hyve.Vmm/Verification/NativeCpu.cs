// Runs one x86-64 instruction on the host CPU (the oracle for instruction semantics) through a
// small generated stub in an executable page below 4 GiB (so 32-bit addressing can reach its
// data area too). 32-bit code runs there as well: the stub far-jumps into the compatibility-mode
// code segment Linux gives every 64-bit process (0x23) and back to its 64-bit one (0x33), so the
// instructions 64-bit mode dropped have the host CPU as their oracle too.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace Hyve.Vmm.Verification;

/// <summary>Register state in and out of a native run.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct NativeState
{
    /// <summary>RAX in.</summary>
    public ulong Rax;
    /// <summary>RCX in.</summary>
    public ulong Rcx;
    /// <summary>RDX in.</summary>
    public ulong Rdx;
    /// <summary>RFLAGS in.</summary>
    public ulong FlagsIn;
    /// <summary>RAX out.</summary>
    public ulong RaxOut;
    /// <summary>RFLAGS out.</summary>
    public ulong FlagsOut;
    /// <summary>RDX out.</summary>
    public ulong RdxOut;
    /// <summary>RCX out.</summary>
    public ulong RcxOut;
}

/// <summary>Sixteen general registers, RAX first.</summary>
[System.Runtime.CompilerServices.InlineArray(16)]
public struct Gprs
{
    private ulong _e0;
}

/// <summary>Sixteen SSE registers, XMM0 first.</summary>
[System.Runtime.CompilerServices.InlineArray(16)]
public struct Xmms
{
    private UInt128 _e0;
}

/// <summary>All general registers (RSP excepted: the stub keeps the host's), RFLAGS and the SSE
/// registers, in and out.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct FullState
{
    /// <summary>Registers in.</summary>
    public Gprs In;
    /// <summary>RFLAGS in.</summary>
    public ulong FlagsIn;
    /// <summary>Registers out (RSP out is the value in).</summary>
    public Gprs Out;
    /// <summary>RFLAGS out.</summary>
    public ulong FlagsOut;
    /// <summary>XMM registers in.</summary>
    public Xmms XmmIn;
    /// <summary>XMM registers out.</summary>
    public Xmms XmmOut;
}

/// <summary>
/// Executes instructions natively: loads RAX, RCX, RDX and RFLAGS from a <see cref="NativeState"/>,
/// runs the instruction bytes, stores RAX, RCX, RDX and RFLAGS back. Only x86-64 Linux hosts.
/// </summary>
public sealed unsafe class NativeCpu : IDisposable
{
    private const int PageSize = 4096;
    private const int ScratchOffset = PageSize * 12;
    private const int DataOffset = PageSize * 14;
    // The host's x87/SSE state while a full stub runs (the instruction may load its own with FXRSTOR).
    private const int HostFpuOffset = PageSize * 13 + 2048;
    private readonly byte* _page;
    private readonly Dictionary<string, nint> _stubs = new(StringComparer.Ordinal);
    private int _used;

    /// <summary>Whether this host can run the stubs.</summary>
    public static bool Supported => RuntimeInformation.ProcessArchitecture == Architecture.X64 && OperatingSystem.IsLinux();

    /// <summary>Maps the stub and data pages.</summary>
    public NativeCpu()
    {
        // SAFETY: mmap returns a fresh private anonymous mapping or MAP_FAILED, which is checked.
        void* p = Mmap(null, PageSize * 16, 7 /* RWX */, 0x62 /* MAP_PRIVATE|MAP_ANONYMOUS|MAP_32BIT */, -1, 0);
        if (p == (void*)-1)
            throw new InvalidOperationException("mmap of an executable page failed");
        _page = (byte*)p;
    }

    /// <summary>Two pages of data below 4 GiB, for operands the instruction addresses.</summary>
    public Span<byte> Data => new(_page + DataOffset, 2 * PageSize);

    /// <summary>Address of <see cref="Data"/>.</summary>
    public ulong DataAddress => (ulong)(_page + DataOffset);

    /// <summary>Where a full-state run places the instruction (for RIP-relative operands).</summary>
    public ulong FullInstructionAddress => (ulong)(_page + ScratchOffset) + (ulong)FullHeadLength;

    private static readonly int FullHeadLength = HeadLength();

    private static int HeadLength()
    {
        FullStub([], 0, out int head);
        return head;
    }

    /// <summary>Runs <paramref name="instruction"/> with <paramref name="state"/>.</summary>
    public void Run(ReadOnlySpan<byte> instruction, ref NativeState state)
    {
        nint stub = Stub(instruction);
        // SAFETY: the stub was written into our executable mapping by Stub(); it reads and writes
        // only the NativeState passed in RDI (fixed for the call) and preserves callee-saved registers.
        fixed (NativeState* s = &state)
            ((delegate* unmanaged<NativeState*, void>)stub)(s);
    }

    /// <summary>Runs <paramref name="instruction"/> with every general register (but RSP) and RFLAGS
    /// loaded from <paramref name="state"/>, and stores them all back.</summary>
    public void Run(ReadOnlySpan<byte> instruction, ref FullState state)
    {
        nint stub = Stub(instruction, full: true);
        // SAFETY: the stub saves and restores the callee-saved registers and RSP, and reads and
        // writes only the FullState passed in RDI (fixed for the call).
        fixed (FullState* s = &state)
            ((delegate* unmanaged<FullState*, void>)stub)(s);
        state.Out[4] = state.In[4];
    }

    // FullState's layout: 16 registers in, RFLAGS in, 16 registers out, RFLAGS out.
    private const int FlagsInOffset = 16 * 8, OutOffset = 17 * 8, FlagsOutOffset = 33 * 8;

    // Linux's user selectors: compatibility-mode (32-bit) code, 64-bit code, flat data.
    private const ushort CompatibilityCode = 0x23, LongCode = 0x33, UserData = 0x2B;

    // Slots of the compatibility-mode stub (page 13, below the host FPU image): the host's RSP,
    // the state pointer, a scratch register, the two far pointers (m16:32) of the switches, and
    // the host's DS and ES.
    private const int SlotOffset = PageSize * 13;

    /// <summary>Runs <paramref name="instruction"/> as 32-bit code in compatibility mode, with EAX
    /// to EDI (ESP included: it must point into <see cref="Data"/>) and EFLAGS loaded from the low
    /// halves of <paramref name="state"/>, and stores them all back (the upper halves are
    /// undefined). DS, ES and SS are Linux's flat user data segment (0x2B) while it runs, and the
    /// host's are put back afterwards,
    /// so a far-pointer load may load that selector only; FS and GS must not be loaded (the host
    /// keeps thread state there), nor may the instruction fault (the host would see a signal).</summary>
    public void Run32(ReadOnlySpan<byte> instruction, ref FullState state)
    {
        byte[] stub = CompatibilityStub(instruction);
        // SAFETY: the scratch area is two pages of the mapping and the stub is far smaller; the
        // slots are in page 13, below the FPU image at page 13 + 2048.
        stub.CopyTo(new Span<byte>(_page + ScratchOffset, stub.Length));
        // SAFETY: the stub saves and restores the callee-saved registers, RSP and the data
        // segment registers, runs on the caller's stack only in 64-bit mode (ESP is the state's
        // own in 32-bit mode), and reads and writes only the FullState passed in RDI (fixed).
        fixed (FullState* s = &state)
            ((delegate* unmanaged<FullState*, void>)(_page + ScratchOffset))(s);
        for (int n = 0; n < 16; n++)
            state.Out[n] = n < 8 ? (uint)state.Out[n] : state.In[n];
        state.FlagsOut = (uint)state.FlagsOut;
    }

    private byte[] CompatibilityStub(ReadOnlySpan<byte> instruction)
    {
        uint slots = (uint)(ulong)(_page + SlotOffset);
        uint hostRsp = slots, statePtr = slots + 8, scratch = slots + 16, to32 = slots + 24, to64 = slots + 32, savedDs = slots + 40, savedEs = slots + 44;
        uint code = (uint)(ulong)(_page + ScratchOffset);
        var c = new List<byte> { 0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57 }; // push rbx, rbp, r12-r15
        Absolute(c, [0x48, 0x89, 0x24, 0x25], hostRsp);    // mov [hostRsp], rsp
        Absolute(c, [0x48, 0x89, 0x3C, 0x25], statePtr);   // mov [statePtr], rdi
        // 64-bit code runs with null DS and ES; 32-bit code needs them usable.
        c.AddRange([0x8C, 0xD8]);                          // mov eax, ds
        Absolute(c, [0x89, 0x04, 0x25], savedDs);          // mov [savedDs], eax
        c.AddRange([0x8C, 0xC0]);                          // mov eax, es
        Absolute(c, [0x89, 0x04, 0x25], savedEs);          // mov [savedEs], eax
        c.AddRange([0xB8, (byte)UserData, 0, 0, 0]);       // mov eax, 0x2B
        c.AddRange([0x8E, 0xD8, 0x8E, 0xC0]);              // mov ds, eax; mov es, eax
        c.AddRange([0xFF, 0xB7]);                          // push qword [rdi+FlagsIn]
        c.AddRange(BitConverter.GetBytes(FlagsInOffset));
        c.Add(0x9D);                                       // popfq
        for (int n = 0; n < 8; n++)
            Move(c, load: true, n, n * 8);                 // ESP too (the 32-bit code's stack); EDI, the pointer, last
        Absolute(c, [0xFF, 0x2C, 0x25], to32);             // jmp far [to32]: into compatibility mode
        uint at32 = code + (uint)c.Count;
        c.AddRange(instruction.ToArray());
        c.AddRange([0xFF, 0x2D]);                          // jmp far [to64] (32-bit absolute)
        c.AddRange(BitConverter.GetBytes(to64));
        uint at64 = code + (uint)c.Count;
        Absolute(c, [0x48, 0x89, 0x3C, 0x25], scratch);    // mov [scratch], rdi
        Absolute(c, [0x48, 0x8B, 0x3C, 0x25], statePtr);   // mov rdi, [statePtr]
        for (int n = 0; n < 7; n++)
            Move(c, load: false, n, OutOffset + n * 8);
        Absolute(c, [0x48, 0x8B, 0x04, 0x25], scratch);    // mov rax, [scratch]
        Move(c, load: false, 0, OutOffset + 7 * 8);
        Absolute(c, [0x48, 0x8B, 0x24, 0x25], hostRsp);    // mov rsp, [hostRsp] (MOV leaves the flags)
        c.AddRange([0x9C, 0x8F, 0x87]);                    // pushfq; pop qword [rdi+FlagsOut]
        c.AddRange(BitConverter.GetBytes(FlagsOutOffset));
        c.AddRange([0xB8, (byte)UserData, 0, 0, 0]);       // mov eax, 0x2B
        c.AddRange([0x8E, 0xD0]);                          // mov ss, eax (an LSS may have loaded it)
        Absolute(c, [0x8B, 0x04, 0x25], savedDs);          // mov eax, [savedDs]
        c.AddRange([0x8E, 0xD8]);                          // mov ds, eax
        Absolute(c, [0x8B, 0x04, 0x25], savedEs);          // mov eax, [savedEs]
        c.AddRange([0x8E, 0xC0]);                          // mov es, eax
        c.Add(0xFC);                                       // cld (the ABI's direction)
        c.AddRange([0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C, 0x5D, 0x5B]); // pop r15-r12, rbp, rbx
        c.Add(0xC3);
        // The far pointers: offset, then selector.
        var slot = new Span<byte>(_page + SlotOffset + 24, 16);
        BitConverter.TryWriteBytes(slot, at32);
        BitConverter.TryWriteBytes(slot[4..], CompatibilityCode);
        BitConverter.TryWriteBytes(slot[8..], at64);
        BitConverter.TryWriteBytes(slot[12..], LongCode);
        return c.ToArray();
    }

    // An instruction whose last four bytes are an absolute 32-bit address.
    private static void Absolute(List<byte> code, ReadOnlySpan<byte> opcode, uint address)
    {
        code.AddRange(opcode.ToArray());
        code.AddRange(BitConverter.GetBytes(address));
    }

    // mov r64, [rdi+disp32] / mov [rdi+disp32], r64 for register n.
    private static void Move(List<byte> code, bool load, int n, int disp)
    {
        code.Add((byte)(0x48 | ((n & 8) >> 1)));
        code.Add(load ? (byte)0x8B : (byte)0x89);
        code.Add((byte)(0x87 | ((n & 7) << 3)));
        code.AddRange(BitConverter.GetBytes(disp));
    }

    // movdqu xmmN, [rdi+disp32] / movdqu [rdi+disp32], xmmN.
    private static void MoveXmm(List<byte> code, bool load, int n, int disp)
    {
        code.Add(0xF3);
        if (n >= 8)
            code.Add(0x44);
        code.AddRange([0x0F, load ? (byte)0x6F : (byte)0x7F, (byte)(0x87 | ((n & 7) << 3))]);
        code.AddRange(BitConverter.GetBytes(disp));
    }

    // fxsave/fxrstor [disp32], an absolute address below 2 GiB.
    private static void SaveFpu(List<byte> code, bool restore, uint address)
    {
        code.AddRange([0x0F, 0xAE, restore ? (byte)0x0C : (byte)0x04, 0x25]);
        code.AddRange(BitConverter.GetBytes(address));
    }

    private static byte[] FullStub(ReadOnlySpan<byte> instruction, uint hostFpu, out int head)
    {
        int xmmIn = (int)Marshal.OffsetOf<FullState>(nameof(FullState.XmmIn));
        int xmmOut = (int)Marshal.OffsetOf<FullState>(nameof(FullState.XmmOut));
        var c = new List<byte> { 0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57 }; // push rbx, rbp, r12-r15
        SaveFpu(c, restore: false, hostFpu);          // the control words are the caller's to keep
        for (int n = 0; n < 16; n++)
            MoveXmm(c, load: true, n, xmmIn + n * 16);
        c.Add(0x57);                                  // push rdi (the state pointer)
        c.AddRange([0xFF, 0xB7]);                     // push qword [rdi+FlagsIn]
        c.AddRange(BitConverter.GetBytes(FlagsInOffset));
        c.Add(0x9D);                                  // popfq
        for (int n = 0; n < 16; n++)
        {
            if (n is 4 or 7)
                continue;
            Move(c, load: true, n, n * 8);
        }
        Move(c, load: true, 7, 7 * 8);                // rdi last: it held the pointer
        head = c.Count;
        c.AddRange(instruction.ToArray());
        c.Add(0x57);                                  // push rdi (the guest's)
        c.AddRange([0x48, 0x8B, 0x7C, 0x24, 0x08]);   // mov rdi, [rsp+8]: the state pointer
        for (int n = 0; n < 16; n++)
            MoveXmm(c, load: false, n, xmmOut + n * 16);
        c.AddRange([0x8F, 0x87]);                     // pop qword [rdi+out+7*8]
        c.AddRange(BitConverter.GetBytes(OutOffset + 7 * 8));
        for (int n = 0; n < 16; n++)
        {
            if (n is 4 or 7)
                continue;
            Move(c, load: false, n, OutOffset + n * 8);
        }
        c.Add(0x9C);                                  // pushfq
        c.AddRange([0x8F, 0x87]);                     // pop qword [rdi+FlagsOut]
        c.AddRange(BitConverter.GetBytes(FlagsOutOffset));
        c.Add(0x5F);                                  // pop rdi (discard the pointer copy)
        SaveFpu(c, restore: true, hostFpu);
        c.AddRange([0x41, 0x5F, 0x41, 0x5E, 0x41, 0x5D, 0x41, 0x5C, 0x5D, 0x5B]); // pop r15-r12, rbp, rbx
        c.Add(0xC3);
        return c.ToArray();
    }

    private nint Stub(ReadOnlySpan<byte> instruction, bool full = false)
    {
        string key = Convert.ToHexString(instruction);
        if (!full && _stubs.TryGetValue(key, out nint existing))
            return existing;
        if (full)
        {
            // Full stubs vary with every immediate: one scratch area is rewritten each time
            // (x86 keeps instruction fetch coherent with stores on the same core).
            byte[] stub = FullStub(instruction, (uint)(ulong)(_page + HostFpuOffset), out _);
            // SAFETY: the scratch area is two pages of the mapping and the stub is far smaller.
            stub.CopyTo(new Span<byte>(_page + ScratchOffset, stub.Length));
            return (nint)(_page + ScratchOffset);
        }
        ReadOnlySpan<byte> head =
        [
            0x48, 0x8B, 0x07,             // mov rax, [rdi]
            0x48, 0x8B, 0x4F, 0x08,       // mov rcx, [rdi+8]
            0x48, 0x8B, 0x57, 0x10,       // mov rdx, [rdi+16]
            0xFF, 0x77, 0x18,             // push qword [rdi+24]
            0x9D,                         // popfq
        ];
        ReadOnlySpan<byte> tail =
        [
            0x9C,                         // pushfq
            0x8F, 0x47, 0x28,             // pop qword [rdi+40]
            0x48, 0x89, 0x47, 0x20,       // mov [rdi+32], rax
            0x48, 0x89, 0x57, 0x30,       // mov [rdi+48], rdx
            0x48, 0x89, 0x4F, 0x38,       // mov [rdi+56], rcx
            0xC3,                         // ret
        ];
        var code = new byte[head.Length + instruction.Length + tail.Length];
        head.CopyTo(code);
        instruction.CopyTo(code.AsSpan(head.Length));
        tail.CopyTo(code.AsSpan(head.Length + instruction.Length));
        return Place(key, code);
    }

    private nint Place(string key, byte[] code)
    {
        if (_used + code.Length > ScratchOffset)
            throw new InvalidOperationException("stub pages full");
        // SAFETY: the destination range [_used, _used + length) lies inside the mapping (checked above).
        code.CopyTo(new Span<byte>(_page + _used, code.Length));
        nint addr = (nint)(_page + _used);
        _used += (code.Length + 15) & ~15;
        _stubs[key] = addr;
        return addr;
    }

    /// <summary>Unmaps the pages.</summary>
    public void Dispose()
    {
        // SAFETY: unmaps exactly the mapping created in the constructor.
        Munmap(_page, PageSize * 16);
    }

    [DllImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static extern void* Mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [DllImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static extern int Munmap(void* addr, nuint length);
}
