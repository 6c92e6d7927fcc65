// --verify-emulation: a backend that decodes device-memory instructions itself (KVM) is checked
// against the vmm's own emulator. At each such exit the vmm copies the vCPU's state, emulates the
// instruction on the copy (RAM writes kept aside), and requires the same accesses in the same
// order (address, size, direction, write data); reads are answered on both sides with the device's
// value. Once the backend has finished the instruction the registers, the defined flags and the
// RAM the copy wrote must agree. A difference stops the VM with both results.
using System;
using System.Collections.Generic;
using System.Text;
using Hyve.Vmm.Backend;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.Vmm.Verification;

/// <summary>Checks a decoding backend's device-memory instructions against the vmm's emulator (one per vCPU).</summary>
public sealed class AccessVerifier
{
    private enum Phase : byte
    {
        Idle,
        Expecting,   // the emulator waits for the access in _vie.Pending / PendingInout
        Boundary,    // a string element finished; more may follow
        Finished,    // the emulator completed the instruction
    }

    private readonly Vie _vie = new();
    private readonly ShadowCpu _shadow = new();
    private readonly OverlayMemory _overlay = new();
    private readonly List<(ushort Port, int Size, bool Write, ulong Value)> _portLog = [];
    private ulong _portLogRip;
    private Phase _phase;
    private ulong _rip;
    private ulong _rcxBefore;
    private readonly StringBuilder _trace = new();

    /// <summary>Instructions checked and found equal.</summary>
    public long Verified { get; private set; }

    /// <summary>Instructions the vmm's emulator does not take (they fall back): not compared.</summary>
    public long Skipped { get; private set; }

    /// <summary>Accesses compared.</summary>
    public long Accesses { get; private set; }

    /// <summary>Writes the vmm makes and KVM leaves out where the SDM asks for them (the store-back
    /// of a failed CMPXCHG8B/16B).</summary>
    public long KnownDeviations { get; private set; }

    /// <summary>Whether an instruction is being checked.</summary>
    public bool Active => _phase != Phase.Idle;

    /// <summary>A decoded-access exit: the start of an instruction to check (MMIO), a port access
    /// of the instruction being checked, or port data to remember (string input that the backend
    /// reads ahead before it writes device memory).</summary>
    public void Exit(IBackendVcpu cpu, GuestMemory memory, in PagingState paging, in DecodedAccess access, bool port)
    {
        if (Active)
            return;
        ulong rip = cpu.Rip;
        if (port)
        {
            if (_portLogRip != rip)
                _portLog.Clear();
            _portLogRip = rip;
            return;
        }
        if (_portLogRip != rip)
            _portLog.Clear();
        _trace.Clear();
        if (access.Write)
        {
            // The backend exits for a write only once the instruction has run (KVM writes its
            // registers back first): find it behind RIP and put back what it changed.
            if (!Reconstruct(cpu, memory, in paging, in access))
                Unreconstructed++;
            return;
        }
        _rip = rip;
        _rcxBefore = cpu.GetGpr(1);
        _shadow.CopyFrom(cpu);
        _overlay.Reset(memory);
        _vie.Reset();
        _vie.Begin(access.Address, 0, false, in paging, _shadow, _overlay);
        _phase = Phase.Boundary;
        Step(first: true);
    }

    /// <summary>Writes whose instruction could not be found behind RIP (a near CALL with its stack
    /// in device memory, for one): not compared.</summary>
    public long Unreconstructed { get; private set; }

