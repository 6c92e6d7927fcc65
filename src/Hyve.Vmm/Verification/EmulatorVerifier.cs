// The emulator against the host CPU: each case runs one instruction natively on a buffer and
// through Vie with the same bytes behind guest page tables, device memory and RAM, from the same
// registers, flags and SSE state, and compares everything the instruction may change plus the
// device accesses it made. `hyve verify emulator` and the test suite both run it.
using System;
using System.Collections.Generic;
using System.Numerics;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.Vmm.Verification;

/// <summary>Outcome of a verification run.</summary>
/// <param name="Passed">Cases whose emulation matched the host CPU.</param>
/// <param name="Failed">Cases that differed.</param>
/// <param name="Failures">The first few differences, one line each.</param>
/// <param name="Forms">Number of instruction forms the cases were drawn from.</param>
public sealed record VerifyResult(long Passed, long Failed, IReadOnlyList<string> Failures, int Forms);

/// <summary>Differential check of <see cref="Vie"/> against the host CPU (x86-64 Linux hosts).</summary>
public static class EmulatorVerifier
{
    private const ulong DevicePages = 0xFE00_0000;  // guest-physical device memory (16 pages)
    private const ulong RamBase = 0x10_0000;          // guest-physical RAM handed out page by page
    private const ulong CodeLinear = 0x0000_5555_0000_0000;
    private const int Window = 96;                    // bytes compared around the access
    private const int Before = 32;                    // of which before the access

    /// <summary>Whether the host can run the native side.</summary>
    public static bool Supported => NativeCpu.Supported;

    // How the instruction touches its operand, for the expected device traffic.
    [Flags]
    private enum Use
    {
        Read = 1,
        Write = 2,
        ReadWrite = 3,
    }

    private enum Special
    {
        None,
        Div,
        Idiv,
        BitReg,
        Xlat,
        Wide,      // CMPXCHG8B/16B
        Vector,    // SSE move: the ModRM reg field names an XMM register
        Movsxd,
        NoWord,    // no 16-bit form (MOVNTI)
    }

    /// <summary>An instruction form: mandatory prefix, opcode bytes, ModRM reg field (-1: a random
    /// register), immediate size, byte form. How it uses memory comes from the decoded instruction.</summary>
    private sealed record Form(string Name, byte Mandatory, byte[] Opcode, int Digit, int Imm, bool Byte,
        bool Lockable = false, Special Special = Special.None, bool Align16 = false, int Implicit = 0);

    private const int RAX = 1, RCX = 2, RDX = 4, RBX = 8;

