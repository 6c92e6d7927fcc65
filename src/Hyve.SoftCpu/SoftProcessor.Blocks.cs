// The software CPU's block cache: a run of up to 16 fast-path instructions on one page (it ends
// after the first branch, call or return, or before an instruction the fast paths do not
// cover) is kept as one entry with a copy of its bytes, and runs without going back to the
// dispatcher between its instructions. Entering a block compares its bytes with memory once,
// as the instruction cache does per instruction; a store into the running block ends it after
// the storing instruction, so code the guest writes is decoded again before it runs.
// Blocks run only where nothing can happen between their instructions: no interrupt shadow,
// no single-step trap, and none of the fast forms changes IF, TF or the interruptibility.
using System;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed unsafe partial class SoftProcessor
{
    private const int BlockBits = 10, BlockCount = 1 << BlockBits;
    private const int BlockMax = 16, BlockBytes = 64;

    private struct BlockKey
    {
        public ulong La;
        public Bitness Bitness;
        public byte Length; // bytes; 0: an empty entry
        public byte Count;  // instructions; 0: the first instruction is not a fast form (step it)
    }

    private readonly BlockKey[] _blockKey = new BlockKey[BlockCount];
    private readonly byte[] _blockCode = new byte[BlockCount * BlockBytes];
    private readonly FastForm[] _blockForm = new FastForm[BlockCount * BlockMax];

    // The running block's linear range, for stores into it (Write); empty outside blocks.
    private ulong _runningLa, _runningLength;
    private bool _runningWritten;

    /// <summary>Blocks built (block-cache misses).</summary>
    public long BlocksBuilt { get; private set; }

    // The block at linear address la, built on a miss; -1 when the first instruction there is
    // not a fast form or the code cannot be fetched from RAM (the caller steps instead).
    private int FindBlock(ulong la)
    {
        if (_rip > _ipMask - BlockBytes)
            return -1; // the instruction pointer could wrap inside the block
        if (_bitness != Bitness.Bits64 && _rip + BlockBytes - 1 > _seg[1].Limit)
            return -1; // near CS's limit: each instruction is checked on its own
        nint host = FetchHost(la);
        if (host == 0)
            return -1;
        int b = (int)((la ^ (la >> BlockBits) ^ (la >> (2 * BlockBits))) & (BlockCount - 1));
        ref BlockKey k = ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(_blockKey), b);
        // SAFETY: host is a live RAM page; a block's bytes lie inside the page they came from.
        byte* code = (byte*)host + (la & 0xFFF);
        // An entry whose first instruction the fast paths do not cover answers -1 too, so such an
        // instruction is looked up once per execution (by Step), not twice.
        if (k.La == la && k.Bitness == _bitness && k.Length != 0 && SameCode(code, ref _blockCode[b * BlockBytes], k.Length))
            return k.Count != 0 ? b : -1;
        return BuildBlock(la, b, host);
    }

    // Compares length bytes at code with the block's copy: overlapping 8- or 4-byte words, so
    // nothing outside the block is read.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool SameCode(byte* code, ref byte copy, int length)
    {
        if (length >= 8)
        {
            int last = length - 8;
            for (int at = 0; at < last; at += 8)
            {
                if (Unsafe.ReadUnaligned<ulong>(code + at) != Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref copy, at)))
                    return false;
            }
            return Unsafe.ReadUnaligned<ulong>(code + last) == Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref copy, last));
        }
        if (length >= 4)
        {
            return Unsafe.ReadUnaligned<uint>(code) == Unsafe.ReadUnaligned<uint>(ref copy)
                && Unsafe.ReadUnaligned<uint>(code + length - 4) == Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref copy, length - 4));
        }
        for (int at = 0; at < length; at++)
        {
            if (code[at] != Unsafe.Add(ref copy, at))
                return false;
        }
        return true;
    }

    private int BuildBlock(ulong la, int b, nint host)
    {
        ref BlockKey k = ref _blockKey[b];
        k.Length = 0;
        int count = 0, length = 0, first = 0;
        ulong page = la >> 12;
        while (count < BlockMax)
        {
            ulong at = la + (ulong)length;
            if (at >> 12 != page)
                break;
            int slot = LookupInstruction(at);
            if (slot < 0)
                break;
            ref FastForm f = ref _icacheFast[slot];
            if (count == 0)
                first = f.Length;
            if (f.Kind == Fast.None || length + f.Length > BlockBytes)
                break;
            _blockForm[b * BlockMax + count] = f;
            count++;
            length += f.Length;
            if (f.Kind is Fast.Jcc or Fast.JmpRel or Fast.CallRel or Fast.Ret)
                break;
        }
        if (count == 0)
            length = first; // remembered by its bytes, so it is stepped without building again
        if (length == 0)
            return -1;      // nothing cacheable here
        // SAFETY: the instructions decoded above lie inside the page at host.
        new ReadOnlySpan<byte>((byte*)host + (la & 0xFFF), length).CopyTo(_blockCode.AsSpan(b * BlockBytes, length));
        k.La = la;
        k.Bitness = _bitness;
        k.Length = (byte)length;
        k.Count = (byte)count;
        if (count == 0)
            return -1;
        BlocksBuilt++;
        return b;
    }

    // Runs block b: the instructions retired, counting one that raised an exception into the
    // guest but not one that exited (_exitPending).
    private int RunBlock(int b)
    {
        ref BlockKey k = ref _blockKey[b];
        int count = k.Count;
        ref FastForm f = ref _blockForm[b * BlockMax];
        _runningLa = k.La;
        _runningLength = k.Length;
        _runningWritten = false;
        int done = 0;
        while (done < count)
        {
            if (!RunFast(ref Unsafe.Add(ref f, done)))
            {
                _runningLength = 0;
                return _exitPending ? done : done + 1;
            }
            done++;
            if (_runningWritten)
                break; // the block wrote itself: what follows is decoded again
        }
        _runningLength = 0;
        return done;
    }

    // A store of size bytes at linear address la: does it touch the running block?
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void NoteStore(ulong la, int size)
    {
        if (la - _runningLa < _runningLength || _runningLa - la < (ulong)size)
            _runningWritten = true;
    }
}