    // For a write exit: candidate instructions ending at RIP (or, for a string store that is still
    // repeating, at RIP itself), longest first, each tried from the state before it (the
    // post-state with the string registers or RSP stepped back); the first whose emulation starts
    // with this very write (address, piece size and data) is the one checked.
    private bool Reconstruct(IBackendVcpu cpu, GuestMemory memory, in PagingState paging, in DecodedAccess access)
    {
        Segment cs = cpu.GetSegment(Register.CS);
        Bitness bits = CodeSize.Of(in paging, in cs);
        ulong rip1 = cpu.Rip;
        // The 15 bytes before RIP and the 15 from it, fetched once; candidate k starts k bytes back.
        Span<byte> window = stackalloc byte[30];
        ulong start = rip1 - 15;
        int got = PageWalker.FetchLinear(memory, in paging, bits == Bitness.Bits64 ? start : (uint)(cs.Base + start), bits == Bitness.Bits64, window);
        // Longest first: a prefix (REX, 66) belongs to the instruction it precedes.
        for (int back = 15; back >= 0; back--)
        {
            ulong rip0 = rip1 - (ulong)back;
            int from = 15 - back;
            ReadOnlySpan<byte> bytes = window[from..Math.Max(from, Math.Min(got, from + 15))];
            if (bytes.IsEmpty || Hyve.X86.Decoding.Decoder.Decode(bytes, bits, out Instruction d) != DecodeStatus.Ok)
                continue;
            bool store = !d.HasModRM && d.OpcodeByte is 0xA4 or 0xA5 or 0xAA or 0xAB;
            bool rep = store && (d.Prefixes & Prefixes.Rep) != 0;
            if (back == 0 ? !rep || cpu.GetGpr(1) == 0 : d.Length != back)
                continue;
            _shadow.CopyFrom(cpu);
            _shadow.Rip = rip0;
            if (!StepBack(in d, store, rep, bits))
                continue;
            _rip = rip0;
            _rcxBefore = _shadow.Gpr[1];
            _overlay.Reset(memory);
            _vie.Reset();
            if (!_vie.Begin(access.Address, 0, false, in paging, _shadow, _overlay, bytes[..d.Length]))
                continue;
            VieStatus st = _vie.Emulate(_shadow, NoVmmDevices.Instance, _overlay);
            MmioAccess first = _vie.Pending;
            // The first piece as the vmm cuts the backend's access.
            int piece = MmioAccess.PieceSize(access.Size);
            if (st == VieStatus.NeedsDevice && !_vie.PendingIsInout && first.Write && first.Gpa == access.Address
                && first.Bytes == piece && first.Data == (cpu.GetAccessData(0, piece) & Alu.Mask(piece)))
            {
                _phase = Phase.Expecting;
                return true;
            }
            _vie.Reset();
        }
        _phase = Phase.Idle;
        return false;
    }

    // Undoes the register effects of a store found behind RIP: the string registers of STOS/MOVS
    // (and the count of a repeated one), RSP for PUSH. Other stores change no register but RIP.
    private bool StepBack(in Instruction d, bool store, bool rep, Bitness bits)
    {
        if (store)
        {
            ulong size = d.OpcodeByte is 0xA4 or 0xAA ? 1UL : d.OperandSize;
            ulong step = (_shadow.Rflags & Rflags.DF) != 0 ? unchecked(0 - size) : size;
            ulong mask = d.AddressSize switch { 2 => 0xFFFF, 4 => 0xFFFF_FFFF, _ => ulong.MaxValue };
            StepRegister(7, step, mask);
            if (d.OpcodeByte is 0xA4 or 0xA5)
                StepRegister(6, step, mask);
            if (rep)
                StepRegister(1, unchecked(0 - 1UL), mask);
            return true;
        }
        if (d.Mnemonic == Mnemonic.Push)
        {
            if (bits != Bitness.Bits64)
                return false;
            _shadow.Gpr[4] += d.OperandSize;
            return true;
        }
        return d.Mnemonic is not (Mnemonic.Call or Mnemonic.Enter or Mnemonic.Pushf or Mnemonic.Pushfq or Mnemonic.Pushfd);
    }

    // Register r goes back by step within the address size (the rest of it is kept).
    private void StepRegister(int r, ulong step, ulong mask)
    {
        ulong v = _shadow.Gpr[r];
        _shadow.Gpr[r] = (v & ~mask) | ((v - step) & mask);
    }

    /// <summary>One piece of the backend's access, with its data (write data or the value read).</summary>
    public void Piece(ulong address, int size, bool write, bool port, ulong value)
    {
        if (!Active)
        {
            if (port && _portLogRip != 0)
                _portLog.Add(((ushort)address, size, write, value));
            return;
        }
        Accesses++;
        if (_phase == Phase.Boundary && !Step(first: false))
            return;
        if (_phase != Phase.Expecting)
            Fail($"the backend made an access the vmm's emulation does not ({Describe(address, size, write, port, value)})");
        Match(address, size, write, port, value);
        Step(first: false);
    }

    /// <summary>All pieces of an exit are answered: while checking, the backend is asked to come
    /// back as soon as it has finished the instruction (or with its next access).</summary>
    public void AccessDone(IBackendVcpu cpu)
    {
        if (Active)
            cpu.RequestExit();
    }