    private static List<Form> Forms()
    {
        var f = new List<Form>
        {
            new("mov Eb,Gb", 0, [0x88], -1, 0, true), new("mov Ev,Gv", 0, [0x89], -1, 0, false),
            new("mov Gb,Eb", 0, [0x8A], -1, 0, true), new("mov Gv,Ev", 0, [0x8B], -1, 0, false),
            new("mov Eb,Ib", 0, [0xC6], 0, 1, true), new("mov Ev,Iz", 0, [0xC7], 0, 4, false),
            new("movzx Gv,Eb", 0, [0x0F, 0xB6], -1, 0, false), new("movzx Gv,Ew", 0, [0x0F, 0xB7], -1, 0, false),
            new("movsx Gv,Eb", 0, [0x0F, 0xBE], -1, 0, false), new("movsx Gv,Ew", 0, [0x0F, 0xBF], -1, 0, false),
            new("movsxd Gq,Ed", 0, [0x63], -1, 0, false, Special: Special.Movsxd),
            new("test Eb,Gb", 0, [0x84], -1, 0, true), new("test Ev,Gv", 0, [0x85], -1, 0, false),
            new("test Eb,Ib", 0, [0xF6], 0, 1, true), new("test Ev,Iz", 0, [0xF7], 0, 4, false),
            new("xchg Eb,Gb", 0, [0x86], -1, 0, true, true), new("xchg Ev,Gv", 0, [0x87], -1, 0, false, true),
            new("xadd Eb,Gb", 0, [0x0F, 0xC0], -1, 0, true, true), new("xadd Ev,Gv", 0, [0x0F, 0xC1], -1, 0, false, true),
            new("cmpxchg Eb,Gb", 0, [0x0F, 0xB0], -1, 0, true, true, Implicit: RAX),
            new("cmpxchg Ev,Gv", 0, [0x0F, 0xB1], -1, 0, false, true, Implicit: RAX),
            new("cmpxchg8b Mq", 0, [0x0F, 0xC7], 1, 0, false, true, Special.Wide, Implicit: RAX | RBX | RCX | RDX),
            new("cmpxchg16b Mo", 0, [0x0F, 0xC7], 1, 0, false, true, Special.Wide, Align16: true, Implicit: RAX | RBX | RCX | RDX),
            new("imul Gv,Ev", 0, [0x0F, 0xAF], -1, 0, false), new("imul Gv,Ev,Iz", 0, [0x69], -1, 4, false),
            new("imul Gv,Ev,Ib", 0, [0x6B], -1, 1, false),
            new("bsf Gv,Ev", 0, [0x0F, 0xBC], -1, 0, false), new("bsr Gv,Ev", 0, [0x0F, 0xBD], -1, 0, false),
            new("popcnt Gv,Ev", 0xF3, [0x0F, 0xB8], -1, 0, false),
            new("tzcnt Gv,Ev", 0xF3, [0x0F, 0xBC], -1, 0, false), new("lzcnt Gv,Ev", 0xF3, [0x0F, 0xBD], -1, 0, false),
            new("movbe Gv,Mv", 0, [0x0F, 0x38, 0xF0], -1, 0, false), new("movbe Mv,Gv", 0, [0x0F, 0x38, 0xF1], -1, 0, false),
            new("movnti My,Gy", 0, [0x0F, 0xC3], -1, 0, false, Special: Special.NoWord),
            new("shld Ev,Gv,Ib", 0, [0x0F, 0xA4], -1, 1, false), new("shld Ev,Gv,CL", 0, [0x0F, 0xA5], -1, 0, false, Implicit: RCX),
            new("shrd Ev,Gv,Ib", 0, [0x0F, 0xAC], -1, 1, false), new("shrd Ev,Gv,CL", 0, [0x0F, 0xAD], -1, 0, false, Implicit: RCX),
            new("xlat", 0, [0xD7], -2, 0, true, Special: Special.Xlat, Implicit: RAX | RBX),
        };
        for (int n = 0; n < 2; n++)
        {
            f.Add(new($"incdec{n} Eb", 0, [0xFE], n, 0, true, true));
            f.Add(new($"incdec{n} Ev", 0, [0xFF], n, 0, false, true));
            f.Add(new($"notneg{n} Eb", 0, [0xF6], 2 + n, 0, true, true));
            f.Add(new($"notneg{n} Ev", 0, [0xF7], 2 + n, 0, false, true));
            f.Add(new($"mul{n} Eb", 0, [0xF6], 4 + n, 0, true, Implicit: RAX | RDX));
            f.Add(new($"mul{n} Ev", 0, [0xF7], 4 + n, 0, false, Implicit: RAX | RDX));
            Special div = n == 0 ? Special.Div : Special.Idiv;
            f.Add(new($"div{n} Eb", 0, [0xF6], 6 + n, 0, true, Special: div, Implicit: RAX | RDX));
            f.Add(new($"div{n} Ev", 0, [0xF7], 6 + n, 0, false, Special: div, Implicit: RAX | RDX));
        }
        for (int sh = 0; sh < 8; sh++)
        {
            if (sh == 6)
                continue; // /6 is an undocumented alias of SHL
            f.Add(new($"shift{sh} Eb,Ib", 0, [0xC0], sh, 1, true));
            f.Add(new($"shift{sh} Ev,Ib", 0, [0xC1], sh, 1, false));
            f.Add(new($"shift{sh} Eb,1", 0, [0xD0], sh, 0, true));
            f.Add(new($"shift{sh} Ev,1", 0, [0xD1], sh, 0, false));
            f.Add(new($"shift{sh} Eb,CL", 0, [0xD2], sh, 0, true, Implicit: RCX));
            f.Add(new($"shift{sh} Ev,CL", 0, [0xD3], sh, 0, false, Implicit: RCX));
        }
        for (int bt = 4; bt < 8; bt++)
        {
            f.Add(new($"bt{bt} Ev,Ib", 0, [0x0F, 0xBA], bt, 1, false, bt != 4));
            byte op = (byte)(0xA3 + (bt - 4) * 8);
            f.Add(new($"bt{bt} Ev,Gv", 0, [0x0F, op], -1, 0, false, bt != 4, Special.BitReg));
        }
        for (int cc = 0; cc < 16; cc++)
        {
            f.Add(new($"set{cc} Eb", 0, [0x0F, (byte)(0x90 + cc)], 0, 0, true));
            f.Add(new($"cmov{cc} Gv,Ev", 0, [0x0F, (byte)(0x40 + cc)], -1, 0, false));
        }
        for (int op = 0; op < 8; op++)
        {
            byte b = (byte)(op * 8);
            bool lockable = op != 7;
            f.Add(new($"alu{op} Eb,Gb", 0, [b], -1, 0, true, lockable));
            f.Add(new($"alu{op} Ev,Gv", 0, [(byte)(b + 1)], -1, 0, false, lockable));
            f.Add(new($"alu{op} Gb,Eb", 0, [(byte)(b + 2)], -1, 0, true));
            f.Add(new($"alu{op} Gv,Ev", 0, [(byte)(b + 3)], -1, 0, false));
            f.Add(new($"alu{op} Eb,Ib", 0, [0x80], op, 1, true, lockable));
            f.Add(new($"alu{op} Ev,Iz", 0, [0x81], op, 4, false, lockable));
            f.Add(new($"alu{op} Ev,Ib", 0, [0x83], op, 1, false, lockable));
        }
        // SSE moves between an XMM register and memory (loads and stores).
        (string, byte, byte[], bool)[] vector =
        [
            ("movd V,Md", 0x66, [0x0F, 0x6E], false), ("movd Md,V", 0x66, [0x0F, 0x7E], false),
            ("movq V,Mq", 0xF3, [0x0F, 0x7E], false), ("movq Mq,V", 0x66, [0x0F, 0xD6], false),
            ("movss V,Md", 0xF3, [0x0F, 0x10], false), ("movss Md,V", 0xF3, [0x0F, 0x11], false),
            ("movsd V,Mq", 0xF2, [0x0F, 0x10], false), ("movsd Mq,V", 0xF2, [0x0F, 0x11], false),
            ("movups V,Mo", 0, [0x0F, 0x10], false), ("movups Mo,V", 0, [0x0F, 0x11], false),
            ("movupd V,Mo", 0x66, [0x0F, 0x10], false), ("movupd Mo,V", 0x66, [0x0F, 0x11], false),
            ("movaps V,Mo", 0, [0x0F, 0x28], true), ("movaps Mo,V", 0, [0x0F, 0x29], true),
            ("movapd V,Mo", 0x66, [0x0F, 0x28], true), ("movapd Mo,V", 0x66, [0x0F, 0x29], true),
            ("movdqa V,Mo", 0x66, [0x0F, 0x6F], true), ("movdqa Mo,V", 0x66, [0x0F, 0x7F], true),
            ("movdqu V,Mo", 0xF3, [0x0F, 0x6F], false), ("movdqu Mo,V", 0xF3, [0x0F, 0x7F], false),
            ("movntdq Mo,V", 0x66, [0x0F, 0xE7], true), ("movntps Mo,V", 0, [0x0F, 0x2B], true),
            ("movntpd Mo,V", 0x66, [0x0F, 0x2B], true), ("movntdqa V,Mo", 0x66, [0x0F, 0x38, 0x2A], true),
        ];
        foreach (var (name, pfx, opc, align) in vector)
            f.Add(new(name, pfx, opc, -1, 0, false, Special: Special.Vector, Align16: align));
        // SSE4.1's element moves, with the element in an immediate.
        (string, byte[])[] elements =
        [
            ("pextrb Mb,V,Ib", [0x0F, 0x3A, 0x14]), ("pextrw Mw,V,Ib", [0x0F, 0x3A, 0x15]), ("pextrd Md,V,Ib", [0x0F, 0x3A, 0x16]),
            ("extractps Md,V,Ib", [0x0F, 0x3A, 0x17]), ("pinsrb V,Mb,Ib", [0x0F, 0x3A, 0x20]), ("insertps V,Md,Ib", [0x0F, 0x3A, 0x21]),
            ("pinsrd V,Md,Ib", [0x0F, 0x3A, 0x22]), ("pinsrw V,Mw,Ib", [0x0F, 0xC4]),
        ];
        foreach (var (name, opc) in elements)
            f.Add(new(name, 0x66, opc, -1, 1, false, Special: Special.Vector));
        return f;
    }

