// The software CPU's translation cache and decoded-instruction cache. The TLB maps linear
// pages to host addresses of guest RAM, one direct-mapped table per access kind (read, write,
// fetch), tagged with the page number, CPL 3 and (under SMAP) RFLAGS.AC; it is filled only
// from successful walks of RAM pages (a write entry only from a write walk, which set the
// dirty bit) and flushed when the paging state changes or on INVLPG, as a hardware TLB may be;
// device memory never enters it. The instruction cache keeps decoded instructions by linear
// address and checks the bytes in memory on every use, so code written since is decoded again.
using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed unsafe partial class SoftProcessor
{
    private const int TlbBits = 9, TlbSize = 1 << TlbBits;
    private const int KindRead = 0, KindWrite = 1, KindFetch = 2;
    private const int CacheBits = 12, CacheSize = 1 << CacheBits;

    private readonly ulong[] _tlbTag = new ulong[3 * TlbSize];
    private readonly nint[] _tlbHost = new nint[3 * TlbSize];
    private PagingState _tlbState;
    private ulong _fetchPage = ulong.MaxValue; // the linear page of the last cached fetch
    private nint _fetchHost;
    private ulong _tagMode;   // CPL 3 in bit 1
    private ulong _acTagMask; // 4 under SMAP: RFLAGS.AC (bit 18) >> 16 joins the tag

    // The cache, split so a hit touches only the key and the fast form: the key (linear
    // address, the first 16 bytes, bitness and length) and the fast form per slot, and the
    // decoded instruction for the general path.
    private struct CacheKey
    {
        public ulong La;
        public ulong Bytes0, Bytes1;
        public Bitness Bitness;
        public byte Length;
    }

    private readonly CacheKey[] _icacheKey = new CacheKey[CacheSize];
    private readonly FastForm[] _icacheFast = new FastForm[CacheSize];
    private readonly Instruction[] _icacheInsn = new Instruction[CacheSize];

    /// <summary>Instructions decoded (cache misses).</summary>
    public long Decoded { get; private set; }

    // Called whenever the paging state may have changed: a different state flushes.
    private void TlbCheck()
    {
        _tagMode = _paging.Cpl == 3 ? 2UL : 0;
        _fetchPage = ulong.MaxValue; // fetch rights depend on CPL
        _acTagMask = (_paging.Cr4 & PagingState.Cr4SMAP) != 0 ? 4UL : 0;
        PagingState now = _paging with { Cpl = 0 };
        if (now != _tlbState)
        {
            _tlbState = now;
            FlushTlb();
        }
    }

    private void FlushTlb()
    {
        Array.Clear(_tlbTag);
        _fetchPage = ulong.MaxValue;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong Tag(ulong la) => ((la >> 12) << 3) | _tagMode | ((_flags >> 16) & _acTagMask) | 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint TlbLookup(ulong la, int kind)
    {
        int i = (kind << TlbBits) | (int)((la >> 12) & (TlbSize - 1));
        // i < 3 * TlbSize by construction: no bounds checks on this path.
        return Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_tlbTag), i) == Tag(la)
            ? Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_tlbHost), i) : 0;
    }

    private void TlbFill(ulong la, ulong pa, int kind)
    {
        nint host = _memory.HostPage(pa);
        if (host == 0)
            return;
        int i = (kind << TlbBits) | (int)((la >> 12) & (TlbSize - 1));
        _tlbTag[i] = Tag(la);
        _tlbHost[i] = host;
    }

    // A read or write inside one page through the TLB. False: not cached (take the slow path).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryReadFast(ulong la, int size, int kind, out ulong value)
    {
        nint host;
        if ((la & 0xFFF) > (ulong)(0x1000 - size) || (host = TlbLookup(la, kind)) == 0)
        {
            value = 0;
            return false;
        }
        // SAFETY: host is the start of a live 4 KiB RAM page and the access lies inside it.
        byte* p = (byte*)host + (la & 0xFFF);
        value = size switch
        {
            1 => *p,
            2 => Unsafe.ReadUnaligned<ushort>(p),
            4 => Unsafe.ReadUnaligned<uint>(p),
            _ => Unsafe.ReadUnaligned<ulong>(p),
        };
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryWriteFast(ulong la, int size, ulong value)
    {
        nint host;
        if ((la & 0xFFF) > (ulong)(0x1000 - size) || (host = TlbLookup(la, KindWrite)) == 0)
            return false;
        // SAFETY: host is the start of a live 4 KiB RAM page and the access lies inside it.
        byte* p = (byte*)host + (la & 0xFFF);
        switch (size)
        {
            case 1: *p = (byte)value; break;
            case 2: Unsafe.WriteUnaligned(p, (ushort)value); break;
            case 4: Unsafe.WriteUnaligned(p, (uint)value); break;
            default: Unsafe.WriteUnaligned(p, value); break;
        }
        return true;
    }

    // The host address of the RAM page code at linear address la is fetched from, or 0 when
    // the page does not translate for a fetch or is not RAM (the slow way then faults or exits).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private nint FetchHost(ulong la)
    {
        if ((la >> 12) == _fetchPage)
            return _fetchHost; // still on the page the last instruction came from
        nint host = TlbLookup(la, KindFetch);
        if (host == 0)
        {
            if (PageWalker.Translate(_memory, in _paging, la, AccessType.Fetch, false, out ulong pa, out _) != WalkResult.Ok)
                return 0;
            TlbFill(la, pa, KindFetch);
            if ((host = TlbLookup(la, KindFetch)) == 0)
                return 0;
        }
        _fetchPage = la >> 12;
        _fetchHost = host;
        return host;
    }

    // The cache slot of the instruction at CS:RIP, decoded from RAM and cached on a miss; -1
    // when the cache does not apply (the instruction may cross a page, or its page is not RAM
    // the TLB can reach): the caller fetches the slow way.
    private int LookupInstruction(ulong la)
    {
        nint host = FetchHost(la);
        if (host == 0)
            return -1;
        ulong offset = la & 0xFFF;
        ulong b0, b1;
        int inPage = 16;
        // SAFETY: host is the start of a live 4 KiB RAM page; the 16 bytes read start at most
        // 16 bytes before its end.
        if (offset <= 0x1000 - 16)
        {
            byte* p = (byte*)host + offset;
            b0 = Unsafe.ReadUnaligned<ulong>(p);
            b1 = Unsafe.ReadUnaligned<ulong>(p + 8);
        }
        else
        {
            // The last 15 bytes of the page: read the page's last 16 and shift, so only bytes
            // of this page are compared; an instruction that goes on into the next page is not
            // cached (the caller fetches it the slow way).
            inPage = (int)(0x1000 - offset);
            byte* end = (byte*)host + 0x1000 - 16;
            UInt128 all = Unsafe.ReadUnaligned<UInt128>(end) >> (8 * (16 - inPage));
            b0 = (ulong)all;
            b1 = (ulong)(all >> 64);
        }
        int slot = (int)((la ^ (la >> CacheBits)) & (CacheSize - 1));
        ref CacheKey k = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_icacheKey), slot);
        if (k.La == la && k.Bitness == _bitness && k.Length != 0 && Same(b0, b1, k.Bytes0, k.Bytes1, k.Length))
            return slot;
        ref Instruction insn = ref _icacheInsn[slot];
        // SAFETY: as above, inPage bytes from la lie inside the page.
        DecodeStatus ds = Decoder.Decode(new ReadOnlySpan<byte>((byte*)host + offset, Math.Min(inPage, 15)), _bitness, out insn);
        Decoded++;
        if (ds != DecodeStatus.Ok)
        {
            k.Length = 0;
            return -1;
        }
        k.La = la;
        k.Bytes0 = b0;
        k.Bytes1 = b1;
        k.Bitness = _bitness;
        k.Length = insn.Length;
        _icacheFast[slot] = Classify(in insn, _bitness);
        return slot;
    }

    private static bool Same(ulong a0, ulong a1, ulong b0, ulong b1, int length)
    {
        if (length <= 8)
            return ((a0 ^ b0) & (length == 8 ? ulong.MaxValue : (1UL << (8 * length)) - 1)) == 0;
        return a0 == b0 && ((a1 ^ b1) & (length == 16 ? ulong.MaxValue : (1UL << (8 * (length - 8))) - 1)) == 0;
    }
}