    /// <summary>The backend finished the instruction: registers, flags and RAM must agree.</summary>
    public void Completed(IBackendVcpu cpu, GuestMemory memory)
    {
        if (!Active)
            return;
        _portLog.Clear();
        _portLogRip = 0;
        // A string instruction may run further elements that touch only RAM before it stops.
        ulong rcx = cpu.GetGpr(1);
        for (int guard = 0; _phase == Phase.Boundary && _shadow.Gpr[1] != rcx && guard < 1 << 20; guard++)
        {
            if (!Step(first: false))
                return;
        }
        // KVM's CMPXCHG8B/16B does not store the old value back when the comparison fails; the
        // SDM (and the vmm) do. A known difference: counted, the rest still compared.
        ref readonly Instruction insn = ref _vie.Instruction;
        while (_phase == Phase.Expecting && insn.Mnemonic is Mnemonic.Cmpxchg8b or Mnemonic.Cmpxchg16b
            && !_vie.PendingIsInout && _vie.Pending.Write && (cpu.Rflags & Rflags.ZF) == 0)
        {
            _vie.Fulfill(_vie.Pending);
            _trace.Append("(vmm-only write) ");
            KnownDeviations++;
            if (!Step(first: false))
                return;
        }
        if (_phase == Phase.Expecting)
            Fail($"the vmm's emulation expects another access ({Pending()}); the backend finished the instruction");
        ref readonly Instruction d = ref _vie.Instruction;
        for (int r = 0; r < 16; r++)
        {
            if (cpu.GetGpr(r) != _shadow.Gpr[r])
                Fail($"{Name(r)}: backend {cpu.GetGpr(r):X}, vmm {_shadow.Gpr[r]:X}");
        }
        // A repeated string instruction whose count ran out may be left at its start by KVM: the
        // guest then runs it once more with a zero count, which only moves RIP on.
        bool countDone = (d.Prefixes & (Prefixes.Rep | Prefixes.Repne)) != 0 && cpu.Rip == _rip
            && (_shadow.Gpr[1] & (d.AddressSize switch { 2 => 0xFFFFUL, 4 => 0xFFFF_FFFFUL, _ => ulong.MaxValue })) == 0;
        if (cpu.Rip != _shadow.Rip && !countDone)
            Fail($"RIP: backend {cpu.Rip:X}, vmm {_shadow.Rip:X}");
        int size = d.MemorySize is > 0 and <= 8 ? d.MemorySize : 8;
        // RF (bit 16) is left out: KVM sets it while a string instruction repeats, and the processor
        // clears it when the next instruction completes, so the guest never sees it there.
        ulong defined = (EmulatorVerifier.DefinedFlags(in d, _rcxBefore, size) | ~Rflags.Status) & ~(1UL << 16);
        if ((cpu.Rflags & defined) != (_shadow.Rflags & defined))
            Fail($"RFLAGS: backend {cpu.Rflags:X}, vmm {_shadow.Rflags:X} (compared bits {defined & 0x3FFFFF:X})");
        for (int r = 0; r < 16; r++)
        {
            if (cpu.GetXmm(r) != _shadow.Xmm[r])
                Fail($"XMM{r}: backend {cpu.GetXmm(r):X32}, vmm {_shadow.Xmm[r]:X32}");
        }
        Span<byte> b = stackalloc byte[1];
        foreach ((ulong gpa, byte value) in _overlay.Writes)
        {
            if (!memory.ReadRam(gpa, b) || b[0] != value)
                Fail($"RAM at {gpa:X}: backend {b[0]:X2}, vmm {value:X2}");
        }
        Verified++;
        _phase = Phase.Idle;
        _vie.Reset();
    }

    /// <summary>Instructions the backend started and then gave up (KVM's emulator does not know
    /// them): the vmm's own emulator ran them, so there is nothing to compare.</summary>
    public long GivenUp { get; private set; }

    /// <summary>The instruction was dropped or handed to the vmm's own emulator: nothing to compare.</summary>
    public void Abandon()
    {
        if (Active)
            GivenUp++;
        _phase = Phase.Idle;
        _vie.Reset();
        _portLog.Clear();
    }

    // One pass of the vmm's emulation. False when checking ended here (a fallback).
    private bool Step(bool first)
    {
        while (true)
        {
            VieStatus st = _vie.Emulate(_shadow, NoVmmDevices.Instance, _overlay);
            switch (st)
            {
                case VieStatus.NeedsDevice:
                    _phase = Phase.Expecting;
                    // Port input the backend read ahead (batched string input) answers from the log.
                    if (_vie.PendingIsInout && _portLog.Count > 0)
                    {
                        var (port, size, write, value) = _portLog[0];
                        _portLog.RemoveAt(0);
                        Match(port, size, write, port: true, value);
                        continue;
                    }
                    return true;
                case VieStatus.Repeat:
                    _phase = Phase.Boundary;
                    return true;
                case VieStatus.Done:
                    _phase = Phase.Finished;
                    return true;
                case VieStatus.Fault:
                    Fail($"the vmm's emulation raises exception {_vie.Fault.Vector} (error code {_vie.Fault.ErrorCode:X}) where the backend made the access");
                    return false;
                default:
                    // The vmm does not emulate this instruction: nothing to compare against.
                    Skipped++;
                    _phase = Phase.Idle;
                    _vie.Reset();
                    return false;
            }
        }
    }