    private static readonly int[] AddressRegisters = [3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    /// <summary>One generated case, both sides.</summary>
    private sealed class Case
    {
        public byte[] Bytes = [];
        public int Base = -1;          // base register, or -1 (RIP-relative)
        public int Index = -1;
        public int Scale = 1;
        public long Disp;
        public bool Addr32;
        public bool RipRelative;
        public int DispOffset = -1;    // where the disp32 of a RIP-relative operand sits
        public long BitOffset;         // BT with a register: the signed bit offset
        public int BitRegister = -1;
        public int Size;               // operand size
        public int AccessSize;         // bytes the instruction accesses
        public int Xlat = -1;          // XLAT: AL
    }

    /// <summary>Runs <paramref name="cases"/> cases from <paramref name="seed"/>; <paramref name="progress"/>
    /// hears about every hundred thousand.</summary>
    public static VerifyResult Run(long cases, int seed, Action<long>? progress = null, int report = 5)
    {
        if (!Supported)
            throw new PlatformNotSupportedException("the host-CPU check needs an x86-64 Linux host");
        using var native = new NativeCpu();
        var rng = new Random(seed);
        List<Form> forms = Forms();
        var failures = new List<string>();
        long passed = 0, failed = 0;
        var world = new World();
        for (long k = 0; k < cases; k++)
        {
            Form form = forms[rng.Next(forms.Count)];
            string? diff;
            string text;
            try
            {
                diff = RunCase(native, world, form, rng, out text);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                diff = $"{e.GetType().Name}: {e.Message}";
                text = "?";
            }
            if (diff == null)
            {
                passed++;
            }
            else
            {
                failed++;
                if (failures.Count < report)
                    failures.Add($"{text} ({form.Name}): {diff}");
            }
            if (progress != null && (k + 1) % 100_000 == 0)
                progress(k + 1);
        }
        return new VerifyResult(passed, failed, failures, forms.Count);
    }

    private static string? RunCase(NativeCpu native, World world, Form form, Random rng, out string text)
    {
        world.Reset(rng);
        Case c = Build(form, rng);
        Decoder.Decode(c.Bytes, Bitness.Bits64, out Instruction d);
        text = Convert.ToHexString(c.Bytes);
        if (d.Status != DecodeStatus.Ok)
            return $"generated bytes do not decode ({d.Status})";
        c.AccessSize = d.MemorySize;

        // Registers, flags and SSE state shared by both sides.
        var st = new FullState { FlagsIn = Rflags.Fixed1 | Rflags.IF | ((ulong)rng.Next() & Rflags.Status) };
        for (int r = 0; r < 16; r++)
            st.In[r] = Value(rng);
        for (int r = 0; r < 16; r++)
            st.XmmIn[r] = ((UInt128)Value(rng) << 64) | Value(rng);
        byte[] initial = new byte[Window];
        rng.NextBytes(initial);
        if (rng.Next(4) == 0)
            Array.Copy(initial, 0, initial, Before + 8, 8); // equal halves make CMPXCHG8B/16B succeed sometimes
        if (form.Special is Special.Div or Special.Idiv)
            PrepareDivision(form.Special, in d, ref st, initial);
        if (form.Special == Special.Wide && rng.Next(2) == 0)
        {
            // Make the comparison succeed: rDX:rAX equals memory.
            int half = c.AccessSize / 2;
            st.In[0] = (st.In[0] & ~Alu.Mask(half)) | (BitConverter.ToUInt64(initial, Before) & Alu.Mask(half));
            st.In[2] = (st.In[2] & ~Alu.Mask(half)) | (BitConverter.ToUInt64(initial, Before + half) & Alu.Mask(half));
        }
        if (c.Xlat >= 0)
            st.In[0] = (st.In[0] & ~0xFFUL) | (uint)c.Xlat;
        if (c.BitRegister >= 0)
            st.In[c.BitRegister] = (st.In[c.BitRegister] & ~Alu.Mask(c.Size)) | ((ulong)c.BitOffset & Alu.Mask(c.Size));
        if (IsDoubleShift(d.Mnemonic) && c.Size == 2)
        {
            // 16-bit SHLD/SHRD by more than 16 leave the result undefined: keep counts in range.
            if (d.GetOperandKind(2) == OperandKind.Register)
                st.In[1] = (st.In[1] & ~0xFFUL) | ((st.In[1] & 0xFF) % 17);
            else
                c.Bytes[^1] %= 17;
        }
        Decoder.Decode(c.Bytes, Bitness.Bits64, out d);

        // Where the access lands: inside one device page, or split with RAM or another device page
        // on either side. The window of compared bytes surrounds it.
        int size = c.AccessSize;
        bool split = !form.Align16 && size > 1 && rng.Next(10) < 3;
        bool backward = split && rng.Next(2) == 0;
        ulong l0 = world.DevicePage(c.Addr32, rng);
        ulong access = split
            ? (backward ? l0 - (ulong)rng.Next(1, size) : l0 + 0x1000 - (ulong)rng.Next(1, size))
            : l0 + (ulong)rng.Next(0, 0x1000 - size + 1);
        if (form.Align16)
            access &= ~15UL;
        bool nextIsDevice = rng.Next(3) == 0;
        world.MapAround(l0, nextIsDevice);

        // Natively: the same offset within 16 bytes so alignment agrees.
        ulong nativeAccess = native.DataAddress + 0x800 + (access & 15);
        ulong delta = c.BitRegister >= 0 ? (ulong)((c.BitOffset >> BitOperations.Log2((uint)c.Size * 8)) * c.Size) : 0;
        ulong nativeEa = nativeAccess - delta;
        ulong emulatedEa = access - delta;
        if (c.Xlat >= 0)
        {
            nativeEa -= (ulong)c.Xlat;
            emulatedEa -= (ulong)c.Xlat;
        }
        FullState ns = st;
        if (c.RipRelative)
        {
            long disp = (long)nativeEa - (long)(native.FullInstructionAddress + (ulong)c.Bytes.Length);
            BitConverter.GetBytes((int)disp).CopyTo(c.Bytes, c.DispOffset);
            c.Disp = disp;
            text = Convert.ToHexString(c.Bytes);
        }
        else
        {
            ulong rest = (c.Index >= 0 ? st.In[c.Index] * (ulong)c.Scale : 0) + (ulong)c.Disp;
            ulong upper = c.Addr32 ? st.In[c.Base] & 0xFFFF_FFFF_0000_0000 : 0;
            ns.In[c.Base] = upper | (c.Addr32 ? (uint)(nativeEa - rest) : nativeEa - rest);
            st.In[c.Base] = upper | (c.Addr32 ? (uint)(emulatedEa - rest) : emulatedEa - rest);
        }

        // Emulated.
        ulong rip = c.RipRelative ? emulatedEa - (ulong)c.Bytes.Length - (ulong)c.Disp : CodeLinear + (ulong)rng.Next(0, 0x1FF0);
        bool fetch = !c.RipRelative && rng.Next(2) == 0;
        if (fetch)
            world.MapCode(rip, c.Bytes);
        world.Fill(access - Before, initial);
        var cpu = new VerifierCpu { Rip = rip, Rflags = st.FlagsIn, InitialBase = c.Base >= 0 ? st.In[c.Base] : 0 };
        for (int r = 0; r < 16; r++)
        {
            cpu.Gpr[r] = st.In[r];
            cpu.Xmm[r] = st.XmmIn[r];
        }
        ulong gla = split && backward ? l0 : access;
        if (!world.Translate(gla, out ulong gpa))
            return "generator: exit address not mapped";
        var vie = new Vie();
        vie.Begin(gpa, gla, glaValid: true, world.Paging, cpu, world, fetch ? default : c.Bytes);
        VieStatus vs = VieStatus.NeedsDevice;
        for (int pass = 0; pass < 40 && vs == VieStatus.NeedsDevice; pass++)
        {
            vs = vie.Emulate(cpu, world, world);
            if (vs == VieStatus.NeedsDevice && vie.Fulfill(world.Answer(vie.Pending)) != FulfillResult.Ok)
                return "fulfilment rejected";
        }
        if (vs != VieStatus.Done)
            return vs == VieStatus.Fault ? $"status Fault {vie.Fault}" : $"status {vs}";

        // Natively.
        Span<byte> data = native.Data;
        initial.CopyTo(data[(int)(nativeAccess - native.DataAddress - Before)..]);
        native.Run(c.Bytes, ref ns);
        byte[] after = data.Slice((int)(nativeAccess - native.DataAddress - Before), Window).ToArray();

        string? diff = Compare(in d, c, ns, cpu, world, access, after, rip, initial);
        if (diff != null)
        {
            string where = split ? (backward ? "split from RAM" : nextIsDevice ? "split into device" : "split into RAM") : "inside";
            diff += $" [{where} at {access:X}{(fetch ? ", fetched" : "")}; requests {world.Requests}; before {Convert.ToHexString(initial, Before, 8)}]";
        }
        return diff;
    }

    private static ulong Value(Random rng) => rng.Next(6) switch
    {
        0 => 0,
        1 => ulong.MaxValue,
        2 => 1UL << rng.Next(64),
        _ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 33),
    };

