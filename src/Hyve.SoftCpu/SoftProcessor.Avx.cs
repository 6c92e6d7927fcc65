// AVX and AVX2. A VEX instruction that has an SSE form runs as that SSE form on each 128-bit lane:
// its first source in XMM2 (which takes the result), its second in XMM1 and a blend mask in XMM0,
// with the architectural registers put back afterwards, so the arithmetic, MXCSR handling and
// exceptions are exactly SSE's. What has no SSE form is here: moves of 256 bits, broadcasts,
// inserts and extracts of halves, permutes across lanes, masked moves, per-element shifts, tests
// over the whole vector. VEX.128 forms zero bits 255:128 of their destination (SSE forms leave them
// alone), and memory operands need no alignment but for the aligned moves'.
using System;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    // Set while an SSE form runs for a VEX instruction: CR4.OSFXSR and CR0.EM do not apply to VEX.
    private bool _vexLane;

    private static readonly bool[] Avx2Only = MnemonicSet(
        Mnemonic.Vpbroadcastb, Mnemonic.Vpbroadcastw, Mnemonic.Vpbroadcastd, Mnemonic.Vpbroadcastq, Mnemonic.Vbroadcasti128,
        Mnemonic.Vperm2i128, Mnemonic.Vinserti128, Mnemonic.Vextracti128, Mnemonic.Vpermd, Mnemonic.Vpermq, Mnemonic.Vpermps,
        Mnemonic.Vpermpd, Mnemonic.Vpblendd, Mnemonic.Vpmaskmovd, Mnemonic.Vpmaskmovq, Mnemonic.Vpsllvd, Mnemonic.Vpsllvq,
        Mnemonic.Vpsrlvd, Mnemonic.Vpsrlvq, Mnemonic.Vpsravd, Mnemonic.Vpgatherdd, Mnemonic.Vpgatherdq, Mnemonic.Vpgatherqd,
        Mnemonic.Vpgatherqq, Mnemonic.Vgatherdps, Mnemonic.Vgatherdpd, Mnemonic.Vgatherqps, Mnemonic.Vgatherqpd);

    // The packed-integer forms, whose 256-bit encodings are AVX2's.
    private static readonly bool[] IntegerVex = BuildIntegerVex();

    private static bool[] MnemonicSet(params Mnemonic[] list)
    {
        var set = new bool[Enum.GetValues<Mnemonic>().Length];
        foreach (Mnemonic m in list)
            set[(int)m] = true;
        return set;
    }

    private static bool[] BuildIntegerVex()
    {
        var set = new bool[Enum.GetValues<Mnemonic>().Length];
        foreach (Mnemonic m in Enum.GetValues<Mnemonic>())
        {
            string n = m.ToString();
            set[(int)m] = (n.StartsWith("Vp", StringComparison.Ordinal) && m is not (Mnemonic.Vpermilps or Mnemonic.Vpermilpd
                or Mnemonic.Vperm2f128 or Mnemonic.Vptest or Mnemonic.Vpclmulqdq)) || m is Mnemonic.Vmpsadbw or Mnemonic.Vmovntdqa;
        }
        return set;
    }

    // The VEX forms of AES and PCLMULQDQ (neither extension is offered): not implemented.
    private static readonly bool[] UnimplementedVex = MnemonicSet(Mnemonic.Vaesenc,
        Mnemonic.Vaesenclast, Mnemonic.Vaesdec, Mnemonic.Vaesdeclast, Mnemonic.Vaesimc, Mnemonic.Vaeskeygenassist, Mnemonic.Vpclmulqdq);

    // An FMA form: which operands are multiplied and which added (132, 213, 231), the product
    // negated (FNMADD, FNMSUB), the addend subtracted (0 never, 1 always, 2 in even elements:
    // FMADDSUB, 3 in odd elements: FMSUBADD), double precision, scalar. Order 0: not FMA.
    private readonly record struct FmaForm(int Order, bool NegateProduct, int Subtract, bool Double, bool Scalar);

    private static readonly FmaForm[] FmaForms = BuildFmaForms();

    private static FmaForm[] BuildFmaForms()
    {
        var forms = new FmaForm[Enum.GetValues<Mnemonic>().Length];
        foreach (Mnemonic m in Enum.GetValues<Mnemonic>())
        {
            string n = m.ToString().ToLowerInvariant();
            if (!n.StartsWith("vfm", StringComparison.Ordinal) && !n.StartsWith("vfnm", StringComparison.Ordinal))
                continue;
            int digits = n.IndexOfAny(['1', '2']);
            string kind = n[1..digits];
            int order = int.Parse(n.AsSpan(digits, 3), System.Globalization.CultureInfo.InvariantCulture);
            string type = n[(digits + 3)..];
            int subtract = kind switch { "fmsub" or "fnmsub" => 1, "fmaddsub" => 2, "fmsubadd" => 3, _ => 0 };
            forms[(int)m] = new FmaForm(order, kind.StartsWith("fnm", StringComparison.Ordinal), subtract, type[1] == 'd', type[0] == 's');
        }
        return forms;
    }

    // The widening forms: a half, quarter or eighth of the destination's length in, per lane.
    private static readonly bool[] WideningVex = MnemonicSet(Mnemonic.Vcvtps2pd, Mnemonic.Vcvtdq2pd,
        Mnemonic.Vpmovsxbw, Mnemonic.Vpmovsxbd, Mnemonic.Vpmovsxbq, Mnemonic.Vpmovsxwd, Mnemonic.Vpmovsxwq, Mnemonic.Vpmovsxdq,
        Mnemonic.Vpmovzxbw, Mnemonic.Vpmovzxbd, Mnemonic.Vpmovzxbq, Mnemonic.Vpmovzxwd, Mnemonic.Vpmovzxwq, Mnemonic.Vpmovzxdq);


    // One VEX vector instruction; false when it raised.
    private bool Avx(ulong next)
    {
        Instruction vex = _insn;
        Mnemonic m = vex.Mnemonic;
        if (RealAddressing)
            return Raise(ExceptionVector.UD);
        if (UnimplementedVex[(int)m])
            return RaiseUnimplemented(); // the VEX forms of AES and PCLMULQDQ
        bool avx2 = Avx2Only[(int)m] || (vex.VexL != 0 && IntegerVex[(int)m])
            || (m is Mnemonic.Vbroadcastss or Mnemonic.Vbroadcastsd && vex.GetOperandKind(1) == OperandKind.Register);
        CpuFeatures need = FmaForms[(int)m].Order != 0 ? CpuFeatures.Fma : m is Mnemonic.Vcvtph2ps or Mnemonic.Vcvtps2ph ? CpuFeatures.F16c
            : avx2 ? CpuFeatures.Avx2 : CpuFeatures.Avx;
        if ((_features & need) == 0 || (_cr4 & PagingState.Cr4OSXSAVE) == 0 || (_area.Xcr0 & Xcr0.SseAvx) != Xcr0.SseAvx)
            return Raise(ExceptionVector.UD);
        if ((_cr0 & PagingState.Cr0TS) != 0)
            return Raise(ExceptionVector.NM);
        bool done = AvxNative(m, out bool handled);
        if (handled)
        {
            if (done)
                _rip = next;
            return done;
        }
        return AvxLanes(m, next);
    }

    private static bool IsVector(Register r) => r is >= Register.XMM0 and <= Register.XMM15 or >= Register.YMM0 and <= Register.YMM15;

    private static int VectorNumber(Register r) => r >= Register.YMM0 ? r - Register.YMM0 : r - Register.XMM0;

    // Lane 0 or 1 of a vector register (an XMM register's lane 1 reads its YMM register's upper half).
    private UInt128 VectorLane(Register r, int lane)
    {
        int n = VectorNumber(r);
        return lane == 0 ? _area.Xmm[n] : _area.YmmHigh[n];
    }

    // Writes a VEX destination: a YMM register takes both lanes, an XMM register the low one with
    // bits 255:128 zeroed.
    private void SetVector(Register r, UInt128 low, UInt128 high)
    {
        int n = VectorNumber(r);
        _area.Xmm[n] = low;
        _area.YmmHigh[n] = r >= Register.YMM0 ? high : 0;
    }

    // Operand k as bytes (4, 8, 16 or 32) of a vector register or of memory; aligned memory
    // operands must be aligned to their size (#GP(0) otherwise).
    private bool VectorSource(int k, int bytes, bool aligned, out UInt128 low, out UInt128 high)
    {
        low = high = 0;
        ref readonly Instruction i = ref _insn;
        if (i.GetOperandKind(k) == OperandKind.Register)
        {
            Register r = i.GetRegister(k);
            low = VectorLane(r, 0);
            high = VectorLane(r, 1);
            if (bytes < 16)
                low &= ((UInt128)1 << (8 * bytes)) - 1;
            if (bytes <= 16)
                high = 0;
            return true;
        }
        ulong ea = Ea();
        if (aligned && (Linear(i.MemorySegment, ea) & (ulong)(bytes - 1)) != 0)
            return Raise(ExceptionVector.GP);
        return ReadBytes(ea, bytes, out low, out high);
    }

    // Up to 32 bytes of memory at the memory operand's segment and ea (8 at a time, then 4, 2, 1).
    private bool ReadBytes(ulong ea, int bytes, out UInt128 low, out UInt128 high)
    {
        low = high = 0;
        Register seg = _insn.MemorySegment;
        ulong mask = Alu.Mask(_insn.AddressSize);
        for (int at = 0; at < bytes;)
        {
            int size = Math.Min(bytes - at, 8);
            size = size >= 8 ? 8 : size >= 4 ? 4 : size >= 2 ? 2 : 1;
            if (!Read(seg, (ea + (ulong)at) & mask, size, out ulong v))
                return false;
            if (at < 16)
                low |= (UInt128)v << (8 * at);
            else
                high |= (UInt128)v << (8 * (at - 16));
            at += size;
        }
        return true;
    }

    // Stores bytes (up to 32) of low:high at the memory operand, both ends probed writable first.
    private bool VectorStore(int bytes, bool aligned, UInt128 low, UInt128 high)
    {
        ulong ea = Ea();
        Register seg = _insn.MemorySegment;
        ulong mask = Alu.Mask(_insn.AddressSize);
        if (aligned && (Linear(seg, ea) & (ulong)(bytes - 1)) != 0)
            return Raise(ExceptionVector.GP);
        if (!Read(seg, ea, 1, out _, forWrite: true) || !Read(seg, (ea + (ulong)bytes - 1) & mask, 1, out _, forWrite: true))
            return false;
        for (int at = 0; at < bytes;)
        {
            int size = Math.Min(bytes - at, 8);
            size = size >= 8 ? 8 : size >= 4 ? 4 : size >= 2 ? 2 : 1;
            UInt128 part = at < 16 ? low >> (8 * at) : high >> (8 * (at - 16));
            if (!Write(seg, (ea + (ulong)at) & mask, size, (ulong)part & Alu.Mask(size)))
                return false;
            at += size;
        }
        return true;
    }

    private static UInt128 Low64(UInt128 v) => v & ulong.MaxValue;

    private static ulong Element(UInt128 low, UInt128 high, int width, int index)
    {
        int bit = width * 8 * index;
        UInt128 v = bit < 128 ? low >> bit : high >> (bit - 128);
        return (ulong)v & Alu.Mask(width);
    }

    private static void SetElement(ref UInt128 low, ref UInt128 high, int width, int index, ulong value)
    {
        int bit = width * 8 * index;
        UInt128 m = (UInt128)Alu.Mask(width);
        if (bit < 128)
            low = (low & ~(m << bit)) | ((UInt128)(value & Alu.Mask(width)) << bit);
        else
            high = (high & ~(m << (bit - 128))) | ((UInt128)(value & Alu.Mask(width)) << (bit - 128));
    }

    // The VEX instructions without an SSE form (and the moves, which are simpler done directly).
    // handled = false sends the instruction to the lane engine.
    private bool AvxNative(Mnemonic m, out bool handled)
    {
        ref readonly Instruction i = ref _insn;
        handled = true;
        int len = 16 << i.VexL;
        switch (m)
        {
            case Mnemonic.Vmovups or Mnemonic.Vmovupd or Mnemonic.Vmovaps or Mnemonic.Vmovapd or Mnemonic.Vmovdqu or Mnemonic.Vmovdqa
                or Mnemonic.Vmovntps or Mnemonic.Vmovntpd or Mnemonic.Vmovntdq or Mnemonic.Vmovntdqa or Mnemonic.Vlddqu:
                {
                    bool aligned = m is not (Mnemonic.Vmovups or Mnemonic.Vmovupd or Mnemonic.Vmovdqu or Mnemonic.Vlddqu);
                    if (!VectorSource(1, len, aligned, out UInt128 lo, out UInt128 hi))
                        return false;
                    if (i.GetOperandKind(0) == OperandKind.Memory)
                        return VectorStore(len, aligned, lo, hi);
                    SetVector(i.GetRegister(0), lo, hi);
                    return true;
                }
            case Mnemonic.Vmovss or Mnemonic.Vmovsd:
                {
                    int size = m == Mnemonic.Vmovss ? 4 : 8;
                    UInt128 mask = ((UInt128)1 << (8 * size)) - 1;
                    if (i.OperandCount == 3)
                    {
                        // Register form: the element from the third operand, the rest of the low lane from the second.
                        UInt128 v = (VectorLane(i.GetRegister(1), 0) & ~mask) | (VectorLane(i.GetRegister(2), 0) & mask);
                        SetVector(i.GetRegister(0), v, 0);
                        return true;
                    }
                    if (i.GetOperandKind(0) == OperandKind.Memory)
                        return VectorStore(size, false, VectorLane(i.GetRegister(1), 0), 0);
                    if (!VectorSource(1, size, false, out UInt128 lo, out _))
                        return false;
                    SetVector(i.GetRegister(0), lo, 0);
                    return true;
                }
            case Mnemonic.Vmovlps or Mnemonic.Vmovlpd or Mnemonic.Vmovhps or Mnemonic.Vmovhpd:
                {
                    bool high = m is Mnemonic.Vmovhps or Mnemonic.Vmovhpd;
                    if (i.GetOperandKind(0) == OperandKind.Memory)
                    {
                        UInt128 s = VectorLane(i.GetRegister(1), 0);
                        return VectorStore(8, false, high ? s >> 64 : s, 0);
                    }
                    if (!VectorSource(2, 8, false, out UInt128 q, out _))
                        return false;
                    UInt128 src = VectorLane(i.GetRegister(1), 0);
                    SetVector(i.GetRegister(0), high ? Low64(src) | (q << 64) : (src & ~(UInt128)ulong.MaxValue) | q, 0);
                    return true;
                }
            case Mnemonic.Vmovhlps or Mnemonic.Vmovlhps:
                {
                    UInt128 a = VectorLane(i.GetRegister(1), 0), b = VectorLane(i.GetRegister(2), 0);
                    SetVector(i.GetRegister(0), m == Mnemonic.Vmovhlps ? (b >> 64) | ((a >> 64) << 64) : Low64(a) | (b << 64), 0);
                    return true;
                }
            case Mnemonic.Vmovd or Mnemonic.Vmovq:
                {
                    int size = m == Mnemonic.Vmovd ? 4 : 8;
                    Register r0 = i.GetOperandKind(0) == OperandKind.Register ? i.GetRegister(0) : Register.None;
                    if (r0 != Register.None && IsVector(r0))
                    {
                        ulong v;
                        if (i.GetOperandKind(1) == OperandKind.Register && IsVector(i.GetRegister(1)))
                            v = (ulong)VectorLane(i.GetRegister(1), 0) & Alu.Mask(size);
                        else if (!Source(1, size, out v))
                            return false;
                        SetVector(r0, v & Alu.Mask(size), 0);
                        return true;
                    }
                    ulong low = (ulong)VectorLane(i.GetRegister(1), 0) & Alu.Mask(size);
                    return Destination(size, low);
                }
            case var fma when FmaForms[(int)fma].Order != 0:
                return FusedMultiplyAdd(FmaForms[(int)fma]);
            case Mnemonic.Vcvtph2ps:
                {
                    if (!VectorSource(1, len / 2, false, out UInt128 h, out _))
                        return false;
                    var c = new SimdControl(_mxcsr);
                    UInt128 rlo = 0, rhi = 0;
                    for (int k = 0; k < len / 4; k++)
                        SetElement(ref rlo, ref rhi, 4, k, SimdFloat.HalfToSingle((ushort)(h >> (16 * k)), ref c));
                    if (!CommitSimd(c.Flags))
                        return false;
                    SetVector(i.GetRegister(0), rlo, rhi);
                    return true;
                }
            case Mnemonic.Vcvtps2ph:
                {
                    Register src = i.GetRegister(1);
                    UInt128 slo = VectorLane(src, 0), shi = VectorLane(src, 1);
                    int rc = (i.Immediate & 4) != 0 ? (int)(_mxcsr >> 13) & 3 : (int)(i.Immediate & 3);
                    var c = new SimdControl(_mxcsr);
                    UInt128 halves = 0;
                    for (int k = 0; k < len / 4; k++)
                        halves |= (UInt128)SimdFloat.SingleToHalf((uint)Element(slo, shi, 4, k), rc, ref c) << (16 * k);
                    if (!CommitSimd(c.Flags))
                        return false;
                    if (i.GetOperandKind(0) == OperandKind.Memory)
                        return VectorStore(len / 2, false, halves, 0);
                    SetVector(i.GetRegister(0), halves, 0);
                    return true;
                }
            case Mnemonic.Vpgatherdd or Mnemonic.Vpgatherdq or Mnemonic.Vpgatherqd or Mnemonic.Vpgatherqq
                or Mnemonic.Vgatherdps or Mnemonic.Vgatherdpd or Mnemonic.Vgatherqps or Mnemonic.Vgatherqpd:
                return Gather(m);
            case Mnemonic.Vldmxcsr:
                {
                    if (!Read(i.MemorySegment, Ea(), 4, out ulong v))
                        return false;
                    if ((v & ~MxcsrMask) != 0)
                        return Raise(ExceptionVector.GP);
                    _mxcsr = (uint)v;
                    return true;
                }
            case Mnemonic.Vstmxcsr:
                return Write(i.MemorySegment, Ea(), 4, _mxcsr);
            case Mnemonic.Vzeroupper or Mnemonic.Vzeroall:
                {
                    int count = _bitness == Bitness.Bits64 ? 16 : 8; // outside 64-bit mode YMM8-15 are untouched
                    Array.Clear(_area.YmmHigh, 0, count);
                    if (m == Mnemonic.Vzeroall)
                        Array.Clear(_area.Xmm, 0, count);
                    return true;
                }
            case Mnemonic.Vbroadcastss or Mnemonic.Vbroadcastsd or Mnemonic.Vpbroadcastb or Mnemonic.Vpbroadcastw
                or Mnemonic.Vpbroadcastd or Mnemonic.Vpbroadcastq or Mnemonic.Vbroadcastf128 or Mnemonic.Vbroadcasti128:
                {
                    int width = m switch
                    {
                        Mnemonic.Vpbroadcastb => 1,
                        Mnemonic.Vpbroadcastw => 2,
                        Mnemonic.Vbroadcastss or Mnemonic.Vpbroadcastd => 4,
                        Mnemonic.Vbroadcastsd or Mnemonic.Vpbroadcastq => 8,
                        _ => 16,
                    };
                    if (!VectorSource(1, width, false, out UInt128 v, out _))
                        return false;
                    UInt128 lane = 0;
                    for (int k = 0; k < 16 / width; k++)
                        lane |= width == 16 ? v : (v & (((UInt128)1 << (8 * width)) - 1)) << (8 * width * k);
                    SetVector(i.GetRegister(0), lane, lane);
                    return true;
                }
            case Mnemonic.Vinsertf128 or Mnemonic.Vinserti128:
                {
                    if (!VectorSource(2, 16, false, out UInt128 v, out _))
                        return false;
                    Register src = i.GetRegister(1);
                    UInt128 lo = VectorLane(src, 0), hi = VectorLane(src, 1);
                    if ((i.Immediate & 1) == 0)
                        lo = v;
                    else
                        hi = v;
                    SetVector(i.GetRegister(0), lo, hi);
                    return true;
                }
            case Mnemonic.Vextractf128 or Mnemonic.Vextracti128:
                {
                    UInt128 v = VectorLane(i.GetRegister(1), (int)(i.Immediate & 1));
                    if (i.GetOperandKind(0) == OperandKind.Memory)
                        return VectorStore(16, false, v, 0);
                    SetVector(i.GetRegister(0), v, 0);
                    return true;
                }
            case Mnemonic.Vperm2f128 or Mnemonic.Vperm2i128:
                {
                    if (!VectorSource(2, 32, false, out UInt128 blo, out UInt128 bhi))
                        return false;
                    Register a = i.GetRegister(1);
                    int imm = (int)i.Immediate;
                    UInt128 Pick(int s) => s switch { 0 => VectorLane(a, 0), 1 => VectorLane(a, 1), 2 => blo, _ => bhi };
                    UInt128 lo = (imm & 0x08) != 0 ? 0 : Pick(imm & 3);
                    UInt128 hi = (imm & 0x80) != 0 ? 0 : Pick((imm >> 4) & 3);
                    SetVector(i.GetRegister(0), lo, hi);
                    return true;
                }
            case Mnemonic.Vpermq or Mnemonic.Vpermpd:
                {
                    if (!VectorSource(1, 32, false, out UInt128 lo, out UInt128 hi))
                        return false;
                    UInt128 rlo = 0, rhi = 0;
                    for (int k = 0; k < 4; k++)
                        SetElement(ref rlo, ref rhi, 8, k, Element(lo, hi, 8, (int)(i.Immediate >> (2 * k)) & 3));
                    SetVector(i.GetRegister(0), rlo, rhi);
                    return true;
                }
            case Mnemonic.Vpermd or Mnemonic.Vpermps:
                {
                    if (!VectorSource(2, 32, false, out UInt128 lo, out UInt128 hi))
                        return false;
                    Register idx = i.GetRegister(1);
                    UInt128 ilo = VectorLane(idx, 0), ihi = VectorLane(idx, 1), rlo = 0, rhi = 0;
                    for (int k = 0; k < 8; k++)
                        SetElement(ref rlo, ref rhi, 4, k, Element(lo, hi, 4, (int)Element(ilo, ihi, 4, k) & 7));
                    SetVector(i.GetRegister(0), rlo, rhi);
                    return true;
                }
            case Mnemonic.Vpermilps or Mnemonic.Vpermilpd:
                {
                    bool dbl = m == Mnemonic.Vpermilpd;
                    int width = dbl ? 8 : 4, perLane = 16 / width;
                    UInt128 tlo, thi, clo = 0, chi = 0;
                    bool immediate = i.OperandCount == 3 && i.GetOperandKind(2) == OperandKind.Immediate8;
                    if (immediate)
                    {
                        if (!VectorSource(1, len, false, out tlo, out thi))
                            return false;
                    }
                    else
                    {
                        tlo = VectorLane(i.GetRegister(1), 0);
                        thi = VectorLane(i.GetRegister(1), 1);
                        if (!VectorSource(2, len, false, out clo, out chi))
                            return false;
                    }
                    UInt128 rlo = 0, rhi = 0;
                    for (int k = 0; k < len / width; k++)
                    {
                        int sel = immediate
                            ? (int)(dbl ? (i.Immediate >> k) & 1 : (i.Immediate >> (2 * (k % 4))) & 3)
                            : (int)(dbl ? (Element(clo, chi, 8, k) >> 1) & 1 : Element(clo, chi, 4, k) & 3);
                        int laneBase = k / perLane * perLane;
                        SetElement(ref rlo, ref rhi, width, k, Element(tlo, thi, width, laneBase + sel));
                    }
                    SetVector(i.GetRegister(0), rlo, rhi);
                    return true;
                }
            case Mnemonic.Vpblendd:
                {
                    if (!VectorSource(2, len, false, out UInt128 blo, out UInt128 bhi))
                        return false;
                    Register a = i.GetRegister(1);
                    UInt128 rlo = VectorLane(a, 0), rhi = VectorLane(a, 1);
                    for (int k = 0; k < len / 4; k++)
                    {
                        if (((i.Immediate >> k) & 1) != 0)
                            SetElement(ref rlo, ref rhi, 4, k, Element(blo, bhi, 4, k));
                    }
                    SetVector(i.GetRegister(0), rlo, rhi);
                    return true;
                }
            case Mnemonic.Vmaskmovps or Mnemonic.Vmaskmovpd or Mnemonic.Vpmaskmovd or Mnemonic.Vpmaskmovq:
                return MaskedMove(m is Mnemonic.Vmaskmovpd or Mnemonic.Vpmaskmovq ? 8 : 4, len);
            case Mnemonic.Vpsllvd or Mnemonic.Vpsllvq or Mnemonic.Vpsrlvd or Mnemonic.Vpsrlvq or Mnemonic.Vpsravd:
                {
                    int width = m is Mnemonic.Vpsllvq or Mnemonic.Vpsrlvq ? 8 : 4, bits = 8 * width;
                    if (!VectorSource(2, len, false, out UInt128 clo, out UInt128 chi))
                        return false;
                    Register a = i.GetRegister(1);
                    UInt128 alo = VectorLane(a, 0), ahi = VectorLane(a, 1), rlo = 0, rhi = 0;
                    for (int k = 0; k < len / width; k++)
                    {
                        ulong x = Element(alo, ahi, width, k), c = Element(clo, chi, width, k);
                        ulong v = m switch
                        {
                            Mnemonic.Vpsllvd or Mnemonic.Vpsllvq => c >= (ulong)bits ? 0 : x << (int)c,
                            Mnemonic.Vpsrlvd or Mnemonic.Vpsrlvq => c >= (ulong)bits ? 0 : x >> (int)c,
                            _ => (ulong)(Alu.SignExtend(x, width) >> (int)Math.Min(c, (ulong)(bits - 1))),
                        };
                        SetElement(ref rlo, ref rhi, width, k, v);
                    }
                    SetVector(i.GetRegister(0), rlo, rhi);
                    return true;
                }
            case Mnemonic.Vptest or Mnemonic.Vtestps or Mnemonic.Vtestpd:
                {
                    if (!VectorSource(1, len, false, out UInt128 blo, out UInt128 bhi))
                        return false;
                    Register a = i.GetRegister(0);
                    UInt128 alo = VectorLane(a, 0), ahi = VectorLane(a, 1);
                    if (len == 16)
                        ahi = 0;
                    UInt128 sign = m switch
                    {
                        Mnemonic.Vtestps => ((UInt128)0x8000_0000_8000_0000UL << 64) | 0x8000_0000_8000_0000UL,
                        Mnemonic.Vtestpd => ((UInt128)0x8000_0000_0000_0000UL << 64) | 0x8000_0000_0000_0000UL,
                        _ => UInt128.MaxValue,
                    };
                    bool zero = ((alo & blo & sign) | (ahi & bhi & sign)) == 0;
                    bool carry = ((~alo & blo & sign) | (~ahi & bhi & sign)) == 0;
                    Flags = (Flags & ~Rflags.Status) | (zero ? Rflags.ZF : 0) | (carry ? Rflags.CF : 0);
                    return true;
                }
            case Mnemonic.Vmovmskps or Mnemonic.Vmovmskpd or Mnemonic.Vpmovmskb:
                {
                    int width = m switch { Mnemonic.Vmovmskps => 4, Mnemonic.Vmovmskpd => 8, _ => 1 };
                    Register src = i.GetRegister(1);
                    UInt128 lo = VectorLane(src, 0), hi = src >= Register.YMM0 ? VectorLane(src, 1) : 0;
                    ulong mask = 0;
                    for (int k = 0; k < len / width; k++)
                        mask |= (Element(lo, hi, width, k) >> (8 * width - 1)) << k;
                    Set(i.GetRegister(0), mask);
                    return true;
                }
            default:
                handled = false;
                return false;
        }
    }

    // FMA: op1 (the destination), op2 (VEX.vvvv) and op3 (ModRM.rm) multiplied and added as the
    // form's digits say (132: op1 × op3 + op2, 213: op2 × op1 + op3, 231: op2 × op3 + op1), each
    // element rounded once by MXCSR; a scalar form keeps op1's other elements.
    private bool FusedMultiplyAdd(FmaForm form)
    {
        ref readonly Instruction i = ref _insn;
        int width = form.Double ? 8 : 4;
        int len = form.Scalar ? width : 16 << i.VexL;
        Register dst = i.GetRegister(0), second = i.GetRegister(1);
        if (!VectorSource(2, len, false, out UInt128 tlo, out UInt128 thi))
            return false;
        UInt128 alo = VectorLane(dst, 0), ahi = VectorLane(dst, 1), blo = VectorLane(second, 0), bhi = VectorLane(second, 1);
        UInt128 rlo = form.Scalar ? alo : 0, rhi = 0;
        var c = new SimdControl(_mxcsr);
        for (int k = 0; k < len / width; k++)
        {
            ulong x1 = Element(alo, ahi, width, k), x2 = Element(blo, bhi, width, k), x3 = Element(tlo, thi, width, k);
            (ulong m1, ulong m2, ulong add) = form.Order switch { 132 => (x1, x3, x2), 213 => (x2, x1, x3), _ => (x2, x3, x1) };
            bool subtract = form.Subtract switch { 1 => true, 2 => k % 2 == 0, 3 => k % 2 == 1, _ => false };
            ulong v = SimdFloat.FusedMultiplyAdd(form.Double, m1, m2, add, form.NegateProduct, subtract, ref c);
            SetElement(ref rlo, ref rhi, width, k, v);
        }
        if (!CommitSimd(c.Flags))
            return false;
        SetVector(dst, rlo, form.Scalar ? 0 : rhi);
        return true;
    }

    // The AVX2 gathers: each element whose mask element has its top bit set is loaded from base +
    // index element × scale + displacement and its mask element cleared, in order; a fault leaves
    // the elements done so far loaded and their mask cleared, so the instruction restarts where it
    // stopped. At the end the whole mask register is zero.
    private bool Gather(Mnemonic m)
    {
        ref readonly Instruction i = ref _insn;
        Register dst = i.GetRegister(0), maskReg = i.GetRegister(2), index = i.MemoryIndex;
        int width = m is Mnemonic.Vpgatherdq or Mnemonic.Vpgatherqq or Mnemonic.Vgatherdpd or Mnemonic.Vgatherqpd ? 8 : 4;
        int indexWidth = m is Mnemonic.Vpgatherqd or Mnemonic.Vpgatherqq or Mnemonic.Vgatherqps or Mnemonic.Vgatherqpd ? 8 : 4;
        int count = Math.Min(16 << i.VexL, dst >= Register.YMM0 ? 32 : 16) / width;
        count = Math.Min(count, (index >= Register.YMM0 ? 32 : 16) / indexWidth);
        UInt128 dlo = VectorLane(dst, 0), dhi = dst >= Register.YMM0 ? VectorLane(dst, 1) : 0;
        UInt128 mlo = VectorLane(maskReg, 0), mhi = maskReg >= Register.YMM0 ? VectorLane(maskReg, 1) : 0;
        UInt128 xlo = VectorLane(index, 0), xhi = VectorLane(index, 1);
        ulong baseValue = i.MemoryBase == Register.None ? 0 : Get(i.MemoryBase);
        bool ok = true;
        for (int k = 0; k < count && ok; k++)
        {
            if ((Element(mlo, mhi, width, k) >> (8 * width - 1)) == 0)
                continue;
            ulong offset = (ulong)Alu.SignExtend(Element(xlo, xhi, indexWidth, k), indexWidth) * i.MemoryScale;
            ulong ea = (baseValue + offset + (ulong)i.Displacement) & Alu.Mask(i.AddressSize);
            ok = Read(i.MemorySegment, ea, width, out ulong v);
            if (ok)
            {
                SetElement(ref dlo, ref dhi, width, k, v);
                SetElement(ref mlo, ref mhi, width, k, 0);
            }
        }
        if (ok)
            mlo = mhi = 0;
        // Elements beyond the gathered ones (VPGATHERQD/VGATHERQPS's upper half of an XMM) are zeroed.
        for (int k = count; k < 16 / width && dst < Register.YMM0; k++)
        {
            SetElement(ref dlo, ref dhi, width, k, 0);
            SetElement(ref mlo, ref mhi, width, k, 0);
        }
        SetVector(dst, dlo, dhi);
        SetVector(maskReg, mlo, mhi);
        return ok;
    }

    // VMASKMOV/VPMASKMOV: the elements whose mask (the second operand) has its top bit set are loaded
    // (the others read as zero) or stored (the others left alone in memory); only they can fault.
    private bool MaskedMove(int width, int len)
    {
        ref readonly Instruction i = ref _insn;
        bool store = i.GetOperandKind(0) == OperandKind.Memory;
        Register maskReg = i.GetRegister(1);
        UInt128 mlo = VectorLane(maskReg, 0), mhi = VectorLane(maskReg, 1);
        ulong ea = Ea();
        Register seg = i.MemorySegment;
        ulong amask = Alu.Mask(i.AddressSize);
        int count = len / width;
        if (store)
        {
            Register src = i.GetRegister(2);
            UInt128 slo = VectorLane(src, 0), shi = VectorLane(src, 1);
            for (int k = 0; k < count; k++)
            {
                if ((Element(mlo, mhi, width, k) >> (8 * width - 1)) != 0
                    && !Read(seg, (ea + (ulong)(k * width)) & amask, width, out _, forWrite: true))
                    return false;
            }
            for (int k = 0; k < count; k++)
            {
                if ((Element(mlo, mhi, width, k) >> (8 * width - 1)) != 0
                    && !Write(seg, (ea + (ulong)(k * width)) & amask, width, Element(slo, shi, width, k)))
                    return false;
            }
            return true;
        }
        UInt128 rlo = 0, rhi = 0;
        for (int k = 0; k < count; k++)
        {
            if ((Element(mlo, mhi, width, k) >> (8 * width - 1)) == 0)
                continue;
            if (!Read(seg, (ea + (ulong)(k * width)) & amask, width, out ulong v))
                return false;
            SetElement(ref rlo, ref rhi, width, k, v);
        }
        SetVector(i.GetRegister(0), rlo, rhi);
        return true;
    }
}