    // The access the emulator waits for must be this one; a read takes the device's value.
    private void Match(ulong address, int size, bool write, bool port, ulong value)
    {
        string got = Describe(address, size, write, port, value);
        _trace.Append(got).Append(' ');
        bool same;
        if (_vie.PendingIsInout)
        {
            InoutAccess a = _vie.PendingInout;
            same = port && a.Port == (ushort)address && a.Bytes == size && a.In != write && (!write || a.Eax == (uint)value);
            if (same)
                _vie.FulfillInout(a with { Eax = (uint)value });
        }
        else
        {
            MmioAccess a = _vie.Pending;
            same = !port && a.Gpa == address && a.Bytes == size && a.Write == write && (!write || a.Data == value);
            if (same)
                _vie.Fulfill(a with { Data = value });
        }
        if (!same)
            Fail($"access: backend {got}, vmm {Pending()}");
    }

    private string Pending()
    {
        if (_vie.PendingIsInout)
        {
            InoutAccess a = _vie.PendingInout;
            return Describe(a.Port, a.Bytes, !a.In, true, a.Eax);
        }
        MmioAccess m = _vie.Pending;
        return Describe(m.Gpa, m.Bytes, m.Write, false, m.Data);
    }

    private static string Describe(ulong address, int size, bool write, bool port, ulong value) =>
        port ? $"{(write ? "out" : "in")}{size} port {address:X}{(write ? $" = {value:X}" : $" -> {value:X}")}"
             : $"{(write ? "write" : "read")}{size} {address:X}{(write ? $" = {value:X}" : $" -> {value:X}")}";

    private static string Name(int r) => ((Register)((int)Register.RAX + r)).ToString();

    private void Fail(string what)
    {
        string insn = _vie.InstructionBytes.Length > 0 ? Convert.ToHexString(_vie.InstructionBytes) : "?";
        _phase = Phase.Idle;
        throw new VmmPanicException($"emulation mismatch at RIP {_rip:X} (bytes {insn}; accesses {_trace.ToString().TrimEnd()}): {what}");
    }

    // The vCPU's state as the emulator sees it, copied at the exit.
    private sealed class ShadowCpu : IVieCpu
    {
        public readonly ulong[] Gpr = new ulong[16];
        public readonly UInt128[] Xmm = new UInt128[16];
        private readonly ulong[] _mm = new ulong[8];
        private readonly Segment[] _segments = new Segment[6];

        public ulong Rip { get; set; }

        public ulong Rflags { get; set; }

        public void CopyFrom(IBackendVcpu cpu)
        {
            for (int i = 0; i < 16; i++)
            {
                Gpr[i] = cpu.GetGpr(i);
                Xmm[i] = cpu.GetXmm(i);
            }
            for (int i = 0; i < 8; i++)
                _mm[i] = cpu.GetMm(i);
            for (int i = 0; i < 6; i++)
                _segments[i] = cpu.GetSegment((Register)((int)Register.ES + i));
            Rip = cpu.Rip;
            Rflags = cpu.Rflags;
        }

        public ulong GetGpr(int n) => Gpr[n];

        public void SetGpr(int n, ulong value) => Gpr[n] = value;

        public Segment GetSegment(Register segment) => _segments[segment - Register.ES];

        public UInt128 GetXmm(int n) => Xmm[n];

        public void SetXmm(int n, UInt128 value) => Xmm[n] = value;

        public ulong GetMm(int n) => _mm[n];

        public void SetMm(int n, ulong value) => _mm[n] = value;
    }

    // Guest RAM as it was before the instruction, with the emulator's writes kept aside.
    private sealed class OverlayMemory : IGuestMemory
    {
        private readonly Dictionary<ulong, byte> _writes = [];
        private GuestMemory? _ram;

        public IEnumerable<KeyValuePair<ulong, byte>> Writes => _writes;

        public void Reset(GuestMemory ram)
        {
            _ram = ram;
            _writes.Clear();
        }

        public bool ReadRam(ulong gpa, Span<byte> data)
        {
            if (!_ram!.ReadRam(gpa, data))
                return false;
            for (int i = 0; i < data.Length; i++)
            {
                if (_writes.TryGetValue(gpa + (ulong)i, out byte b))
                    data[i] = b;
            }
            return true;
        }

        public bool WriteRam(ulong gpa, ReadOnlySpan<byte> data)
        {
            if (!_ram!.IsRam(gpa) || !_ram.IsRam(gpa + (ulong)data.Length - 1))
                return false;
            for (int i = 0; i < data.Length; i++)
                _writes[gpa + (ulong)i] = data[i];
            return true;
        }
    }

}