    private static bool IsDoubleShift(Mnemonic m) => m is Mnemonic.Shld or Mnemonic.Shrd;

    private static bool IsShift(Mnemonic m) => m is Mnemonic.Rol or Mnemonic.Ror or Mnemonic.Rcl or Mnemonic.Rcr or Mnemonic.Shl or Mnemonic.Sal or Mnemonic.Shr or Mnemonic.Sar;

    private static Case Build(Form form, Random rng)
    {
        while (true)
        {
            if (TryBuild(form, rng) is { } c)
                return c;
        }
    }

    private static Case? TryBuild(Form form, Random rng)
    {
        var c = new Case();
        int size = form.Byte ? 1 : form.Special switch
        {
            Special.Movsxd => 8,
            Special.NoWord => rng.Next(2) == 0 ? 4 : 8,
            Special.Vector => 4,
            Special.Wide => form.Align16 ? 8 : 4,
            Special.BitReg => rng.Next(3) switch { 0 => 2, 1 => 4, _ => 8 },
            _ => rng.Next(3) switch { 0 => 2, 1 => 4, _ => 8 },
        };
        c.Size = size;
        var b = new List<byte>();
        int rex = size == 8 && form.Special != Special.Vector ? 0x48 : 0;
        if (form.Lockable && rng.Next(3) == 0)
            b.Add(0xF0);
        if (rng.Next(8) == 0)
            b.Add((byte)(rng.Next(4) switch { 0 => 0x26, 1 => 0x2E, 2 => 0x36, _ => 0x3E })); // ignored in 64-bit mode
        if (size == 2)
            b.Add(0x66);
        c.Addr32 = form.Special != Special.Xlat && rng.Next(4) == 0;
        if (c.Addr32)
            b.Add(0x67);
        if (form.Mandatory != 0)
            b.Add(form.Mandatory);

        int taken = form.Implicit;
        if (form.Special == Special.Xlat)
        {
            c.Base = 3;
            c.Xlat = rng.Next(0, 40);
            if (rex != 0)
                b.Add((byte)rex);
            b.AddRange(form.Opcode);
            c.Bytes = [.. b];
            return c;
        }
        // The ModRM reg operand, then base and index: registers no operand of the form uses (the
        // base holds different addresses on the two sides).
        int reg = form.Digit >= 0 ? form.Digit : rng.Next(16);
        bool gprOperand = form.Digit < 0 && form.Special != Special.Vector;
        int mode = rng.Next(6);
        c.RipRelative = mode == 5 && !c.Addr32;
        if (!c.RipRelative)
        {
            do
                c.Base = AddressRegisters[rng.Next(AddressRegisters.Length)];
            while ((gprOperand && c.Base == reg) || (taken & (1 << c.Base)) != 0);
            if (mode is 3 or 4)
            {
                do
                    c.Index = rng.Next(16);
                while (c.Index == 4 || c.Index == c.Base);
                c.Scale = 1 << rng.Next(4);
            }
        }
        if (reg >= 8)
            rex |= 0x44;
        if (c.Index >= 8)
            rex |= 0x42;
        if (c.Base >= 8)
            rex |= 0x41;
        if (form.Byte && rng.Next(3) == 0)
            rex |= 0x40; // SPL..DIL instead of AH..BH
        if (gprOperand)
        {
            // The register the instruction names: AH..BH are bits 15:8 of RAX..RBX without REX.
            int actual = form.Byte && reg is >= 4 and < 8 && rex == 0 ? reg - 4 : reg;
            if (actual == 4 || actual == c.Base)
                return null; // RSP is the host's stack; the base differs between the sides
        }
        if (form.Special == Special.BitReg)
        {
            c.BitRegister = reg;
            // Offsets that reach up to 24 bytes either side of the operand.
            c.BitOffset = rng.Next(-192, 192);
        }
        if (rex != 0)
            b.Add((byte)(rex | 0x40));
        b.AddRange(form.Opcode);

        int r7 = (reg & 7) << 3;
        if (c.RipRelative)
        {
            b.Add((byte)(r7 | 5));
            c.DispOffset = b.Count;
            b.AddRange([0, 0, 0, 0]);
        }
        else
        {
            int dispSize = mode switch { 1 or 3 => 1, 2 or 4 => 4, _ => 0 };
            if (dispSize == 0 && (c.Base & 7) == 5)
                dispSize = 1; // [rbp]/[r13] need a displacement
            int mod = dispSize == 0 ? 0 : dispSize == 1 ? 1 : 2;
            if (c.Index >= 0 || (c.Base & 7) == 4)
            {
                b.Add((byte)((mod << 6) | r7 | 4));
                int idx = c.Index >= 0 ? c.Index & 7 : 4;
                b.Add((byte)((BitOperations.Log2((uint)c.Scale) << 6) | (idx << 3) | (c.Base & 7)));
            }
            else
            {
                b.Add((byte)((mod << 6) | r7 | (c.Base & 7)));
            }
            if (dispSize == 1)
            {
                c.Disp = (sbyte)rng.Next(256);
                b.Add((byte)c.Disp);
            }
            else if (dispSize == 4)
            {
                c.Disp = rng.Next(int.MinValue, int.MaxValue);
                b.AddRange(BitConverter.GetBytes((int)c.Disp));
            }
        }
        int imm = form.Imm == 4 && size == 2 ? 2 : form.Imm;
        for (int i = 0; i < imm; i++)
            b.Add((byte)rng.Next(256));
        c.Bytes = [.. b];
        return c;
    }

