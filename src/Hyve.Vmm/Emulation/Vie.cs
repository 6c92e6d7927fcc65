// The per-vCPU instruction emulation context behind MMIO exits: decode once, replay the
// instruction on every pass, send each device access across the boundary exactly once.
using System;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.Vmm.Emulation;

/// <summary>Outcome of one emulation pass.</summary>
public enum VieStatus : byte
{
    /// <summary>The instruction completed: registers, flags and RIP are updated.</summary>
    Done,
    /// <summary>An access needs the device half: see <see cref="Vie.Pending"/>; fulfil it and run again.</summary>
    NeedsDevice,
    /// <summary>Hyve cannot emulate this instruction; the caller hands the raw bytes to the device half.</summary>
    Fallback,
    /// <summary>One element of a REP string instruction completed and more remain: RSI/RDI/RCX are
    /// updated, RIP is not. The caller may run the next element at once (<see cref="Vie.Emulate"/>
    /// again) or re-enter the guest, which re-executes the instruction (and can take interrupts in
    /// between, as on hardware).</summary>
    Repeat,
    /// <summary>The instruction raises an exception (<see cref="Vie.Fault"/>); RIP is not advanced.</summary>
    Fault,
}

/// <summary>Outcome of a fulfilment.</summary>
public enum FulfillResult : byte
{
    /// <summary>Accepted.</summary>
    Ok,
    /// <summary>No request is pending.</summary>
    NotPending,
    /// <summary>The answer's address, size or direction differs from the request.</summary>
    Mismatch,
}

/// <summary>
/// Emulates the instruction behind one MMIO exit. The whole instruction runs again from the
/// start on every pass. Every access goes through one path: segmentation checks, alignment
/// check, the page walk, a split at a page boundary, then RAM directly or device memory as
/// single requests of 1, 2, 4 or 8 bytes. Device accesses are numbered in the order the
/// instruction makes them; one whose slot is done replays its result, one the vmm's own devices
/// claim completes at once, anything else becomes the pending request and the pass stops before
/// any register is written. So side effects happen once, however many passes an instruction
/// takes (a read-modify-write takes three).
/// </summary>
public sealed class Vie
{
    private const int SlotCount = 16;

    private enum SlotState : byte
    {
        None,
        Pending,
        Done,
    }

    // One access across the boundary: device memory (Gpa) or a port (Port set, Gpa the port).
    private struct Slot
    {
        public ulong Gpa;
        public ulong Data;
        public byte Bytes;
        public bool Write;
        public bool Port;
        public SlotState State;
    }

    [InlineArray(SlotCount)]
    private struct Slots
    {
        private Slot _e0;
    }

    // A RAM write held back until the pass completes: a pass that stops for the device half is
    // replayed from the start, and its reads must see RAM as it was.
    private struct RamWrite
    {
        public ulong Gpa;
        public ulong Data;
        public int Bytes;
    }

    [InlineArray(15)]
    private struct InstructionBuffer
    {
        private byte _e0;
    }

    [InlineArray(SlotCount)]
    private struct RamWrites
    {
        private RamWrite _e0;
    }

    // The string instructions this context emulates (one-byte opcodes A4..AF).
    private enum StringOp : byte
    {
        None,
        Movs,
        Cmps,
        Stos,
        Lods,
        Scas,
    }

    private Instruction _insn;
    private Mnemonic _mnemonic;
    private int _length;
    private bool _io;
    private IoExit _ioExit;
    private InstructionBuffer _bytes;
    private int _byteCount;
    private Bitness _bitness;
    private bool _real;
    private PagingState _paging;
    private int _canonicalShift;
    private bool _fast;
    private ulong _gpa;
    private ulong _gla;
    private bool _checkGla;
    private bool _hint;
    private bool _active;
    private VieStatus _beginStatus;
    private StringOp _string;
    private Slots _slots;
    private int _used;
    private int _seq;
    private int _pendingIndex = -1;
    private RamWrites _ramWrites;
    private int _ramWriteCount;

    // Per pass.
    private IVieCpu _cpu = null!;
    private IVmmDevices _devices = null!;
    private IGuestMemory? _memory;
    private ulong _accessLa;
    private int _accessSize;
    private bool _branch;
    private ulong _target;
    private bool _supervisor;

    /// <summary>Whether an instruction is being emulated.</summary>
    public bool Active => _active;

    /// <summary>The decoded instruction.</summary>
    public ref readonly Instruction Instruction => ref _insn;

    /// <summary>The instruction's bytes as given or fetched (up to 15): what a fallback hands over.</summary>
    public ReadOnlySpan<byte> InstructionBytes => ((ReadOnlySpan<byte>)_bytes)[.._byteCount];

    /// <summary>The request waiting for the device half (valid after <see cref="VieStatus.NeedsDevice"/>).</summary>
    public MmioAccess Pending
    {
        get
        {
            if (_pendingIndex < 0 || _slots[_pendingIndex].Port)
                return default;
            ref readonly Slot s = ref _slots[_pendingIndex];
            return new MmioAccess(s.Gpa, s.Bytes, s.Write, s.Write ? s.Data : 0);
        }
    }

    /// <summary>Whether the pending request is a port access (<see cref="PendingInout"/>) rather
    /// than a device-memory one (<see cref="Pending"/>).</summary>
    public bool PendingIsInout => _pendingIndex >= 0 && _slots[_pendingIndex].Port;

    /// <summary>The port request waiting for the device half (valid when <see cref="PendingIsInout"/>).</summary>
    public InoutAccess PendingInout
    {
        get
        {
            if (!PendingIsInout)
                return default;
            ref readonly Slot s = ref _slots[_pendingIndex];
            return new InoutAccess((ushort)s.Gpa, s.Bytes, !s.Write, s.Write ? (uint)s.Data : 0);
        }
    }

    /// <summary>The exception after <see cref="VieStatus.Fault"/>: vector, error code, CR2 for #PF.</summary>
    public GuestFault Fault { get; private set; }

    /// <summary>The exception vector after <see cref="VieStatus.Fault"/>.</summary>
    public byte FaultVector => Fault.Vector;

    /// <summary>Number of device-half requests this context has issued (each exactly once).</summary>
    public long Requests { get; private set; }

    /// <summary>
    /// Starts emulating the instruction in <paramref name="bytes"/> that faulted on
    /// <paramref name="gpa"/>, for a flat guest without paging at CPL 0 whose code runs with
    /// <paramref name="bitness"/> (64-bit mode, or protected mode with 32- or 16-bit code).
    /// <paramref name="glaValid"/> says whether the exit reported the guest-linear address
    /// <paramref name="gla"/>. Returns false when the bytes do not decode (the first pass then
    /// injects #UD or #GP as hardware would, or falls back).
    /// </summary>
    public bool Begin(ulong gpa, ulong gla, bool glaValid, Bitness bitness, ReadOnlySpan<byte> bytes)
    {
        PagingState paging = bitness == Bitness.Bits64 ? PagingState.Flat
            : new PagingState(PagingState.Cr0PE | PagingState.Cr0WP, 0, PagingState.Cr4OSFXSR, 0, 0);
        Start(gpa, gla, glaValid, in paging, bitness, real: false);
        return DecodeBytes(bytes, fetchFault: null);
    }

    /// <summary>
    /// Starts emulating the instruction behind an exit at <paramref name="gpa"/> (and
    /// <paramref name="gla"/> when <paramref name="glaValid"/>), with the control state
    /// <paramref name="paging"/> taken at the exit. The mode comes from CR0, EFER and CS. Without
    /// <paramref name="bytes"/> the instruction is fetched from CS:RIP through the guest page
    /// tables. Returns false when no instruction could be decoded (the first pass then injects the
    /// fault hardware would raise, or falls back).
    /// </summary>
    public bool Begin(ulong gpa, ulong gla, bool glaValid, in PagingState paging, IVieCpu cpu, IGuestMemory? memory, ReadOnlySpan<byte> bytes = default)
    {
        Segment cs = cpu.GetSegment(Register.CS);
        Bitness bitness = CodeSize.Of(in paging, in cs);
        Start(gpa, gla, glaValid, in paging, bitness, RealAddressing(in paging, cpu));
        if (!bytes.IsEmpty)
            return DecodeBytes(bytes, fetchFault: null);
        return Fetch(cpu, memory, cs);
    }

    // Real mode, or virtual-8086 mode (EFLAGS.VM outside IA-32e mode): segments are checked
    // against their limit only; paging, at CPL 3 in virtual-8086 mode, is as the walk says.
    private static bool RealAddressing(in PagingState paging, IVieCpu cpu) =>
        (paging.Cr0 & PagingState.Cr0PE) == 0 || ((cpu.Rflags & (1UL << 17)) != 0 && (paging.Efer & PagingState.EferLMA) == 0);

    private void Start(ulong gpa, ulong gla, bool glaValid, in PagingState paging, Bitness bitness, bool real)
    {
        Reset();
        _paging = paging;
        _canonicalShift = 64 - paging.LinearBits;
        _fast = bitness == Bitness.Bits64 && glaValid && paging.IsCanonical(gla) && !(paging.Cpl == 3 && (paging.Cr0 & PagingState.Cr0AM) != 0);
        _bitness = bitness;
        _real = real;
        _gpa = gpa;
        _gla = gla;
        _checkGla = glaValid;
        _hint = glaValid;
        _active = true;
        _beginStatus = VieStatus.Done;
        _string = StringOp.None;
        _io = false;
    }

    /// <summary>
    /// Starts emulating the port-I/O instruction behind <paramref name="exit"/> (IN, OUT, INS or
    /// OUTS), with the control state <paramref name="paging"/> taken at the exit; the mode comes
    /// from CR0, EFER and CS. Ports go to the vmm's devices first, then to the device half as
    /// <see cref="PendingInout"/>; the memory side of INS/OUTS may be RAM or device memory.
    /// </summary>
    public void BeginIo(in IoExit exit, in PagingState paging, IVieCpu cpu)
    {
        Segment cs = cpu.GetSegment(Register.CS);
        Bitness bitness = CodeSize.Of(in paging, in cs);
        Start(ulong.MaxValue, 0, glaValid: false, in paging, bitness, RealAddressing(in paging, cpu));
        if (exit.Size is not (1 or 2 or 4) || (exit.String && exit.AddressSize is not (2 or 4 or 8)))
            throw new ArgumentException($"not a port access: {exit}", nameof(exit));
        _io = true;
        _ioExit = exit;
        _length = exit.Length;
        _byteCount = 0;
    }

