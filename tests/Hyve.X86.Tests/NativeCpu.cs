// Runs one x86-64 instruction on the host CPU (the oracle for instruction semantics) through a
// small generated stub in an executable page.
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace Hyve.X86.Tests;

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

/// <summary>
/// Executes instructions natively: loads RAX, RCX, RDX and RFLAGS from a <see cref="NativeState"/>,
/// runs the instruction bytes, stores RAX, RCX, RDX and RFLAGS back. Only x86-64 Linux hosts.
/// </summary>
public sealed unsafe class NativeCpu : IDisposable
{
    private const int PageSize = 4096;
    private readonly byte* _page;
    private readonly Dictionary<string, nint> _stubs = new(StringComparer.Ordinal);
    private int _used;

    /// <summary>Whether this host can run the stubs.</summary>
    public static bool Supported => RuntimeInformation.ProcessArchitecture == Architecture.X64 && OperatingSystem.IsLinux();

    public NativeCpu()
    {
        // SAFETY: mmap returns a fresh private anonymous mapping or MAP_FAILED, which is checked.
        void* p = Mmap(null, PageSize * 4, 7 /* RWX */, 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, -1, 0);
        if (p == (void*)-1)
            throw new InvalidOperationException("mmap of an executable page failed");
        _page = (byte*)p;
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

    private nint Stub(ReadOnlySpan<byte> instruction)
    {
        string key = Convert.ToHexString(instruction);
        if (_stubs.TryGetValue(key, out nint existing))
            return existing;
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
        int len = head.Length + instruction.Length + tail.Length;
        if (_used + len > PageSize * 4)
            throw new InvalidOperationException("stub page full");
        // SAFETY: the destination range [_used, _used + len) lies inside the 16 KiB mapping (checked above).
        var dst = new Span<byte>(_page + _used, len);
        head.CopyTo(dst);
        instruction.CopyTo(dst[head.Length..]);
        tail.CopyTo(dst[(head.Length + instruction.Length)..]);
        nint addr = (nint)(_page + _used);
        _used += (len + 15) & ~15;
        _stubs[key] = addr;
        return addr;
    }

    public void Dispose()
    {
        // SAFETY: unmaps exactly the mapping created in the constructor.
        Munmap(_page, PageSize * 4);
    }

    [DllImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static extern void* Mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [DllImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static extern int Munmap(void* addr, nuint length);
}