    // A division that cannot fault: a high half of zero (DIV) or the low half's sign (IDIV), and
    // a divisor that is neither 0 nor (for IDIV) -1.
    private static void PrepareDivision(Special kind, in Instruction d, ref FullState state, byte[] memory)
    {
        int size = d.MemorySize;
        ulong m = Alu.Mask(size);
        ulong divisor = BitConverter.ToUInt64(memory, Before) & m;
        if (divisor == 0 || (kind == Special.Idiv && divisor == m))
            divisor = 3;
        for (int i = 0; i < size; i++)
            memory[Before + i] = (byte)(divisor >> (8 * i));
        ulong rax = state.In[0];
        if (size == 1)
        {
            ulong ah = kind == Special.Div || (rax & 0x80) == 0 ? 0UL : 0xFF;
            state.In[0] = (rax & ~0xFF00UL) | (ah << 8);
        }
        else
        {
            ulong sign = (rax & Alu.SignBit(size)) != 0 && kind == Special.Idiv ? m : 0;
            state.In[2] = (state.In[2] & ~m) | sign;
        }
    }

    private static ulong ShiftCount(in Instruction d, in FullState native) => ShiftCount(in d, native.In[1]);

    private static ulong ShiftCount(in Instruction d, ulong rcx)
    {
        int i = IsDoubleShift(d.Mnemonic) ? 2 : 1;
        return d.GetOperandKind(i) == OperandKind.Register ? rcx & 0xFF : d.Immediate;
    }