    // Fetches up to 15 bytes at CS:RIP, page by page, stopping at the CS limit, a page that faults
    // or a page that is not RAM; the fault only counts if the decoder needed those bytes.
    private bool Fetch(IVieCpu cpu, IGuestMemory? memory, Segment cs)
    {
        Span<byte> buf = stackalloc byte[15];
        ulong ip = cpu.Rip;
        int avail = 15;
        GuestFault? stop = null;
        if (_bitness != Bitness.Bits64)
        {
            ip &= _bitness == Bitness.Bits32 ? 0xFFFF_FFFFUL : 0xFFFFUL;
            ulong room = ip > cs.Limit ? 0 : cs.Limit - ip + 1;
            if (room < 15)
            {
                avail = (int)room;
                stop = new GuestFault(ExceptionVector.GP, 0);
            }
        }
        ulong la = _bitness == Bitness.Bits64 ? ip : (uint)(cs.Base + ip);
        int n = 0;
        while (n < avail)
        {
            ulong at = _bitness == Bitness.Bits64 ? la + (ulong)n : (uint)(la + (ulong)n);
            int chunk = (int)Math.Min((ulong)(avail - n), 0x1000 - (at & 0xFFF));
            ulong pa = at;
            if (_paging.Mode != PagingMode.None)
            {
                if (memory == null)
                    break;
                WalkResult w = PageWalker.Translate(memory, in _paging, at, AccessType.Fetch, false, out pa, out GuestFault f);
                if (w == WalkResult.PageFault)
                {
                    stop = f;
                    break;
                }
                if (w != WalkResult.Ok)
                    break;
            }
            if (memory == null || !memory.ReadRam(pa, buf.Slice(n, chunk)))
            {
                stop = null; // code outside RAM: hand the exit over
                break;
            }
            n += chunk;
        }
        return DecodeBytes(buf[..n], stop);
    }

    private bool DecodeBytes(ReadOnlySpan<byte> bytes, GuestFault? fetchFault)
    {
        _byteCount = Math.Min(bytes.Length, 15);
        bytes[.._byteCount].CopyTo(_bytes);
        DecodeStatus ds = Decoder.Decode(bytes, _bitness, out _insn);
        switch (ds)
        {
            case DecodeStatus.Ok:
                _mnemonic = _insn.Mnemonic;
                _length = _insn.Length;
                _string = StringKind(in _insn);
                return true;
            case DecodeStatus.Invalid:
                Fault = new GuestFault(ExceptionVector.UD, 0);
                _beginStatus = VieStatus.Fault;
                return false;
            case DecodeStatus.TooLong:
                Fault = new GuestFault(ExceptionVector.GP, 0);
                _beginStatus = VieStatus.Fault;
                return false;
            case DecodeStatus.NoMoreBytes when fetchFault is { } f:
                Fault = f;
                _beginStatus = VieStatus.Fault;
                return false;
            default:
                _beginStatus = VieStatus.Fallback;
                return false;
        }
    }

    /// <summary>Drops the instruction (RIP is not advanced).</summary>
    public void Reset()
    {
        _active = false;
        ClearSlots();
    }

    private void ClearSlots()
    {
        for (int i = 0; i < _used; i++)
            _slots[i] = default;
        _used = 0;
        _pendingIndex = -1;
    }

    /// <summary>Answers the pending request; a read's result is in <paramref name="answer"/>.Data.</summary>
    public FulfillResult Fulfill(in MmioAccess answer)
    {
        if (_pendingIndex < 0)
            return FulfillResult.NotPending;
        ref Slot s = ref _slots[_pendingIndex];
        if (s.Port || answer.Gpa != s.Gpa || answer.Bytes != s.Bytes || answer.Write != s.Write)
            return FulfillResult.Mismatch;
        if (!s.Write)
            s.Data = answer.Data & Alu.Mask(s.Bytes);
        s.State = SlotState.Done;
        _pendingIndex = -1;
        return FulfillResult.Ok;
    }

    /// <summary>Answers the pending port request; an IN's result is in <paramref name="answer"/>.Eax.</summary>
    public FulfillResult FulfillInout(in InoutAccess answer)
    {
        if (_pendingIndex < 0)
            return FulfillResult.NotPending;
        ref Slot s = ref _slots[_pendingIndex];
        if (!s.Port || answer.Port != (ushort)s.Gpa || answer.Bytes != s.Bytes || answer.In == s.Write)
            return FulfillResult.Mismatch;
        if (answer.In)
            s.Data = answer.Eax & Alu.Mask(s.Bytes);
        s.State = SlotState.Done;
        _pendingIndex = -1;
        return FulfillResult.Ok;
    }

    /// <summary>Runs one pass of the instruction. <paramref name="memory"/> reaches guest RAM: the
    /// page walk, the RAM side of string and stack instructions, and accesses that run from device
    /// memory into RAM; without it, anything that needs RAM falls back.</summary>
    public VieStatus Emulate(IVieCpu cpu, IVmmDevices devices, IGuestMemory? memory = null)
    {
        if (!_active)
            return VieStatus.Fallback;
        if (_beginStatus != VieStatus.Done)
        {
            VieStatus b = _beginStatus;
            Reset();
            return b;
        }
        // Stored only when they change: a reference store into the heap costs a write barrier.
        if (!ReferenceEquals(_cpu, cpu))
            _cpu = cpu;
        if (!ReferenceEquals(_devices, devices))
            _devices = devices;
        if (!ReferenceEquals(_memory, memory))
            _memory = memory;
        _seq = 0;
        _branch = false;
        _ramWriteCount = 0;
        VieStatus st = _io ? PortElement() : _string != StringOp.None ? StringElement() : Dispatch();
        if (st is VieStatus.Done or VieStatus.Repeat)
            CommitRam();
        switch (st)
        {
            case VieStatus.Done:
                cpu.Rip = _branch ? _target : (cpu.Rip + (ulong)_length) & IpMask;
                Reset();
                break;
            case VieStatus.Repeat:
                // The next element's accesses come from the registers; the exit's address no longer applies.
                ClearSlots();
                _checkGla = false;
                break;
            case VieStatus.Fault:
                Reset();
                break;
        }
        return st;
    }

    private ulong IpMask => CodeSize.IpMask(_bitness);

    private VieStatus Dispatch()
    {
        switch (_mnemonic)
        {
            case Mnemonic.Push or Mnemonic.Pop:
                return PushPop();
            case Mnemonic.Jmp or Mnemonic.Call when _insn.GetOperandKind(0) == OperandKind.Memory && _insn.MemorySize == _insn.OperandSize + 2:
                return FarThroughMemory();
            case Mnemonic.Jmp when _insn.GetOperandKind(0) == OperandKind.Memory && _insn.MemorySize == _insn.OperandSize:
                return JumpThroughMemory();
            case Mnemonic.Call or Mnemonic.Ret:
                return CallRet();
            case Mnemonic.Movd or Mnemonic.Movq or Mnemonic.Movss or Mnemonic.Movsd or Mnemonic.Movaps or Mnemonic.Movups
                or Mnemonic.Movapd or Mnemonic.Movupd or Mnemonic.Movdqa or Mnemonic.Movdqu or Mnemonic.Movntdq
                or Mnemonic.Movntps or Mnemonic.Movntpd or Mnemonic.Movntdqa:
                return VectorMove();
            case Mnemonic.Vmovups or Mnemonic.Vmovupd or Mnemonic.Vmovaps or Mnemonic.Vmovapd or Mnemonic.Vmovdqu or Mnemonic.Vmovdqa
                or Mnemonic.Vmovntps or Mnemonic.Vmovntpd or Mnemonic.Vmovntdq or Mnemonic.Vmovntdqa or Mnemonic.Vlddqu
                or Mnemonic.Vmovd or Mnemonic.Vmovq or Mnemonic.Vmovss or Mnemonic.Vmovsd:
                return AvxMove();
            case Mnemonic.Pextrb or Mnemonic.Pextrw or Mnemonic.Pextrd or Mnemonic.Pextrq or Mnemonic.Extractps
                or Mnemonic.Pinsrb or Mnemonic.Pinsrw or Mnemonic.Pinsrd or Mnemonic.Pinsrq or Mnemonic.Insertps:
                return ElementMove();
            case Mnemonic.Pusha or Mnemonic.Pushad:
                return PushAll();
            case Mnemonic.Popa or Mnemonic.Popad:
                return PopAll();
            case Mnemonic.Enter:
                return Enter();
            case Mnemonic.Leave:
                return Leave();
            case Mnemonic.Smsw when _insn.GetOperandKind(0) == OperandKind.Memory:
                return Write(_insn.MemorySegment, Ea, 2, _paging.Cr0 & 0xFFFF);
            case Mnemonic.Sgdt or Mnemonic.Sidt:
                return StoreDescriptorTable();
            case Mnemonic.Str or Mnemonic.Sldt when _insn.GetOperandKind(0) == OperandKind.Memory:
                {
                    // #UD in real and virtual-8086 mode; into memory, the 16-bit selector.
                    if (_real)
                    {
                        Fault = new GuestFault(ExceptionVector.UD, 0);
                        return VieStatus.Fault;
                    }
                    if (!_cpu.TryGetSystemSelector(_mnemonic == Mnemonic.Sldt, out ushort selector))
                        return VieStatus.Fallback;
                    return Write(_insn.MemorySegment, Ea, 2, selector);
                }
            case Mnemonic.Cmpxchg8b or Mnemonic.Cmpxchg16b:
                return CompareExchangeWide();
        }
        int mem = MemoryOperand();
        if (mem < 0 || !OnlyGeneralRegisters())
            return VieStatus.Fallback;
        int size = _insn.MemorySize;
        if (size is not (1 or 2 or 4 or 8))
            return VieStatus.Fallback;
        return _mnemonic switch
        {
            Mnemonic.Mov or Mnemonic.Movnti => Mov(mem, size),
            Mnemonic.Movzx or Mnemonic.Movsx or Mnemonic.Movsxd => Extend(size),
            Mnemonic.Add or Mnemonic.Or or Mnemonic.Adc or Mnemonic.Sbb or Mnemonic.And or Mnemonic.Sub or Mnemonic.Xor or Mnemonic.Cmp
                => Arith(mem, size),
            Mnemonic.Test => Test(mem, size),
            Mnemonic.Inc or Mnemonic.Dec or Mnemonic.Not or Mnemonic.Neg => Unary(size),
            Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar
                => Shift(size),
            Mnemonic.Xchg or Mnemonic.Xadd => Exchange(mem, size),
            Mnemonic.Cmpxchg => CompareExchange(size),
            >= Mnemonic.Seta and <= Mnemonic.Sets when _insn.OperandCount == 1 => SetCc(size),
            >= Mnemonic.Cmova and <= Mnemonic.Cmovs => CmovCc(size),
            Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc => BitTest(size),
            Mnemonic.Mul or Mnemonic.Imul or Mnemonic.Div or Mnemonic.Idiv => MulDiv(size),
            Mnemonic.Bsf or Mnemonic.Bsr or Mnemonic.Tzcnt or Mnemonic.Lzcnt or Mnemonic.Popcnt => BitScan(size),
            Mnemonic.Movbe => MoveSwapped(mem, size),
            Mnemonic.Xlatb => Xlat(),
            Mnemonic.Shld or Mnemonic.Shrd => DoubleShift(size),
            // CLFLUSH/CLFLUSHOPT only check the access; device memory has nothing to flush.
            Mnemonic.Clflush or Mnemonic.Clflushopt => Probe(_insn.MemorySegment, EffectiveAddress(0), 1, write: false),
            _ => VieStatus.Fallback,
        };
    }