    private static ulong DefinedFlags(in Instruction d, in FullState native, int size) => DefinedFlags(in d, native.In[1], size);

    /// <summary>The flags the SDM defines for <paramref name="d"/> of operand size
    /// <paramref name="size"/> with RCX holding <paramref name="rcx"/> before it (the rest may
    /// differ between processors).</summary>
    internal static ulong DefinedFlags(in Instruction d, ulong rcx, int size) => d.Mnemonic switch
    {
        Mnemonic.And or Mnemonic.Or or Mnemonic.Xor or Mnemonic.Test => Rflags.Status & ~Rflags.AF,
        Mnemonic.Mul or Mnemonic.Imul => Rflags.CF | Rflags.OF,
        Mnemonic.Div or Mnemonic.Idiv => 0,
        Mnemonic.Bt or Mnemonic.Bts or Mnemonic.Btr or Mnemonic.Btc => Rflags.CF,
        Mnemonic.Bsf or Mnemonic.Bsr => Rflags.ZF,
        Mnemonic.Tzcnt or Mnemonic.Lzcnt => Rflags.CF | Rflags.ZF,
        Mnemonic.Cmpxchg8b or Mnemonic.Cmpxchg16b => Rflags.ZF,
        Mnemonic.Shld or Mnemonic.Shrd => Alu.DefinedDoubleShiftFlags(Alu.MaskCount(ShiftCount(in d, rcx), size), size),
        _ when IsShift(d.Mnemonic) => Alu.DefinedFlags((Alu.Shift)((d.ModRM >> 3) & 7), Alu.MaskCount(ShiftCount(in d, rcx), size), size),
        _ => Rflags.Status,
    };

    private static string? Compare(in Instruction d, Case c, in FullState native, VerifierCpu emulated, World world, ulong access,
        byte[] after, ulong rip, byte[] initial)
    {
        int size = d.MemorySize;
        // BSF/BSR of zero: the SDM leaves the destination undefined.
        int skip = d.Mnemonic is Mnemonic.Bsf or Mnemonic.Bsr && (BitConverter.ToUInt64(initial, Before) & Alu.Mask(size)) == 0
            ? RegisterInfo.GprNumber(d.GetRegister(0)).N : -1;
        for (int r = 0; r < 16; r++)
        {
            if (r == 4 || r == skip)
                continue;
            if (r == c.Base)
            {
                if (native.Out[r] != native.In[r] || emulated.Gpr[r] != emulated.InitialBase)
                    return "base register changed";
                continue;
            }
            if (native.Out[r] != emulated.Gpr[r])
                return $"r{r}: cpu {native.Out[r]:X} vie {emulated.Gpr[r]:X}";
        }
        for (int r = 0; r < 16; r++)
        {
            if (native.XmmOut[r] != emulated.Xmm[r])
                return $"xmm{r}: cpu {native.XmmOut[r]:X32} vie {emulated.Xmm[r]:X32}";
        }
        ulong defined = DefinedFlags(in d, native, size);
        if ((native.FlagsOut & defined) != (emulated.Rflags & defined))
            return $"flags: cpu {native.FlagsOut & defined:X} vie {emulated.Rflags & defined:X}";
        byte[] mine = world.Snapshot(access - Before, Window);
        for (int i = 0; i < Window; i++)
        {
            if (mine[i] != after[i])
                return $"memory byte {i - Before}: cpu {after[i]:X2} vie {mine[i]:X2}";
        }
        if (emulated.Rip != rip + (ulong)c.Bytes.Length)
            return $"rip advanced by {emulated.Rip - rip}";
        return world.CheckTraffic(d, c, native, access, size);
    }