    // Classified by operand kinds and opcode byte, not mnemonic: SSE MOVSD/CMPSD share the
    // mnemonics of the string forms, and INS/OUTS belong to the port-I/O path.
    private static StringOp StringKind(in Instruction insn)
    {
        if (insn.OperandCount == 0 || insn.GetOperandKind(insn.OperandCount - 1) < OperandKind.MemorySegSI
            && insn.GetOperandKind(0) < OperandKind.MemorySegSI)
            return StringOp.None;
        return (insn.OpcodeByte & 0xFE) switch
        {
            0xA4 => StringOp.Movs,
            0xA6 => StringOp.Cmps,
            0xAA => StringOp.Stos,
            0xAC => StringOp.Lods,
            0xAE => StringOp.Scas,
            _ => StringOp.None,
        };
    }

    // The forms emulated here name general registers only (MOV to or from a segment, control or
    // vector register falls back).
    private bool OnlyGeneralRegisters()
    {
        for (int i = 0; i < _insn.OperandCount; i++)
        {
            if (_insn.GetOperandKind(i) == OperandKind.Register && _insn.GetRegister(i) is < Register.AL or > Register.R15)
                return false;
        }
        return true;
    }

    // Index of the memory operand, or -1 when there is none (or more than one).
    private int MemoryOperand()
    {
        int found = -1;
        for (int i = 0; i < _insn.OperandCount; i++)
        {
            OperandKind k = _insn.GetOperandKind(i);
            if (k == OperandKind.Memory)
            {
                if (found >= 0)
                    return -1;
                found = i;
            }
            else if (k >= OperandKind.MemorySegSI)
            {
                return -1;
            }
        }
        return found;
    }

    // The memory operand's offset (before segmentation) at the address size. POP computes it
    // after incrementing the stack pointer, which <paramref name="rspBias"/> supplies.
    private ulong EffectiveAddress(ulong rspBias)
    {
        ulong ea = (ulong)_insn.Displacement;
        if (_insn.IsIpRelative)
            return _insn.IpRelativeTarget(_cpu.Rip);
        if (_insn.MemoryBase != Register.None)
        {
            ea += ReadRegister(_cpu, _insn.MemoryBase);
            if (_insn.MemoryBase is Register.RSP or Register.ESP or Register.SP)
                ea += rspBias;
        }
        if (_insn.MemoryIndex != Register.None)
            ea += ReadRegister(_cpu, _insn.MemoryIndex) * _insn.MemoryScale;
        return ea & Alu.Mask(_insn.AddressSize);
    }

    private ulong Ea => EffectiveAddress(0);

    // ---- The access path ----------------------------------------------------------------------

    private VieStatus ReadOp(int size, out ulong value, bool forWrite = false) =>
        Read(_insn.MemorySegment, Ea, size, forWrite, out value);

    private VieStatus WriteOp(int size, ulong value) => Write(_insn.MemorySegment, Ea, size, value);

    // Reads <paramref name="size"/> bytes at seg:offset. A read that a write to the same place
    // follows (read-modify-write) is checked and translated as a write, as hardware does.
    private VieStatus Read(Register seg, ulong offset, int size, bool forWrite, out ulong value)
    {
        value = 0;
        if (OnExitPage(seg, offset, size))
            return Device((_gpa & ~0xFFFUL) | (offset & 0xFFF), size, write: false, ref value);
        VieStatus st = Linearize(seg, offset, size, forWrite, out ulong la);
        return st != VieStatus.Done ? st : Access(la, size, forWrite ? AccessType.Write : AccessType.Read, write: false, ref value);
    }

    private VieStatus Write(Register seg, ulong offset, int size, ulong value)
    {
        if (OnExitPage(seg, offset, size))
            return Device((_gpa & ~0xFFFUL) | (offset & 0xFFF), size, write: true, ref value);
        VieStatus st = Linearize(seg, offset, size, write: true, out ulong la);
        return st != VieStatus.Done ? st : Access(la, size, AccessType.Write, write: true, ref value);
    }

    // The common case, decided without the general path: 64-bit mode, no FS/GS base, no alignment
    // check possible, and the access inside the exit's own page (canonical, since the exit's
    // address is, and known to be device memory).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool OnExitPage(Register seg, ulong offset, int size)
    {
        if (!_fast || seg is Register.FS or Register.GS || ((offset ^ _gla) & ~0xFFFUL) != 0 || (offset & 0xFFF) + (ulong)size > 0x1000)
            return false;
        _accessLa = offset;
        _accessSize = size;
        return true;
    }

    // The checks and translation of an access without making it: used before a device access
    // that must not be followed by a fault on another operand.
    private VieStatus Probe(Register seg, ulong offset, int size, bool write)
    {
        VieStatus st = Linearize(seg, offset, size, write, out ulong la);
        if (st != VieStatus.Done)
            return st;
        AccessType type = write ? AccessType.Write : AccessType.Read;
        int first = FirstPiece(la, size);
        st = Translate(la, type, out _);
        if (st == VieStatus.Done && first < size)
            st = Translate(NextLinear(la, first), type, out _);
        return st;
    }

    // Segmentation: 64-bit mode checks canonical form (FS/GS bases apply); other modes check the
    // segment's usability, type and limit (real mode only the limit). Then the alignment check.
    private VieStatus Linearize(Register seg, ulong offset, int size, bool write, out ulong la)
    {
        if (_bitness == Bitness.Bits64)
        {
            la = offset + (seg is Register.FS or Register.GS ? _cpu.GetSegment(seg).Base : 0);
            // Canonical: bits 63..(width-1) all equal, for the first and the last byte.
            int shift = _canonicalShift;
            ulong last = la + (ulong)size - 1;
            if ((ulong)((long)(la << shift) >> shift) != la || (ulong)((long)(last << shift) >> shift) != last)
                return SegmentFault(seg);
        }
        else
        {
            Segment s = _cpu.GetSegment(seg);
            bool ok = _real ? offset + (ulong)size - 1 <= s.Limit : s.AllowsData(offset, size, write);
            la = (uint)(s.Base + offset);
            if (!ok)
                return SegmentFault(seg);
        }
        if (_paging.Cpl == 3 && (_paging.Cr0 & PagingState.Cr0AM) != 0 && (_cpu.Rflags & Rflags.AC) != 0
            && size <= 8 && (la & (ulong)(size - 1)) != 0)
        {
            Fault = new GuestFault(ExceptionVector.AC, 0);
            return VieStatus.Fault;
        }
        return VieStatus.Done;
    }

    private VieStatus SegmentFault(Register seg)
    {
        Fault = new GuestFault(seg == Register.SS ? ExceptionVector.SS : ExceptionVector.GP, 0);
        return VieStatus.Fault;
    }

    private static int FirstPiece(ulong la, int size) => (int)Math.Min((ulong)size, 0x1000 - (la & 0xFFF));

    private ulong NextLinear(ulong la, int first) => _bitness == Bitness.Bits64 ? la + (ulong)first : (uint)(la + (ulong)first);

    // One logical access: both pages translated before either is touched, then each piece goes to
    // RAM or, as naturally sized requests, to device memory.
    private VieStatus Access(ulong la, int size, AccessType type, bool write, ref ulong value)
    {
        _accessLa = la;
        _accessSize = size;
        int first = FirstPiece(la, size);
        VieStatus st = Translate(la, type, out ulong pa0);
        if (st != VieStatus.Done)
            return st;
        if (first == size)
        {
            st = Piece(pa0, size, write, ref value);
            if (!write)
                value &= Alu.Mask(size);
            return st;
        }
        if ((st = Translate(NextLinear(la, first), type, out ulong pa1)) != VieStatus.Done)
            return st;
        ulong low = value & Alu.Mask(first);
        ulong high = value >> (8 * first);
        if ((st = Piece(pa0, first, write, ref low)) != VieStatus.Done || (st = Piece(pa1, size - first, write, ref high)) != VieStatus.Done)
            return st;
        if (!write)
            value = ((low & Alu.Mask(first)) | (high << (8 * first))) & Alu.Mask(size);
        return VieStatus.Done;
    }

    // Linear to physical: the exit's own page is known; with paging off linear is physical;
    // otherwise the guest page walk (which may fault).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private VieStatus Translate(ulong la, AccessType type, out ulong pa)
    {
        if (_hint && ((la ^ _gla) & ~0xFFFUL) == 0)
        {
            pa = (_gpa & ~0xFFFUL) | (la & 0xFFF);
            return VieStatus.Done;
        }
        return Walk(la, type, out pa);
    }