    /// <summary>The guest for one case: page tables, RAM pages, device pages and the device half.</summary>
    private sealed class World : IGuestMemory, IVmmDevices
    {
        private readonly Dictionary<ulong, byte[]> _ram = [];
        private readonly Dictionary<ulong, byte> _device = [];
        private readonly List<MmioAccess> _requests = [];
        private ulong _nextRam;
        private ulong _pml4;

        public PagingState Paging { get; private set; }

        public string Requests => string.Join(" ", _requests.ConvertAll(a => $"{(a.Write ? "W" : "R")}{a.Bytes}@{a.Gpa:X}={a.Data:X}"));

        public void Reset(Random rng)
        {
            _ram.Clear();
            _device.Clear();
            _requests.Clear();
            _nextRam = RamBase;
            _pml4 = NewPage();
            ulong cr4 = PagingState.Cr4PAE | PagingState.Cr4OSFXSR;
            Paging = new PagingState(PagingState.Cr0PE | PagingState.Cr0PG | PagingState.Cr0WP | 0x20, _pml4, cr4,
                PagingState.EferLME | PagingState.EferLMA | PagingState.EferNXE, Cpl: 0);
        }

        private ulong NewPage()
        {
            ulong p = _nextRam;
            _nextRam += 0x1000;
            _ram[p] = new byte[0x1000];
            return p;
        }

        public ulong DevicePage(bool below4G, Random rng)
        {
            ulong page = below4G ? 0x1000_0000UL + ((ulong)rng.Next(0, 0xE000_0) << 12)
                : rng.Next(4) == 0 ? 0xFFFF_8000_0000_0000UL + ((ulong)rng.NextInt64(0, 1L << 35) << 12)
                : ((ulong)rng.NextInt64(1, 1L << 35) << 12);
            return page;
        }

        // The device page at l0, RAM before it, and RAM or a second device page after it.
        public void MapAround(ulong l0, bool nextIsDevice)
        {
            Map(l0, DevicePages);
            Map(l0 - 0x1000, NewPage());
            Map(l0 + 0x1000, nextIsDevice ? DevicePages + 0x1000 : NewPage());
        }

        public void MapCode(ulong rip, byte[] bytes)
        {
            for (ulong page = rip & ~0xFFFUL; page <= ((rip + (ulong)bytes.Length - 1) & ~0xFFFUL); page += 0x1000)
                Map(page, NewPage());
            WriteLinear(rip, bytes);
        }

        private void Map(ulong la, ulong pa)
        {
            ulong table = _pml4;
            for (int level = 4; level > 1; level--)
            {
                ulong slot = table + ((la >> (12 + 9 * (level - 1))) & 0x1FF) * 8;
                ulong e = Read64(slot);
                if ((e & 1) == 0)
                {
                    e = NewPage() | 0x7; // present, writable, user
                    Write64(slot, e);
                }
                table = e & 0x000F_FFFF_FFFF_F000;
            }
            Write64(table + ((la >> 12) & 0x1FF) * 8, pa | 0x3);
        }

        public bool Translate(ulong la, out ulong pa) =>
            PageWalker.Translate(this, Paging, la, AccessType.Read, false, out pa, out _) == WalkResult.Ok;

        private ulong Read64(ulong pa) => BitConverter.ToUInt64(_ram[pa & ~0xFFFUL], (int)(pa & 0xFFF));

        private void Write64(ulong pa, ulong v) => BitConverter.GetBytes(v).CopyTo(_ram[pa & ~0xFFFUL], (int)(pa & 0xFFF));

        private void WriteLinear(ulong la, ReadOnlySpan<byte> bytes)
        {
            for (int i = 0; i < bytes.Length; i++)
                WriteByte(la + (ulong)i, bytes[i]);
        }

        private void WriteByte(ulong la, byte v)
        {
            Translate(la, out ulong pa);
            if (_ram.TryGetValue(pa & ~0xFFFUL, out byte[]? page))
                page[pa & 0xFFF] = v;
            else
                _device[pa] = v;
        }

        public void Fill(ulong la, byte[] bytes) => WriteLinear(la, bytes);

        public byte[] Snapshot(ulong la, int n)
        {
            var r = new byte[n];
            for (int i = 0; i < n; i++)
            {
                Translate(la + (ulong)i, out ulong pa);
                r[i] = _ram.TryGetValue(pa & ~0xFFFUL, out byte[]? page) ? page[pa & 0xFFF]
                    : _device.TryGetValue(pa, out byte b) ? b : (byte)0;
            }
            return r;
        }

        public bool ReadRam(ulong gpa, Span<byte> data)
        {
            for (int i = 0; i < data.Length; i++)
            {
                ulong a = gpa + (ulong)i;
                if (!_ram.TryGetValue(a & ~0xFFFUL, out byte[]? page))
                    return false;
                data[i] = page[a & 0xFFF];
            }
            return true;
        }

        public bool WriteRam(ulong gpa, ReadOnlySpan<byte> data)
        {
            for (int i = 0; i < data.Length; i++)
            {
                if (!_ram.ContainsKey((gpa + (ulong)i) & ~0xFFFUL))
                    return false;
            }
            for (int i = 0; i < data.Length; i++)
            {
                ulong a = gpa + (ulong)i;
                _ram[a & ~0xFFFUL][a & 0xFFF] = data[i];
            }
            return true;
        }