    private VieStatus Walk(ulong la, AccessType type, out ulong pa)
    {
        if (_paging.Mode == PagingMode.None)
        {
            pa = la;
            return VieStatus.Done;
        }
        pa = 0;
        if (_memory == null)
            return VieStatus.Fallback;
        // Descriptor-table accesses are supervisor accesses whatever the CPL.
        PagingState paging = _supervisor ? _paging with { Cpl = 0 } : _paging;
        switch (PageWalker.Translate(_memory, in paging, la, type, (_cpu.Rflags & Rflags.AC) != 0, out pa, out GuestFault f))
        {
            case WalkResult.Ok:
                return VieStatus.Done;
            case WalkResult.PageFault:
                Fault = f;
                return VieStatus.Fault;
            default:
                return VieStatus.Fallback;
        }
    }

    // One page's part of an access (n bytes, little-endian in data). The exit's page is device
    // memory; any other page is tried as RAM first (RAM writes are held until the pass completes).
    // Device memory gets requests of 8, 4, 2 and 1 bytes, lowest address first.
    private VieStatus Piece(ulong pa, int n, bool write, ref ulong data)
    {
        if (((pa ^ _gpa) & ~0xFFFUL) != 0)
        {
            if (_memory == null)
                return VieStatus.Fallback;
            ulong local = data;
            Span<byte> bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref local, 1))[..n];
            if (write)
            {
                ulong probe = 0;
                if (_memory.ReadRam(pa, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref probe, 1))[..n]))
                {
                    if (_ramWriteCount == SlotCount)
                        return VieStatus.Fallback;
                    ref RamWrite w = ref _ramWrites[_ramWriteCount++];
                    w.Gpa = pa;
                    w.Bytes = n;
                    w.Data = data & Alu.Mask(n);
                    return VieStatus.Done;
                }
            }
            else if (_memory.ReadRam(pa, bytes))
            {
                OverlayRamWrites(pa, bytes);
                data = local;
                return VieStatus.Done;
            }
        }
        if (n is 1 or 2 or 4 or 8)
            return Device(pa, n, write, ref data);
        ulong result = 0;
        int k = 0;
        while (k < n)
        {
            int c = MmioAccess.PieceSize(n - k);
            ulong v = (data >> (8 * k)) & Alu.Mask(c);
            VieStatus st = Device(pa + (ulong)k, c, write, ref v);
            if (st != VieStatus.Done)
                return st;
            result |= (v & Alu.Mask(c)) << (8 * k);
            k += c;
        }
        if (!write)
            data = result;
        return VieStatus.Done;
    }

    // A read sees the writes this pass has made so far.
    private void OverlayRamWrites(ulong pa, Span<byte> data)
    {
        for (int k = 0; k < _ramWriteCount; k++)
        {
            ref readonly RamWrite w = ref _ramWrites[k];
            for (int i = 0; i < w.Bytes; i++)
            {
                ulong at = w.Gpa + (ulong)i - pa;
                if (at < (ulong)data.Length)
                    data[(int)at] = (byte)(w.Data >> (8 * i));
            }
        }
    }

    private void CommitRam()
    {
        for (int k = 0; k < _ramWriteCount; k++)
        {
            ref RamWrite w = ref _ramWrites[k];
            _memory!.WriteRam(w.Gpa, MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref w.Data, 1))[..w.Bytes]);
        }
        _ramWriteCount = 0;
    }

    // The next device access in the instruction's order: replayed, claimed by a vmm device, or
    // made the pending request.
    private VieStatus Device(ulong gpa, int size, bool write, ref ulong data) => Boundary(gpa, size, write, port: false, ref data);

    private VieStatus Boundary(ulong gpa, int size, bool write, bool port, ref ulong data)
    {
        if (_seq >= SlotCount)
            return VieStatus.Fallback;
        ref Slot s = ref _slots[_seq];
        if (s.State != SlotState.None)
        {
            // The same access in the same order; anything else means the guest's state changed
            // under the instruction and it is handed over rather than guessed at.
            if (s.Gpa != gpa || s.Bytes != size || s.Write != write || s.Port != port || (write && s.Data != (data & Alu.Mask(size))))
                return VieStatus.Fallback;
            if (s.State == SlotState.Pending)
            {
                _pendingIndex = _seq;
                return VieStatus.NeedsDevice;
            }
            if (!write)
                data = s.Data;
            _seq++;
            return VieStatus.Done;
        }
        // The first device access must be the one the exit reported: otherwise the bytes are not
        // the instruction that faulted (the guest changed them).
        if (_seq == 0 && _checkGla && !port && _gla - _accessLa >= (ulong)_accessSize)
            return VieStatus.Fallback;
        s.Gpa = gpa;
        s.Bytes = (byte)size;
        s.Write = write;
        s.Port = port;
        s.Data = write ? data & Alu.Mask(size) : 0;
        if (_seq >= _used)
            _used = _seq + 1;
        bool claimed;
        if (port)
        {
            uint v = 0;
            claimed = write ? _devices.TryOut((ushort)gpa, size, (uint)s.Data) : _devices.TryIn((ushort)gpa, size, out v);
            if (!write)
                s.Data = claimed ? v : 0;
        }
        else
        {
            claimed = write ? _devices.TryWrite(gpa, size, s.Data) : _devices.TryRead(gpa, size, out s.Data);
        }
        if (claimed)
        {
            s.Data &= Alu.Mask(size);
            if (!write)
                data = s.Data;
            s.State = SlotState.Done;
            _seq++;
            return VieStatus.Done;
        }
        if (!write)
            s.Data = 0;
        s.State = SlotState.Pending;
        Requests++;
        _pendingIndex = _seq;
        return VieStatus.NeedsDevice;
    }

    // ---- Instructions ---------------------------------------------------------------------------

    private VieStatus Mov(int mem, int size)
    {
        if (mem == 0)
            return WriteOp(size, Source(1) & Alu.Mask(size));
        VieStatus st = ReadOp(size, out ulong v);
        if (st == VieStatus.Done)
            WriteRegister(_cpu, _insn.GetRegister(0), v);
        return st;
    }

    private VieStatus Extend(int size)
    {
        VieStatus st = ReadOp(size, out ulong v);
        if (st != VieStatus.Done)
            return st;
        if (_mnemonic != Mnemonic.Movzx)
            v = (ulong)Alu.SignExtend(v, size);
        WriteRegister(_cpu, _insn.GetRegister(0), v);
        return VieStatus.Done;
    }

    private VieStatus Arith(int mem, int size)
    {
        Alu.Op op = Alu.OpOf(_mnemonic);
        bool rmw = mem == 0 && op != Alu.Op.Cmp;
        VieStatus st = ReadOp(size, out ulong m, rmw);
        if (st != VieStatus.Done)
            return st;
        ulong flags = _cpu.Rflags;
        if (mem == 0)
        {
            ulong r = Alu.Binary(op, m, Source(1), size, ref flags);
            if (rmw && (st = WriteOp(size, r)) != VieStatus.Done)
                return st;
        }
        else
        {
            Register dst = _insn.GetRegister(0);
            ulong r = Alu.Binary(op, ReadRegister(_cpu, dst), m, size, ref flags);
            if (op != Alu.Op.Cmp)
                WriteRegister(_cpu, dst, r);
        }
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    private VieStatus Test(int mem, int size)
    {
        VieStatus st = ReadOp(size, out ulong m);
        if (st != VieStatus.Done)
            return st;
        ulong flags = _cpu.Rflags;
        Alu.Binary(Alu.Op.And, m, Source(mem == 0 ? 1 : 0), size, ref flags);
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    private VieStatus Unary(int size)
    {
        VieStatus st = ReadOp(size, out ulong m, forWrite: true);
        if (st != VieStatus.Done)
            return st;
        ulong flags = _cpu.Rflags;
        ulong r = _mnemonic switch
        {
            Mnemonic.Inc => Alu.Inc(m, size, ref flags),
            Mnemonic.Dec => Alu.Dec(m, size, ref flags),
            Mnemonic.Neg => Alu.Neg(m, size, ref flags),
            _ => ~m & Alu.Mask(size),
        };
        if ((st = WriteOp(size, r)) != VieStatus.Done)
            return st;
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    private VieStatus Shift(int size)
    {
        VieStatus st = ReadOp(size, out ulong m, forWrite: true);
        if (st != VieStatus.Done)
            return st;
        ulong count = _insn.GetOperandKind(1) == OperandKind.Register ? ReadRegister(_cpu, _insn.GetRegister(1)) : _insn.Immediate;
        // A zero count changes no flag, but the read-modify-write still stores the operand back,
        // as hardware's fixed micro-operation sequence (and KVM's emulator) does: a device sees it.
        if (Alu.MaskCount(count, size) == 0)
            return WriteOp(size, m);
        ulong flags = _cpu.Rflags;
        var op = (Alu.Shift)((_insn.ModRM >> 3) & 7);
        ulong r = Alu.ShiftRotate(op, m, count, size, ref flags);
        if ((st = WriteOp(size, r)) != VieStatus.Done)
            return st;
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // XCHG and XADD with a memory operand.
    private VieStatus Exchange(int mem, int size)
    {
        VieStatus st = ReadOp(size, out ulong m, forWrite: true);
        if (st != VieStatus.Done)
            return st;
        Register reg = _insn.GetRegister(1 - mem);
        ulong v = ReadRegister(_cpu, reg);
        ulong flags = _cpu.Rflags;
        ulong stored = _mnemonic == Mnemonic.Xadd ? Alu.Binary(Alu.Op.Add, m, v, size, ref flags) : v;
        if ((st = WriteOp(size, stored)) != VieStatus.Done)
            return st;
        WriteRegister(_cpu, reg, m);
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // CMPXCHG: compare the accumulator with memory; equal stores the source, otherwise the
    // accumulator is loaded. The processor always writes the destination (the old value back on
    // failure), so the device sees a write either way.
    private VieStatus CompareExchange(int size)
    {
        VieStatus st = ReadOp(size, out ulong m, forWrite: true);
        if (st != VieStatus.Done)
            return st;
        Register acc = RegisterInfo.Gpr(0, size, false);
        ulong flags = _cpu.Rflags;
        Alu.Binary(Alu.Op.Cmp, ReadRegister(_cpu, acc), m, size, ref flags);
        bool equal = (flags & Rflags.ZF) != 0;
        if ((st = WriteOp(size, equal ? ReadRegister(_cpu, _insn.GetRegister(1)) : m)) != VieStatus.Done)
            return st;
        if (!equal)
            WriteRegister(_cpu, acc, m);
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // CMPXCHG8B/16B: EDX:EAX (RDX:RAX) against the 8 or 16 bytes at the operand; equal stores
    // ECX:EBX (RCX:RBX), otherwise the old value is written back and loaded. CMPXCHG16B needs a
    // 16-byte-aligned operand (#GP otherwise). A 16-byte operand is two 8-byte accesses.
    private VieStatus CompareExchangeWide()
    {
        if (MemoryOperand() != 0)
            return VieStatus.Fallback;
        int half = _insn.MemorySize / 2;
        Register seg = _insn.MemorySegment;
        ulong ea = Ea;
        ulong next = (ea + 8) & Alu.Mask(_insn.AddressSize);
        VieStatus st = Linearize(seg, ea, _insn.MemorySize, write: true, out ulong la);
        if (st != VieStatus.Done)
            return st;
        if (half == 8 && (la & 15) != 0)
            return GeneralProtection();
        ulong lo, hi;
        if (half == 4)
        {
            if ((st = Read(seg, ea, 8, forWrite: true, out ulong q)) != VieStatus.Done)
                return st;
            lo = (uint)q;
            hi = q >> 32;
        }
        else if ((st = Read(seg, ea, 8, true, out lo)) != VieStatus.Done || (st = Read(seg, next, 8, true, out hi)) != VieStatus.Done)
        {
            return st;
        }
        ulong mask = Alu.Mask(half);
        bool equal = lo == (_cpu.GetGpr(0) & mask) && hi == (_cpu.GetGpr(2) & mask);
        ulong newLo = equal ? _cpu.GetGpr(3) & mask : lo;
        ulong newHi = equal ? _cpu.GetGpr(1) & mask : hi;
        if (half == 4)
            st = Write(seg, ea, 8, newLo | (newHi << 32));
        else if ((st = Write(seg, ea, 8, newLo)) == VieStatus.Done)
            st = Write(seg, next, 8, newHi);
        if (st != VieStatus.Done)
            return st;
        if (!equal)
        {
            WriteRegister(_cpu, RegisterInfo.Gpr(0, half, false), lo);
            WriteRegister(_cpu, RegisterInfo.Gpr(2, half, false), hi);
        }
        _cpu.Rflags = (_cpu.Rflags & ~Rflags.ZF) | (equal ? Rflags.ZF : 0);
        return VieStatus.Done;
    }

    private VieStatus GeneralProtection()
    {
        Fault = new GuestFault(ExceptionVector.GP, 0);
        return VieStatus.Fault;
    }

    private VieStatus SetCc(int size)
    {
        bool holds = Conditions.Holds(_insn.OpcodeByte & 0xF, _cpu.Rflags);
        return WriteOp(size, holds ? 1UL : 0);
    }

    private VieStatus CmovCc(int size)
    {
        // The source is read whatever the condition; a 32-bit destination is zero-extended even when
        // the move does not happen.
        VieStatus st = ReadOp(size, out ulong m);
        if (st != VieStatus.Done)
            return st;
        Register dst = _insn.GetRegister(0);
        ulong v = Conditions.Holds(_insn.OpcodeByte & 0xF, _cpu.Rflags) ? m : ReadRegister(_cpu, dst);
        WriteRegister(_cpu, dst, v);
        return VieStatus.Done;
    }

    // BT/BTS/BTR/BTC. With an immediate the bit offset is taken modulo the operand width; with a
    // register it is a signed offset that reaches memory beyond the operand: the access moves by
    // (offset >> log2(width)) operands, as on hardware.
    private VieStatus BitTest(int size)
    {
        var op = _mnemonic switch
        {
            Mnemonic.Bts => Alu.BitOp.Bts,
            Mnemonic.Btr => Alu.BitOp.Btr,
            Mnemonic.Btc => Alu.BitOp.Btc,
            _ => Alu.BitOp.Bt,
        };
        ulong ea = Ea;
        ulong bit = _insn.Immediate;
        if (_insn.GetOperandKind(1) == OperandKind.Register)
        {
            long offset = Alu.SignExtend(ReadRegister(_cpu, _insn.GetRegister(1)), size);
            int widthLog = System.Numerics.BitOperations.Log2((uint)size * 8);
            ea = (ea + (ulong)((offset >> widthLog) * size)) & Alu.Mask(_insn.AddressSize);
            bit = (ulong)offset & (ulong)(size * 8 - 1);
        }
        bool writes = op != Alu.BitOp.Bt;
        VieStatus st = Read(_insn.MemorySegment, ea, size, writes, out ulong m);
        if (st != VieStatus.Done)
            return st;
        ulong flags = _cpu.Rflags;
        ulong r = Alu.BitTest(op, m, bit, size, ref flags);
        if (writes && (st = Write(_insn.MemorySegment, ea, size, r)) != VieStatus.Done)
            return st;
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // MUL/IMUL/DIV/IDIV with a memory operand: the one-operand forms use rDX:rAX (AX for bytes);
    // IMUL's two- and three-operand forms write a register.
    private VieStatus MulDiv(int size)
    {
        VieStatus st = ReadOp(size, out ulong m);
        if (st != VieStatus.Done)
            return st;
        ulong flags = _cpu.Rflags;
        if (_insn.OperandCount > 1)
        {
            Register dst = _insn.GetRegister(0);
            ulong a = _insn.OperandCount == 3 ? m : ReadRegister(_cpu, dst);
            ulong b = _insn.OperandCount == 3 ? _insn.Immediate : m;
            WriteRegister(_cpu, dst, Alu.Imul(a, b, size, out _, ref flags));
            _cpu.Rflags = flags;
            return VieStatus.Done;
        }
        ulong rax = _cpu.GetGpr(0);
        ulong lowIn = size == 1 ? rax & 0xFF : rax;
        ulong highIn = size == 1 ? (rax >> 8) & 0xFF : _cpu.GetGpr(2);
        ulong lo, hi;
        switch (_mnemonic)
        {
            case Mnemonic.Mul: lo = Alu.Mul(lowIn, m, size, out hi, ref flags); break;
            case Mnemonic.Imul: lo = Alu.Imul(lowIn, m, size, out hi, ref flags); break;
            default:
                bool ok = _mnemonic == Mnemonic.Div
                    ? Alu.Div(highIn, lowIn, m, size, out lo, out hi)
                    : Alu.Idiv(highIn, lowIn, m, size, out lo, out hi);
                if (!ok)
                {
                    Fault = new GuestFault(ExceptionVector.DE, 0);
                    return VieStatus.Fault;
                }
                break;
        }
        if (size == 1)
        {
            WriteRegister(_cpu, Register.AX, (lo & 0xFF) | ((hi & 0xFF) << 8));
        }
        else
        {
            WriteRegister(_cpu, RegisterInfo.Gpr(0, size, false), lo);
            WriteRegister(_cpu, RegisterInfo.Gpr(2, size, false), hi);
        }
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    private VieStatus BitScan(int size)
    {
        VieStatus st = ReadOp(size, out ulong m);
        if (st != VieStatus.Done)
            return st;
        Register dst = _insn.GetRegister(0);
        ulong flags = _cpu.Rflags;
        ulong r = _mnemonic switch
        {
            Mnemonic.Bsf => Alu.Bsf(m, ReadRegister(_cpu, dst), size, ref flags),
            Mnemonic.Bsr => Alu.Bsr(m, ReadRegister(_cpu, dst), size, ref flags),
            Mnemonic.Tzcnt => Alu.Tzcnt(m, size, ref flags),
            Mnemonic.Lzcnt => Alu.Lzcnt(m, size, ref flags),
            _ => Alu.Popcnt(m, size, ref flags),
        };
        // BSF/BSR of zero leave the destination as it was (a 32-bit one is still written back).
        WriteRegister(_cpu, dst, r);
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // MOVBE: a load or store with the bytes reversed.
    private VieStatus MoveSwapped(int mem, int size)
    {
        if (mem == 0)
            return WriteOp(size, Swap(ReadRegister(_cpu, _insn.GetRegister(1)), size));
        VieStatus st = ReadOp(size, out ulong m);
        if (st == VieStatus.Done)
            WriteRegister(_cpu, _insn.GetRegister(0), Swap(m, size));
        return st;
    }

    private static ulong Swap(ulong v, int size) => size switch
    {
        2 => BinaryPrimitives.ReverseEndianness((ushort)v),
        4 => BinaryPrimitives.ReverseEndianness((uint)v),
        _ => BinaryPrimitives.ReverseEndianness(v),
    };

    // XLAT: AL = [rBX + AL] (the decoder gives AL as the index).
    private VieStatus Xlat()
    {
        VieStatus st = ReadOp(1, out ulong m);
        if (st == VieStatus.Done)
            WriteRegister(_cpu, Register.AL, m);
        return st;
    }

    private VieStatus DoubleShift(int size)
    {
        VieStatus st = ReadOp(size, out ulong m, forWrite: true);
        if (st != VieStatus.Done)
            return st;
        ulong count = _insn.GetOperandKind(2) == OperandKind.Register ? ReadRegister(_cpu, _insn.GetRegister(2)) : _insn.Immediate;
        if (Alu.MaskCount(count, size) == 0)
            return WriteOp(size, m); // stored back unchanged, flags untouched (as in Shift)
        ulong flags = _cpu.Rflags;
        ulong b = ReadRegister(_cpu, _insn.GetRegister(1));
        ulong r = _mnemonic == Mnemonic.Shld ? Alu.Shld(m, b, count, size, ref flags) : Alu.Shrd(m, b, count, size, ref flags);
        if ((st = WriteOp(size, r)) != VieStatus.Done)
            return st;
        _cpu.Rflags = flags;
        return VieStatus.Done;
    }

    // MOVD/MOVQ/MOVSS/MOVSD and the 16-byte moves between an XMM or MMX register and memory.
    // Loads of 4 or 8 bytes into an XMM register zero the rest of it (MOVSS/MOVSD from memory do
    // too); 16 bytes travel as two 8-byte accesses; the aligned forms raise #GP on a misaligned
    // address. CR0.EM makes them #UD (as does CR4.OSFXSR clear for XMM), CR0.TS #NM.
    private VieStatus VectorMove()
    {
        int mem = MemoryOperand();
        if (mem < 0 || _insn.OperandCount != 2)
            return VieStatus.Fallback;
        Register reg = _insn.GetRegister(1 - mem);
        bool xmm = reg is >= Register.XMM0 and <= Register.XMM15;
        bool mmx = reg is >= Register.MM0 and <= Register.MM7;
        if (!xmm && !mmx)
            return VieStatus.Fallback;
        if ((_paging.Cr0 & PagingState.Cr0EM) != 0 || (xmm && (_paging.Cr4 & PagingState.Cr4OSFXSR) == 0))
        {
            Fault = new GuestFault(ExceptionVector.UD, 0);
            return VieStatus.Fault;
        }
        if ((_paging.Cr0 & PagingState.Cr0TS) != 0)
        {
            Fault = new GuestFault(ExceptionVector.NM, 0);
            return VieStatus.Fault;
        }
        int n = xmm ? reg - Register.XMM0 : reg - Register.MM0;
        int size = _insn.MemorySize;
        Register seg = _insn.MemorySegment;
        ulong ea = Ea;
        bool aligned = _mnemonic is Mnemonic.Movaps or Mnemonic.Movapd or Mnemonic.Movdqa
            or Mnemonic.Movntdq or Mnemonic.Movntps or Mnemonic.Movntpd or Mnemonic.Movntdqa;
        VieStatus st = Linearize(seg, ea, size, write: mem == 0, out ulong la);
        if (st != VieStatus.Done)
            return st;
        if (aligned && (la & 15) != 0)
            return GeneralProtection();
        ulong next = (ea + 8) & Alu.Mask(_insn.AddressSize);
        if (mem == 0)
        {
            UInt128 v = xmm ? _cpu.GetXmm(n) : _cpu.GetMm(n);
            if (size == 16)
            {
                if ((st = Write(seg, ea, 8, (ulong)v)) == VieStatus.Done)
                    st = Write(seg, next, 8, (ulong)(v >> 64));
                return st;
            }
            return Write(seg, ea, size, (ulong)v & Alu.Mask(size));
        }
        UInt128 loaded;
        if (size == 16)
        {
            if ((st = Read(seg, ea, 8, false, out ulong lo)) != VieStatus.Done || (st = Read(seg, next, 8, false, out ulong hi)) != VieStatus.Done)
                return st;
            loaded = ((UInt128)hi << 64) | lo;
        }
        else
        {
            if ((st = Read(seg, ea, size, false, out ulong v)) != VieStatus.Done)
                return st;
            loaded = v;
        }
        if (xmm)
            _cpu.SetXmm(n, loaded);
        else
            _cpu.SetMm(n, (ulong)loaded);
        return VieStatus.Done;
    }

    // ---- Stack ------------------------------------------------------------------------------------

    // The stack pointer's width: 64-bit mode, else SS.B.
    private int StackAddressSize => _bitness == Bitness.Bits64 ? 8 : _cpu.GetSegment(Register.SS).Big ? 4 : 2;

    // PUSH and POP of a general register, an immediate or a memory operand, in every mode; either
    // side may be device memory. The side written is checked before the side read, so a fault
    // never follows a device access. POP with an rSP-based destination addresses it after the
    // increment.
    // The AVX moves between a vector register and memory (128 or 256 bits; VMOVD/VMOVQ/VMOVSS/
    // VMOVSD's element, zero-extended into the register): #UD in real and virtual-8086 mode or
    // without CR4.OSXSAVE and XCR0's SSE and AVX state, #NM on CR0.TS, #GP(0) for an aligned
    // form's misaligned address. A VEX load zeroes the register's bits above what it loads.
    private VieStatus AvxMove()
    {
        int mem = MemoryOperand();
        if (mem < 0 || _insn.OperandCount != 2 || !_cpu.TryGetYmmHigh(0, out _))
            return VieStatus.Fallback;
        Register reg = _insn.GetRegister(1 - mem);
        bool ymm = reg is >= Register.YMM0 and <= Register.YMM15;
        if (!ymm && reg is not (>= Register.XMM0 and <= Register.XMM15))
            return VieStatus.Fallback; // VMOVD/VMOVQ with a general register
        if (_real || (_paging.Cr4 & PagingState.Cr4OSXSAVE) == 0 || (_cpu.Xcr0 & Xcr0.SseAvx) != Xcr0.SseAvx)
        {
            Fault = new GuestFault(ExceptionVector.UD, 0);
            return VieStatus.Fault;
        }
        if ((_paging.Cr0 & PagingState.Cr0TS) != 0)
        {
            Fault = new GuestFault(ExceptionVector.NM, 0);
            return VieStatus.Fault;
        }
        int n = ymm ? reg - Register.YMM0 : reg - Register.XMM0;
        int size = _insn.MemorySize;
        Register seg = _insn.MemorySegment;
        ulong ea = Ea;
        bool aligned = _mnemonic is Mnemonic.Vmovaps or Mnemonic.Vmovapd or Mnemonic.Vmovdqa or Mnemonic.Vmovntps
            or Mnemonic.Vmovntpd or Mnemonic.Vmovntdq or Mnemonic.Vmovntdqa;
        VieStatus st = Linearize(seg, ea, size, write: mem == 0, out ulong la);
        if (st != VieStatus.Done)
            return st;
        if (aligned && (la & (ulong)(size - 1)) != 0)
            return GeneralProtection();
        Span<ulong> q = stackalloc ulong[4];
        q.Clear();
        if (mem == 0)
        {
            UInt128 low = _cpu.GetXmm(n);
            _cpu.TryGetYmmHigh(n, out UInt128 high);
            q[0] = (ulong)low;
            q[1] = (ulong)(low >> 64);
            q[2] = (ulong)high;
            q[3] = (ulong)(high >> 64);
            for (int k = 0; k * 8 < size; k++)
            {
                int piece = Math.Min(8, size - k * 8);
                if ((st = Write(seg, (ea + (ulong)(8 * k)) & Alu.Mask(_insn.AddressSize), piece, q[k] & Alu.Mask(piece))) != VieStatus.Done)
                    return st;
            }
            return VieStatus.Done;
        }
        for (int k = 0; k * 8 < size; k++)
        {
            int piece = Math.Min(8, size - k * 8);
            if ((st = Read(seg, (ea + (ulong)(8 * k)) & Alu.Mask(_insn.AddressSize), piece, false, out q[k])) != VieStatus.Done)
                return st;
        }
        _cpu.SetXmm(n, ((UInt128)q[1] << 64) | q[0]);
        _cpu.TrySetYmmHigh(n, ((UInt128)q[3] << 64) | q[2]);
        return VieStatus.Done;
    }

    // SSE4.1's element moves between an XMM register and memory: PEXTRB/W/D/Q and EXTRACTPS store
    // the element the immediate names; PINSRB/W/D/Q (and SSE2's PINSRW) load one into it; INSERTPS
    // loads a dword into element imm[5:4] and clears the elements imm[3:0] names.
    private VieStatus ElementMove()
    {
        int mem = MemoryOperand();
        if (mem < 0)
            return VieStatus.Fallback;
        Register reg = _insn.GetRegister(1 - mem);
        if (reg is not (>= Register.XMM0 and <= Register.XMM15))
            return VieStatus.Fallback; // the MMX form of PINSRW
        if ((_paging.Cr0 & PagingState.Cr0EM) != 0 || (_paging.Cr4 & PagingState.Cr4OSFXSR) == 0)
        {
            Fault = new GuestFault(ExceptionVector.UD, 0);
            return VieStatus.Fault;
        }
        if ((_paging.Cr0 & PagingState.Cr0TS) != 0)
        {
            Fault = new GuestFault(ExceptionVector.NM, 0);
            return VieStatus.Fault;
        }
        int n = reg - Register.XMM0;
        int size = _insn.MemorySize;
        int imm = (int)(_insn.Immediate & 0xFF);
        UInt128 x = _cpu.GetXmm(n);
        VieStatus st;
        if (mem == 0)
        {
            int element = _mnemonic == Mnemonic.Extractps ? imm & 3 : imm & (16 / size - 1);
            return Write(_insn.MemorySegment, Ea, size, (ulong)(x >> (8 * size * element)) & Alu.Mask(size));
        }
        if ((st = ReadOp(size, out ulong v)) != VieStatus.Done)
            return st;
        int at = _mnemonic == Mnemonic.Insertps ? (imm >> 4) & 3 : imm & (16 / size - 1);
        UInt128 laneMask = (UInt128)Alu.Mask(size) << (8 * size * at);
        x = (x & ~laneMask) | ((UInt128)v << (8 * size * at));
        if (_mnemonic == Mnemonic.Insertps)
        {
            for (int k = 0; k < 4; k++)
            {
                if (((imm >> k) & 1) != 0)
                    x &= ~((UInt128)0xFFFF_FFFF << (32 * k));
            }
        }
        _cpu.SetXmm(n, x);
        return VieStatus.Done;
    }

    // PUSHA/PUSHAD: AX, CX, DX, BX, the SP from before, BP, SI, DI, each of the operand size, in
    // that order below the stack pointer (either may be device memory); SP moves last.
    private VieStatus PushAll()
    {
        int size = _insn.OperandSize, sw = StackAddressSize;
        ulong sp = _cpu.GetGpr(4) & Alu.Mask(sw);
        for (int k = 0; k < 8; k++)
        {
            ulong slot = (sp - (ulong)(size * (k + 1))) & Alu.Mask(sw);
            VieStatus st = Write(Register.SS, slot, size, _cpu.GetGpr(k) & Alu.Mask(size)); // k = 4 is the SP from before
            if (st != VieStatus.Done)
                return st;
        }
        StepIndex(_cpu, 4, (ulong)(-8 * size), sw);
        return VieStatus.Done;
    }

    // POPA/POPAD: DI, SI, BP, (SP's slot skipped), BX, DX, CX, AX from the stack, the registers
    // written only once every read has been answered.
    private VieStatus PopAll()
    {
        int size = _insn.OperandSize, sw = StackAddressSize;
        ulong sp = _cpu.GetGpr(4) & Alu.Mask(sw);
        Span<ulong> values = stackalloc ulong[8];
        for (int k = 0; k < 8; k++)
        {
            if (k == 3)
                continue;
            VieStatus st = Read(Register.SS, (sp + (ulong)(size * k)) & Alu.Mask(sw), size, false, out values[k]);
            if (st != VieStatus.Done)
                return st;
        }
        for (int k = 0; k < 8; k++)
        {
            if (k != 3)
                WriteRegister(_cpu, RegisterInfo.Gpr(7 - k, size, false), values[k]);
        }
        StepIndex(_cpu, 4, (ulong)(8 * size), sw);
        return VieStatus.Done;
    }

    // ENTER size, level: push rBP, copy level - 1 frame pointers from the old frame, push the new
    // frame pointer, then rBP is the frame and rSP drops by size; every access before a register changes.
    private VieStatus Enter()
    {
        int size = _insn.OperandSize, sw = StackAddressSize;
        ulong frameSize = _insn.Immediate & 0xFFFF;
        int level = _insn.Immediate2 & 31;
        ulong mask = Alu.Mask(sw);
        ulong sp = _cpu.GetGpr(4) & mask, bp = _cpu.GetGpr(5);
        VieStatus st = Write(Register.SS, (sp - (ulong)size) & mask, size, bp & Alu.Mask(size));
        if (st != VieStatus.Done)
            return st;
        sp = (sp - (ulong)size) & mask;
        ulong frameTemp = sp;
        for (int k = 1; k < level; k++)
        {
            ulong from = (bp - (ulong)(size * k)) & mask;
            if ((st = Read(Register.SS, from, size, false, out ulong copied)) != VieStatus.Done
                || (st = Write(Register.SS, (sp - (ulong)size) & mask, size, copied)) != VieStatus.Done)
                return st;
            sp = (sp - (ulong)size) & mask;
        }
        if (level > 0)
        {
            if ((st = Write(Register.SS, (sp - (ulong)size) & mask, size, frameTemp & Alu.Mask(size))) != VieStatus.Done)
                return st;
            sp = (sp - (ulong)size) & mask;
        }
        WriteRegister(_cpu, RegisterInfo.Gpr(5, sw, false), frameTemp); // BP, EBP or RBP by the stack's size
        _cpu.SetGpr(4, (_cpu.GetGpr(4) & ~mask) | ((sp - frameSize) & mask));
        return VieStatus.Done;
    }

    // LEAVE: rSP takes rBP, and rBP is popped from there.
    private VieStatus Leave()
    {
        int size = _insn.OperandSize, sw = StackAddressSize;
        ulong mask = Alu.Mask(sw);
        ulong bp = _cpu.GetGpr(5) & mask;
        VieStatus st = Read(Register.SS, bp, size, false, out ulong value);
        if (st != VieStatus.Done)
            return st;
        _cpu.SetGpr(4, (_cpu.GetGpr(4) & ~mask) | ((bp + (ulong)size) & mask));
        WriteRegister(_cpu, RegisterInfo.Gpr(5, size, false), value);
        return VieStatus.Done;
    }

    // SGDT/SIDT: the limit, then the base (four bytes outside 64-bit mode, eight in it).
    private VieStatus StoreDescriptorTable()
    {
        if (_insn.GetOperandKind(0) != OperandKind.Memory || !_cpu.TryGetDescriptorTable(_mnemonic == Mnemonic.Sidt, out var table))
            return VieStatus.Fallback;
        ulong ea = Ea;
        VieStatus st = Write(_insn.MemorySegment, ea, 2, table.Limit);
        if (st != VieStatus.Done)
            return st;
        return Write(_insn.MemorySegment, (ea + 2) & Alu.Mask(_insn.AddressSize), _bitness == Bitness.Bits64 ? 8 : 4, table.Base & (_bitness == Bitness.Bits64 ? ulong.MaxValue : 0xFFFF_FFFF));
    }

    private VieStatus PushPop()
    {
        OperandKind kind = _insn.GetOperandKind(0);
        if (_insn.OperandCount != 1)
            return VieStatus.Fallback;
        int size = _insn.OperandSize;
        int sw = StackAddressSize;
        ulong sp = _cpu.GetGpr(4) & Alu.Mask(sw);
        VieStatus st;
        if (kind == OperandKind.Register && _insn.GetRegister(0) is >= Register.ES and <= Register.GS)
        {
            // PUSH of a segment register: the slot is operand-sized, but current processors write
            // only the 16-bit selector into it. POP into a segment register loads a descriptor,
            // which is not emulated here.
            if (_mnemonic != Mnemonic.Push)
                return VieStatus.Fallback;
            ulong slotSeg = (sp - (ulong)size) & Alu.Mask(sw);
            if ((st = Write(Register.SS, slotSeg, 2, _cpu.GetSegment(_insn.GetRegister(0)).Selector)) != VieStatus.Done)
                return st;
            StepIndex(_cpu, 4, (ulong)-size, sw);
            return VieStatus.Done;
        }
        if (kind == OperandKind.Register && _insn.GetRegister(0) is < Register.AL or > Register.R15)
            return VieStatus.Fallback;
        if (_mnemonic == Mnemonic.Push)
        {
            ulong slot = (sp - (ulong)size) & Alu.Mask(sw);
            ulong v;
            if (kind == OperandKind.Memory)
            {
                if ((st = Probe(Register.SS, slot, size, write: true)) != VieStatus.Done || (st = ReadOp(size, out v)) != VieStatus.Done)
                    return st;
            }
            else
            {
                v = kind == OperandKind.Register ? ReadRegister(_cpu, _insn.GetRegister(0)) : _insn.Immediate & Alu.Mask(size);
            }
            if ((st = Write(Register.SS, slot, size, v)) != VieStatus.Done)
                return st;
            StepIndex(_cpu, 4, (ulong)-size, sw);
            return VieStatus.Done;
        }
        ulong value;
        if (kind == OperandKind.Memory)
        {
            ulong ea = EffectiveAddress((ulong)size);
            if ((st = Probe(_insn.MemorySegment, ea, size, write: true)) != VieStatus.Done
                || (st = Read(Register.SS, sp, size, false, out value)) != VieStatus.Done
                || (st = Write(_insn.MemorySegment, ea, size, value)) != VieStatus.Done)
                return st;
            StepIndex(_cpu, 4, (ulong)size, sw);
            return VieStatus.Done;
        }
        if ((st = Read(Register.SS, sp, size, false, out value)) != VieStatus.Done)
            return st;
        // POP rSP loads the popped value, not the incremented pointer.
        StepIndex(_cpu, 4, (ulong)size, sw);
        WriteRegister(_cpu, _insn.GetRegister(0), value);
        return VieStatus.Done;
    }

    // Near CALL (relative, register or memory target) and near RET (with or without an
    // immediate), with the stack or the target in device memory. Far forms fall back.
    private VieStatus CallRet()
    {
        int size = _insn.OperandSize;
        int sw = StackAddressSize;
        ulong sp = _cpu.GetGpr(4) & Alu.Mask(sw);
        VieStatus st;
        ulong target;
        if (_mnemonic == Mnemonic.Ret)
        {
            if (_insn.OpcodeByte is not (0xC2 or 0xC3))
                return VieStatus.Fallback;
            if ((st = Read(Register.SS, sp, size, false, out target)) != VieStatus.Done)
                return st;
            if ((st = Branch(target)) != VieStatus.Done)
                return st;
            StepIndex(_cpu, 4, (ulong)size + (_insn.OpcodeByte == 0xC2 ? _insn.Immediate & 0xFFFF : 0), sw);
            return VieStatus.Done;
        }
        if (_insn.OpcodeByte is not (0xE8 or 0xFF) || (_insn.OpcodeByte == 0xFF && ((_insn.ModRM >> 3) & 7) != 2))
            return VieStatus.Fallback;
        ulong slot = (sp - (ulong)size) & Alu.Mask(sw);
        ulong ret = (_cpu.Rip + _insn.Length) & Alu.Mask(size);
        OperandKind kind = _insn.GetOperandKind(0);
        if (kind == OperandKind.Memory)
        {
            if ((st = Probe(Register.SS, slot, size, write: true)) != VieStatus.Done || (st = ReadOp(size, out target)) != VieStatus.Done)
                return st;
        }
        else if (kind == OperandKind.Register)
        {
            target = ReadRegister(_cpu, _insn.GetRegister(0));
        }
        else
        {
            target = _insn.NearBranchTarget(_cpu.Rip);
        }
        if ((st = Branch(target & Alu.Mask(size))) != VieStatus.Done)
            return st;
        if ((st = Write(Register.SS, slot, size, ret)) != VieStatus.Done)
            return st;
        StepIndex(_cpu, 4, (ulong)-size, sw);
        return VieStatus.Done;
    }

    // Far JMP or CALL through a pointer in memory (offset, then selector; either may be device
    // memory). Real and virtual-8086 mode load CS as a real-mode segment; protected and IA-32e
    // mode take a code-segment descriptor from the GDT with the SDM's checks (null #GP(0); beyond
    // the limit, not code, or the privilege rules #GP(selector); not present #NP(selector); the
    // offset past the new limit #GP(0)) and set its accessed bit. CALL pushes CS and the return
    // offset (operand-sized) first. Gates, TSSs and LDT selectors fall back.
    private VieStatus FarThroughMemory()
    {
        int size = _insn.OperandSize;
        VieStatus st;
        ulong ea = Ea;
        if ((st = Read(_insn.MemorySegment, ea, size, false, out ulong offset)) != VieStatus.Done
            || (st = Read(_insn.MemorySegment, (ea + (ulong)size) & Alu.Mask(_insn.AddressSize), 2, false, out ulong selectorValue)) != VieStatus.Done)
            return st;
        ushort selector = (ushort)selectorValue;
        Segment cs = _cpu.GetSegment(Register.CS);
        Segment target;
        if (_real) // real or virtual-8086 mode
        {
            target = cs with { Selector = selector, Base = (ulong)selector << 4 };
            if (offset > target.Limit)
                return GeneralProtection();
        }
        else
        {
            if ((selector & ~3) == 0)
                return GeneralProtection();
            if ((selector & 4) != 0 || !_cpu.TryGetDescriptorTable(false, out var gdtr))
                return VieStatus.Fallback;
            ulong at = (ulong)(selector & ~7);
            if (at + 7 > gdtr.Limit)
                return SelectorFault(ExceptionVector.GP, selector);
            ulong descriptor = 0;
            _supervisor = true;
            st = Access(gdtr.Base + at, 8, AccessType.Read, write: false, ref descriptor);
            _supervisor = false;
            if (st != VieStatus.Done)
                return st;
            uint access = (uint)(descriptor >> 40) & 0xFF, flags = (uint)(descriptor >> 52) & 0xF;
            if ((access & 0x10) == 0)
                return VieStatus.Fallback; // a call gate, task gate or TSS
            int dpl = (int)(access >> 5) & 3, rpl = selector & 3, cpl = _paging.Cpl;
            bool conforming = (access & 0x04) != 0;
            bool longMode = (_paging.Efer & PagingState.EferLMA) != 0;
            if ((access & 0x08) == 0 || (conforming ? dpl > cpl : rpl > cpl || dpl != cpl)
                || (longMode && (flags & 0x6) == 0x6))
                return SelectorFault(ExceptionVector.GP, selector);
            if ((access & 0x80) == 0)
                return SelectorFault(ExceptionVector.NP, selector);
            uint limit = (uint)(descriptor & 0xFFFF) | (uint)((descriptor >> 32) & 0xF_0000);
            if ((flags & 0x8) != 0)
                limit = (limit << 12) | 0xFFF;
            ulong segmentBase = ((descriptor >> 16) & 0xFF_FFFF) | ((descriptor >> 56) << 24);
            target = new Segment((ushort)((selector & ~3) | cpl), longMode && (flags & 2) != 0 ? 0 : segmentBase, limit, access | 1 | (flags << 12));
            bool to64 = longMode && target.Long;
            if (to64 ? !_paging.IsCanonical(offset) : offset > limit)
                return GeneralProtection();
            if ((access & 1) == 0)
            {
                ulong marked = (access | 1) & 0xFF;
                _supervisor = true;
                st = Access(gdtr.Base + at + 5, 1, AccessType.Write, write: true, ref marked);
                _supervisor = false;
                if (st != VieStatus.Done)
                    return st;
            }
        }
        if (_mnemonic == Mnemonic.Call)
        {
            int sw = StackAddressSize;
            ulong sp = _cpu.GetGpr(4) & Alu.Mask(sw);
            ulong ret = (_cpu.Rip + _insn.Length) & Alu.Mask(size);
            if ((st = Write(Register.SS, (sp - (ulong)size) & Alu.Mask(sw), size, cs.Selector)) != VieStatus.Done
                || (st = Write(Register.SS, (sp - (ulong)(2 * size)) & Alu.Mask(sw), size, ret)) != VieStatus.Done)
                return st;
        }
        if (!_cpu.TrySetSegment(Register.CS, target))
            return VieStatus.Fallback;
        if (_mnemonic == Mnemonic.Call)
            StepIndex(_cpu, 4, (ulong)(-2 * size), StackAddressSize);
        _branch = true;
        _target = offset & Alu.Mask(size);
        return VieStatus.Done;
    }

    private VieStatus SelectorFault(byte vector, ushort selector)
    {
        Fault = new GuestFault(vector, (uint)(selector & ~3));
        return VieStatus.Fault;
    }

    // Near JMP with its target in device memory.
    private VieStatus JumpThroughMemory()
    {
        VieStatus st;
        if ((st = ReadOp(_insn.OperandSize, out ulong target)) != VieStatus.Done)
            return st;
        return Branch(target & Alu.Mask(_insn.OperandSize));
    }

    // A near branch target: canonical in 64-bit mode, inside CS's limit elsewhere (#GP(0)).
    private VieStatus Branch(ulong target)
    {
        bool ok = _bitness == Bitness.Bits64 ? _paging.IsCanonical(target) : target <= _cpu.GetSegment(Register.CS).Limit;
        if (!ok)
            return GeneralProtection();
        _branch = true;
        _target = target;
        return VieStatus.Done;
    }

    // ---- Port I/O ---------------------------------------------------------------------------------

    // IN/OUT, and one element of INS/OUTS. IN to AL or AX merges, IN to EAX zero-extends into
    // RAX; INS stores the port's value at ES:rDI and leaves RAX alone (its destination is checked
    // before the port is read, so a fault never follows the side effect); OUTS reads seg:rSI and
    // writes the port. rSI/rDI/rCX move at the address size; REP with a zero count does nothing.
    private VieStatus PortElement()
    {
        ref readonly IoExit io = ref _ioExit;
        int size = io.Size;
        ulong v = 0;
        VieStatus st;
        if (!io.String)
        {
            if (io.In)
            {
                if ((st = Boundary(io.Port, size, write: false, port: true, ref v)) != VieStatus.Done)
                    return st;
                WriteRegister(_cpu, RegisterInfo.Gpr(0, size, false), v);
                return VieStatus.Done;
            }
            v = _cpu.GetGpr(0) & Alu.Mask(size);
            return Boundary(io.Port, size, write: true, port: true, ref v);
        }
        int adSize = io.AddressSize;
        ulong adMask = Alu.Mask(adSize);
        if (io.Rep && (_cpu.GetGpr(1) & adMask) == 0)
            return VieStatus.Done;
        ulong step = (_cpu.Rflags & Rflags.DF) != 0 ? (ulong)-size : (ulong)size;
        if (io.In)
        {
            ulong di = _cpu.GetGpr(7) & adMask;
            if ((st = Probe(Register.ES, di, size, write: true)) != VieStatus.Done
                || (st = Boundary(io.Port, size, write: false, port: true, ref v)) != VieStatus.Done
                || (st = Write(Register.ES, di, size, v)) != VieStatus.Done)
                return st;
            StepIndex(_cpu, 7, step, adSize);
        }
        else
        {
            ulong si = _cpu.GetGpr(6) & adMask;
            if ((st = Read(io.Segment, si, size, false, out v)) != VieStatus.Done
                || (st = Boundary(io.Port, size, write: true, port: true, ref v)) != VieStatus.Done)
                return st;
            StepIndex(_cpu, 6, step, adSize);
        }
        if (!io.Rep)
            return VieStatus.Done;
        StepIndex(_cpu, 1, ulong.MaxValue, adSize);
        return (_cpu.GetGpr(1) & adMask) == 0 ? VieStatus.Done : VieStatus.Repeat;
    }

    // ---- Strings ----------------------------------------------------------------------------------

    // One element of MOVS/STOS/LODS/CMPS/SCAS: the source is seg:rSI (DS unless overridden) or the
    // accumulator, the destination ES:rDI or the accumulator. Either side, or both, may be device
    // memory; the destination is checked before the source is read.
    private VieStatus StringElement()
    {
        int size = _insn.MemorySize;
        int adSize = _insn.AddressSize;
        ulong adMask = Alu.Mask(adSize);
        bool repe = (_insn.Prefixes & Prefixes.Rep) != 0;
        bool repne = (_insn.Prefixes & Prefixes.Repne) != 0;
        bool rep = repe || repne;
        if (rep && (_cpu.GetGpr(1) & adMask) == 0)
            return VieStatus.Done;
        ulong si = _cpu.GetGpr(6) & adMask;
        ulong di = _cpu.GetGpr(7) & adMask;
        Register src = _insn.MemorySegment;
        VieStatus st;
        ulong value;
        bool compare = _string is StringOp.Cmps or StringOp.Scas;
        bool usesSi = _string is StringOp.Movs or StringOp.Cmps or StringOp.Lods;
        bool usesDi = _string != StringOp.Lods;
        switch (_string)
        {
            case StringOp.Movs:
                if ((st = Probe(Register.ES, di, size, write: true)) != VieStatus.Done
                    || (st = Read(src, si, size, false, out value)) != VieStatus.Done
                    || (st = Write(Register.ES, di, size, value)) != VieStatus.Done)
                    return st;
                break;
            case StringOp.Stos:
                if ((st = Write(Register.ES, di, size, _cpu.GetGpr(0) & Alu.Mask(size))) != VieStatus.Done)
                    return st;
                break;
            case StringOp.Lods:
                if ((st = Read(src, si, size, false, out value)) != VieStatus.Done)
                    return st;
                WriteRegister(_cpu, RegisterInfo.Gpr(0, size, false), value);
                break;
            default:
                ulong left = _cpu.GetGpr(0) & Alu.Mask(size);
                if (_string == StringOp.Cmps
                    && ((st = Probe(Register.ES, di, size, write: false)) != VieStatus.Done || (st = Read(src, si, size, false, out left)) != VieStatus.Done))
                    return st;
                if ((st = Read(Register.ES, di, size, false, out ulong right)) != VieStatus.Done)
                    return st;
                ulong f = _cpu.Rflags;
                Alu.Binary(Alu.Op.Cmp, left, right, size, ref f);
                _cpu.Rflags = f;
                break;
        }
        ulong step = (_cpu.Rflags & Rflags.DF) != 0 ? (ulong)-size : (ulong)size;
        if (usesSi)
            StepIndex(_cpu, 6, step, adSize);
        if (usesDi)
            StepIndex(_cpu, 7, step, adSize);
        if (!rep)
            return VieStatus.Done;
        StepIndex(_cpu, 1, ulong.MaxValue, adSize);
        if ((_cpu.GetGpr(1) & adMask) == 0)
            return VieStatus.Done;
        if (compare)
        {
            bool zf = (_cpu.Rflags & Rflags.ZF) != 0;
            if ((repe && !zf) || (repne && zf))
                return VieStatus.Done;
        }
        return VieStatus.Repeat;
    }

    // Adds to a register at an address size: 16 bits keep the rest, 32 bits zero-extend.
    private static void StepIndex(IVieCpu cpu, int n, ulong delta, int adSize) =>
        cpu.SetGpr(n, CodeSize.AddAtWidth(cpu.GetGpr(n), delta, adSize));

    // ---- Registers --------------------------------------------------------------------------------

    // The value of a register or immediate operand.
    private ulong Source(int i) =>
        _insn.GetOperandKind(i) == OperandKind.Register ? ReadRegister(_cpu, _insn.GetRegister(i)) : _insn.Immediate;

    /// <summary>Reads a general register as the instruction sees it (AH..BH are bits 15:8).</summary>
    public static ulong ReadRegister(IVieCpu cpu, Register r)
    {
        (int n, int size, bool high) = RegisterInfo.GprNumber(r);
        return RegisterInfo.Extract(cpu.GetGpr(n), size, high);
    }

    /// <summary>Writes a general register as the instruction would: 32-bit writes zero the upper
    /// half, 8- and 16-bit writes keep the rest.</summary>
    public static void WriteRegister(IVieCpu cpu, Register r, ulong value)
    {
        (int n, int size, bool high) = RegisterInfo.GprNumber(r);
        cpu.SetGpr(n, RegisterInfo.Merge(cpu.GetGpr(n), size, high, value));
    }
}