        public bool TryRead(ulong gpa, int bytes, out ulong value)
        {
            value = 0;
            return false;
        }

        public bool TryWrite(ulong gpa, int bytes, ulong value) => false;

        public MmioAccess Answer(MmioAccess request)
        {
            _requests.Add(request);
            if (request.Write)
            {
                for (int i = 0; i < request.Bytes; i++)
                    _device[request.Gpa + (ulong)i] = (byte)(request.Data >> (8 * i));
                return request;
            }
            ulong v = 0;
            for (int i = 0; i < request.Bytes; i++)
                v |= (ulong)(_device.TryGetValue(request.Gpa + (ulong)i, out byte b) ? b : (byte)0) << (8 * i);
            return request with { Data = v };
        }

        private bool IsDevice(ulong la) => Translate(la, out ulong pa) && !_ram.ContainsKey(pa & ~0xFFFUL);

        // Each device byte the instruction reads is read once and each it writes is written once,
        // by requests of 1, 2, 4 or 8 bytes inside device memory.
        public string? CheckTraffic(in Instruction d, Case c, in FullState native, ulong access, int size)
        {
            Use use = UseOf(d);
            int deviceBytes = 0;
            for (int i = 0; i < size; i++)
                deviceBytes += IsDevice(access + (ulong)i) ? 1 : 0;
            int read = 0, written = 0;
            var seenRead = new HashSet<ulong>();
            var seenWrite = new HashSet<ulong>();
            MmioAccess? previous = null;
            foreach (MmioAccess a in _requests)
            {
                // The order hardware uses: every read before any write, each direction ascending.
                if (previous is { } p && ((p.Write && !a.Write) || (p.Write == a.Write && a.Gpa <= p.Gpa && a.Gpa >> 12 == p.Gpa >> 12)))
                    return $"request {a} out of order after {p}";
                previous = a;
                if (a.Bytes is not (1 or 2 or 4 or 8))
                    return $"request of {a.Bytes} bytes";
                for (int i = 0; i < a.Bytes; i++)
                {
                    ulong g = a.Gpa + (ulong)i;
                    if (_ram.ContainsKey(g & ~0xFFFUL))
                        return $"request {a} reaches RAM";
                    if (!(a.Write ? seenWrite : seenRead).Add(g))
                        return $"device byte {g:X} {(a.Write ? "written" : "read")} twice";
                }
                if (a.Write)
                    written += a.Bytes;
                else
                    read += a.Bytes;
            }
            int expectRead = (use & Use.Read) != 0 ? deviceBytes : 0;
            int expectWrite = (use & Use.Write) != 0 ? deviceBytes : 0;
            if (read != expectRead || written != expectWrite)
                return $"device bytes read {read} written {written}, expected {expectRead} and {expectWrite}";
            return null;
        }

        private static Use UseOf(in Instruction d)
        {
            bool store = d.GetOperandKind(0) == OperandKind.Memory;
            if (d.Mnemonic is >= Mnemonic.Seta and <= Mnemonic.Sets)
                return Use.Write;
            if (d.Mnemonic == Mnemonic.Xlatb)
                return Use.Read;
            if (d.Mnemonic is Mnemonic.Cmp or Mnemonic.Test or Mnemonic.Bt or Mnemonic.Mul or Mnemonic.Imul or Mnemonic.Div or Mnemonic.Idiv)
                return Use.Read;
            if (d.Mnemonic is Mnemonic.Mov or Mnemonic.Movbe or Mnemonic.Movnti or Mnemonic.Movd or Mnemonic.Movq or Mnemonic.Movss
                or Mnemonic.Movsd or Mnemonic.Movups or Mnemonic.Movupd or Mnemonic.Movaps or Mnemonic.Movapd or Mnemonic.Movdqa
                or Mnemonic.Movdqu or Mnemonic.Movntdq or Mnemonic.Movntps or Mnemonic.Movntpd or Mnemonic.Movntdqa
                or Mnemonic.Pextrb or Mnemonic.Pextrw or Mnemonic.Pextrd or Mnemonic.Extractps or Mnemonic.Pinsrb
                or Mnemonic.Pinsrw or Mnemonic.Pinsrd or Mnemonic.Insertps)
                return store ? Use.Write : Use.Read;
            if (!store)
                return Use.Read;
            return Use.ReadWrite; // a zero shift count stores the operand back unchanged
        }
    }

    /// <summary>The emulated vCPU: plain fields.</summary>
    private sealed class VerifierCpu : IVieCpu
    {
        public ulong[] Gpr { get; } = new ulong[16];

        public UInt128[] Xmm { get; } = new UInt128[16];

        public ulong InitialBase;

        public ulong Rip { get; set; }

        public ulong Rflags { get; set; }

        public ulong GetGpr(int n) => Gpr[n];

        public void SetGpr(int n, ulong value) => Gpr[n] = value;

        public Segment GetSegment(Register segment) => segment == Register.CS ? Segment.Code64 : Segment.FlatData;

        public UInt128 GetXmm(int n) => Xmm[n];

        public void SetXmm(int n, UInt128 value) => Xmm[n] = value;

        public ulong GetMm(int n) => 0;

        public void SetMm(int n, ulong value)
        {
        }
    }
}
