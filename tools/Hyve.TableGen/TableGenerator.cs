// Builds the decoder's decision trees from the opcode data files and writes them as C# source.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;

namespace Hyve.TableGen;

/// <summary>Turns the opcode data files into the generated decoder sources.</summary>
internal static class TableGenerator
{
    /// <summary>Operand codes, in the order of the generated <c>OperandSpec</c> enum.</summary>
    public static readonly string[] OperandCodes =
    [
        "None",
        "Gb", "Gw", "Gd", "Gq", "Gv", "Gy", "Gf",
        "Eb", "Ew", "Ed", "Eq", "Ev", "Ey", "Ef",
        "Rw", "Rd", "Rq", "Rv", "Ry", "Rf",
        "M", "Mb", "Mw", "Md", "Mq", "Mo", "Mv", "My", "Mp", "Ms", "Mt", "Me", "Mf", "Mx", "Ma",
        "Ib", "Iw", "Id", "Iz", "Iv", "Ibs", "Ib2", "1",
        "Jb", "Jz", "Jx", "Ap",
        "AL", "AX", "eAX", "rAX", "CL", "DX",
        "ES", "CS", "SS", "DS", "FS", "GS",
        "Zb", "Zv", "Zy",
        "Xb", "Xv", "Xz", "Yb", "Yv", "Yz", "XD",
        "Ob", "Ov", "Xlat",
        "Sw", "C", "D",
        "P", "N", "Qq", "Qd",
        "V", "U", "Wo", "Wq", "Wd", "Ww", "Wb",
        "ST0", "STi",
        "By", "H", "Hx", "Vx", "Ux", "Wx", "Wh", "Wr", "We", "Lx", "MVx", "MVo",
    ];

    // VEX operands that read VEX.vvvv; a VEX form without one requires vvvv = 1111b.
    private static readonly HashSet<string> VvvvOperands = new(["By", "H", "Hx"], StringComparer.Ordinal);

    /// <summary>Memory-size override letters (index = code stored in the entry).</summary>
    public static readonly string[] MemSizeCodes = ["", "b", "w", "d", "q", "o", "t", "48", "64"];

    private static readonly HashSet<string> KnownFlags = ["lock", "d64", "f64", "nomod", "nw", "keep"];

    // Node kinds (top 4 bits of a node reference); must match Decoder.
    private const ulong KInvalid = 0, KLeaf = 1, KReg = 2, KMod = 3, KRm = 4, KPfx = 5, KW = 6, KB = 7, KMode = 8, KOs = 9, KOsD64 = 10, KAs = 11, KOsF64 = 12, KL = 13;
    private const int MapCount = 8;

    /// <summary>Reads every <c>*.txt</c> in <paramref name="dataDir"/> and returns generated file name → contents.</summary>
    public static Dictionary<string, string> Generate(string dataDir)
    {
        var lines = new List<OpcodeLine>();
        foreach (string path in Directory.GetFiles(dataDir, "*.txt").OrderBy(p => p, StringComparer.Ordinal))
        {
            string name = Path.GetFileName(path);
            string[] text = File.ReadAllLines(path);
            for (int i = 0; i < text.Length; i++)
            {
                string t = text[i];
                int hash = t.IndexOf('#', StringComparison.Ordinal);
                if (hash >= 0)
                    t = t[..hash];
                if (string.IsNullOrWhiteSpace(t))
                    continue;
                lines.Add(OpcodeLine.Parse(name, i + 1, t));
            }
        }
        foreach (OpcodeLine l in lines)
            Validate(l);
        return Emit(lines);
    }

    private static void Validate(OpcodeLine l)
    {
        foreach (string o in l.Operands)
        {
            if (Array.IndexOf(OperandCodes, o) < 0)
                throw new FormatException($"{l.Where}: unknown operand '{o}'");
        }
        foreach (string f in l.Flags)
        {
            if (!KnownFlags.Contains(f))
                throw new FormatException($"{l.Where}: unknown flag '{f}'");
        }
        if (!l.IsVex && l.Operands.Any(o => VvvvOperands.Contains(o) || o is "Vx" or "Ux" or "Wx" or "Wh" or "Wr" or "We" or "Lx" or "MVx" or "MVo"))
            throw new FormatException($"{l.Where}: VEX.vvvv operands only in the VEX maps");
        if (!l.IsVex && l.Cond[(int)Dim.L] >= 0)
            throw new FormatException($"{l.Where}: l= only in the VEX maps");
        if (l.IsVex && l.Cond[(int)Dim.Pfx] is < 0 or 4)
            throw new FormatException($"{l.Where}: a VEX form names its VEX.pp (pfx=NP|66|F3|F2)");
        if (l.MemSize != null && Array.IndexOf(MemSizeCodes, l.MemSize) <= 0)
            throw new FormatException($"{l.Where}: unknown memory size ':{l.MemSize}'");
        if (l.Cond[(int)Dim.Mod] < 0 && !l.Flags.Contains("nomod"))
        {
            bool mem = l.Operands.Any(o => o.StartsWith('M'));
            bool reg = l.Operands.Any(o => o is "U" or "Ux" or "N" or "STi" || (o.StartsWith('R') && o.Length == 2));
            if (mem && reg)
                throw new FormatException($"{l.Where}: operands need both a memory and a register form");
            if (mem)
                l.Cond[(int)Dim.Mod] = 0;
            else if (reg)
                l.Cond[(int)Dim.Mod] = 1;
        }
    }

    private static bool UsesModRm(OpcodeLine l) =>
        l.Cond[(int)Dim.Reg] >= 0 || l.Cond[(int)Dim.Mod] >= 0 || l.Cond[(int)Dim.Rm] >= 0 || l.Map == 4 ||
        l.Operands.Any(ModRmOperands.Contains);

    private static readonly HashSet<string> ModRmOperands = new(
        OperandCodes.Where(o => o.Length == 2 && char.IsLower(o[1]) && "GERMQW".Contains(o[0], StringComparison.Ordinal) || o == "M")
            .Concat(["Sw", "C", "D", "P", "N", "V", "U", "STi", "Vx", "Ux", "Wx", "Wh", "Wr", "We", "MVx", "MVo"]),
        StringComparer.Ordinal);

    private sealed class Builder
    {
        public readonly List<ulong> Nodes = [];
        public readonly Dictionary<string, ulong> Memo = new(StringComparer.Ordinal);
        public readonly Dictionary<OpcodeLine, ulong> Leaf = [];
        public readonly Dictionary<OpcodeLine, int> EntryIndex = [];
    }

    private static Dictionary<string, string> Emit(List<OpcodeLine> lines)
    {
        // Entries: one per line, index 0 reserved for Invalid.
        var b = new Builder();
        var names = new List<string> { "Invalid" };
        var nameSet = new HashSet<string>(StringComparer.Ordinal) { "Invalid" };
        var mnemonics = new SortedSet<string>(StringComparer.Ordinal);
        foreach (OpcodeLine l in lines)
        {
            if (l.Mnemonic == "invalid")
                continue;
            mnemonics.Add(Pascal(l.Mnemonic));
            string n = Pascal(l.Mnemonic) + string.Concat(l.Operands.Select(o => "_" + Ident(o)));
            if (l.MemSize != null)
                n += "m" + l.MemSize;
            string baseName = n;
            for (int k = 2; !nameSet.Add(n); k++)
                n = baseName + "_" + k.ToString(CultureInfo.InvariantCulture);
            b.EntryIndex[l] = names.Count;
            names.Add(n);
        }

        // Forms: one per distinct (operand codes, memory-size override); each gets a generated decoder.
        var forms = new List<string> { "" };
        var formIndex = new Dictionary<string, int>(StringComparer.Ordinal) { [""] = 0 };
        foreach (OpcodeLine l in lines.Where(l => l.Mnemonic != "invalid").OrderBy(FormKey, StringComparer.Ordinal))
        {
            string key = FormKey(l);
            if (!formIndex.ContainsKey(key))
            {
                formIndex[key] = forms.Count;
                forms.Add(key);
            }
        }

        foreach (OpcodeLine l in lines.Where(l => l.Mnemonic != "invalid"))
            b.Leaf[l] = (KLeaf << 60) | PackLeaf(l, b.EntryIndex[l], formIndex[FormKey(l)]);

        var roots = new ulong[MapCount * 256];
        for (int map = 0; map < MapCount; map++)
        {
            for (int op = 0; op < 256; op++)
            {
                var set = lines.Where(l => l.Map == map && l.Opcodes.Contains(op)).ToList();
                if (set.Count == 0)
                    continue;
                bool modrm = set.Any(UsesModRm);
                if (set.Any(l => UsesModRm(l) != modrm && l.Mnemonic != "invalid"))
                    throw new FormatException($"{set[0].Where}: entries of {OpcodeLine.MapNames[map]}{op:X2} disagree on ModRM");
                ulong r = Build(b, set, $"{OpcodeLine.MapNames[map]}{op:X2}");
                roots[map * 256 + op] = r | (modrm ? 1UL << 59 : 0);
            }
        }

        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        files["Mnemonic.g.cs"] = EmitEnum("Mnemonic", "ushort", "Instruction mnemonics (generated from Decoding/Opcodes/*.txt).",
            ["Invalid", .. mnemonics]);
        files["Opcode.g.cs"] = EmitEnum("Opcode", "ushort", "Opcode identity: one value per instruction form in Decoding/Opcodes/*.txt (generated).", names);
        files["OperandSpec.g.cs"] = EmitEnum("OperandSpec", "byte", "Operand codes of the opcode data files (generated).",
            OperandCodes.Select(Ident).ToList(), isPublic: false);

        var sb = new StringBuilder();
        sb.Append(Header);
        sb.Append("/// <summary>Decision trees and entry data for the decoder (generated).</summary>\n");
        sb.Append("internal static class OpcodeTables\n{\n");
        sb.Append("    /// <summary>Node kinds (bits 63:60 of a node).</summary>\n");
        sb.Append(CultureInfo.InvariantCulture, $"    public const ulong KInvalid = {KInvalid}, KLeaf = {KLeaf}, KReg = {KReg}, KMod = {KMod}, KRm = {KRm}, KPfx = {KPfx}, KW = {KW}, KB = {KB}, KMode = {KMode}, KOs = {KOs}, KOsD64 = {KOsD64}, KAs = {KAs}, KOsF64 = {KOsF64}, KL = {KL};\n\n");
        sb.Append("    /// <summary>Root node per (map, opcode): map 0 one-byte, 1 0F, 2 0F38, 3 0F3A, 4 3DNow! suffix,\n");
        sb.Append("    /// 5-7 the VEX maps 0F, 0F38, 0F3A.\n");
        sb.Append("    /// A node is kind (63:60), has-ModRM (59, roots only) and either a child-list index (27:0) or,\n");
        sb.Append("    /// for a leaf, opcode (15:0), form (31:16), flags (39:32) and consumed prefix (42:40).</summary>\n");
        AppendArray(sb, "Roots", "ulong", roots.Select(x => "0x" + x.ToString("X16", CultureInfo.InvariantCulture)));
        sb.Append("    /// <summary>Child lists of interior nodes.</summary>\n");
        AppendArray(sb, "Nodes", "ulong", b.Nodes.Select(x => "0x" + x.ToString("X16", CultureInfo.InvariantCulture)));
        sb.Append("    /// <summary>Mnemonic of each opcode.</summary>\n");
        var mnemonicList = mnemonics.ToList();
        var mn = new List<string> { "0" };
        foreach (OpcodeLine l in lines.Where(l => l.Mnemonic != "invalid"))
            mn.Add((mnemonicList.IndexOf(Pascal(l.Mnemonic)) + 1).ToString(CultureInfo.InvariantCulture));
        AppendArray(sb, "Mnemonics", "ushort", mn);
        sb.Append("}\n");
        files["OpcodeTables.g.cs"] = sb.ToString();
        files["DecoderForms.g.cs"] = EmitForms(forms);
        return files;
    }

    private static string FormKey(OpcodeLine l) => string.Join(",", l.Operands) + (l.MemSize != null ? ":" + l.MemSize : "");

    private static string EmitForms(List<string> forms)
    {
        var sb = new StringBuilder(Header);
        sb.Append("using System.Runtime.CompilerServices;\n\n");
        sb.Append("/// <summary>Operand decoders, one per distinct operand list of the data files (generated).</summary>\n");
        sb.Append("public static partial class Decoder\n{\n");
        sb.Append("    // Decodes the operands of form `form`; returns the position after them, or -1 for an invalid operand.\n");
        sb.Append("    [MethodImpl(MethodImplOptions.AggressiveInlining)]\n");
        sb.Append("    private static int DecodeForm(int form, System.ReadOnlySpan<byte> code, int pos, int ctx, ref Instruction insn)\n    {\n        switch (form)\n        {\n");
        sb.Append("            case 0: return pos;\n");
        for (int f = 1; f < forms.Count; f++)
            sb.Append("            case ").Append(f).Append(": return Form").Append(f).Append("(code, pos, ctx, ref insn);\n");
        sb.Append("            default: return -1;\n        }\n    }\n");
        for (int f = 1; f < forms.Count; f++)
        {
            string key = forms[f];
            int colon = key.IndexOf(':', StringComparison.Ordinal);
            string ops = colon >= 0 ? key[..colon] : key;
            int mem = colon >= 0 ? Array.IndexOf(MemSizeCodes, key[(colon + 1)..]) : 0;
            string[] list = ops.Split(',');
            sb.Append("\n    // ").Append(key).Append('\n');
            sb.Append("    [MethodImpl(MethodImplOptions.NoInlining)]\n");
            sb.Append("    private static int Form").Append(f).Append("(System.ReadOnlySpan<byte> code, int pos, int ctx, ref Instruction insn)\n    {\n");
            sb.Append("        insn.OperandCount = ").Append(list.Length).Append(";\n        return ");
            for (int i = 0; i < list.Length; i++)
            {
                if (i > 0)
                    sb.Append("\n            && ");
                sb.Append("DecodeOperand(code, ref pos, ctx, ref insn, OperandSpec.").Append(Ident(list[i])).Append(", ").Append(i).Append(", ").Append(mem).Append(')');
            }
            sb.Append(" ? pos : -1;\n    }\n");
        }
        sb.Append("}\n");
        return sb.ToString();
    }

    private static ulong PackLeaf(OpcodeLine l, int entry, int form)
    {
        ulong flags = 0;
        if (l.Flags.Contains("lock")) flags |= 1;
        if (l.Flags.Contains("d64")) flags |= 2;
        if (l.Flags.Contains("f64")) flags |= 4;
        if (l.Flags.Contains("nomod")) flags |= 8;
        if (l.Flags.Contains("nw")) flags |= 16;
        if (l.IsVex && !l.Operands.Any(VvvvOperands.Contains)) flags |= 32; // VEX.vvvv must be 1111b
        int pfx = l.Cond[(int)Dim.Pfx];
        // "keep": the prefix selects the entry and still acts as operand size / REP.
        ulong consumed = l.Flags.Contains("keep") ? 0UL : pfx switch { 1 => 1UL, 2 => 2UL, 3 => 3UL, _ => 0UL };
        return (uint)entry | ((ulong)(uint)form << 16) | (flags << 32) | (consumed << 40);
    }

    private static readonly Dim[] Order = [Dim.Reg, Dim.Mod, Dim.Rm, Dim.Pfx, Dim.W, Dim.L, Dim.B, Dim.Mode, Dim.Os, Dim.As];

    private static ulong Build(Builder b, List<OpcodeLine> set, string where, int done = 0)
    {
        if (set.Count == 0)
            return KInvalid << 60;
        foreach (Dim d in Order)
        {
            if ((done & (1 << (int)d)) != 0 || !set.Any(l => l.Cond[(int)d] >= 0))
                continue;
            if (d == Dim.Rm && set.Any(l => l.Cond[(int)Dim.Rm] >= 0 && l.Cond[(int)Dim.Mod] != 1))
                throw new FormatException($"{set[0].Where}: rm split under {where} with entries not limited to mod=reg");
            int n = d switch { Dim.Reg or Dim.Rm => 8, Dim.Pfx => 4, Dim.Os or Dim.As => 3, _ => 2 };
            var children = new ulong[n];
            for (int v = 0; v < n; v++)
            {
                var sub = set.Where(l => l.Cond[(int)d] < 0 || Matches(l.Cond[(int)d], d, v)).ToList();
                children[v] = Build(b, sub, $"{where} {d}={v}", done | (1 << (int)d));
            }
            if (children.All(c => c == children[0]))
                return children[0];
            ulong kind = d switch
            {
                Dim.Reg => KReg,
                Dim.Mod => KMod,
                Dim.Rm => KRm,
                Dim.Pfx => KPfx,
                Dim.W => KW,
                Dim.B => KB,
                Dim.Mode => KMode,
                Dim.Os => OsKind(set, where),
                Dim.L => KL,
                _ => KAs,
            };
            string key = kind + ":" + string.Join(",", children);
            if (!b.Memo.TryGetValue(key, out ulong node))
            {
                node = (kind << 60) | (uint)b.Nodes.Count;
                b.Nodes.AddRange(children);
                b.Memo[key] = node;
            }
            return node;
        }
        // Every entry left matches; the most specific one wins.
        var ranked = set.OrderByDescending(Specificity).ToList();
        if (ranked.Count > 1 && Specificity(ranked[0]) == Specificity(ranked[1]))
            throw new FormatException($"{ranked[0].Where}: ambiguous with {ranked[1].Where} under {where}");
        return ranked[0].Mnemonic == "invalid" ? KInvalid << 60 : b.Leaf[ranked[0]];
    }

    private static int Specificity(OpcodeLine l)
    {
        int score = 0;
        for (int d = 0; d < l.Cond.Length; d++)
        {
            if (l.Cond[d] >= 0)
                score += d == (int)Dim.Pfx ? (l.Cond[d] == 4 ? 1 : 3) : 2;
        }
        return score;
    }

    private static bool Matches(int cond, Dim d, int v)
    {
        if (cond < 0)
            return false;
        if (d == Dim.Pfx && cond == 4)
            return v is 0 or 1;
        return cond == v;
    }

    private static ulong OsKind(List<OpcodeLine> set, string where)
    {
        bool d64 = set.Any(l => l.Flags.Contains("d64"));
        bool f64 = set.Any(l => l.Flags.Contains("f64"));
        if (set.Any(l => l.Flags.Contains("d64") != d64 || l.Flags.Contains("f64") != f64))
            throw new FormatException($"{set[0].Where}: os split under {where} mixes d64/f64 entries");
        return f64 ? KOsF64 : d64 ? KOsD64 : KOs;
    }

    private const string Header = "// <auto-generated>\n// Generated by tools/Hyve.TableGen from src/Hyve.X86/Decoding/Opcodes/*.txt. Do not edit.\n// </auto-generated>\n\nnamespace Hyve.X86.Decoding;\n\n";

    private static string EmitEnum(string name, string type, string summary, IList<string> values, bool isPublic = true)
    {
        var sb = new StringBuilder(Header);
        sb.Append("/// <summary>").Append(summary).Append("</summary>\n");
        sb.Append(isPublic ? "public" : "internal").Append(" enum ").Append(name).Append(" : ").Append(type).Append("\n{\n");
        foreach (string v in values)
        {
            if (isPublic)
                sb.Append("    /// <summary>").Append(v).Append("</summary>\n");
            sb.Append("    ").Append(v).Append(",\n");
        }
        sb.Append("}\n");
        return sb.ToString();
    }

    private static void AppendArray(StringBuilder sb, string name, string type, IEnumerable<string> values)
    {
        sb.Append("    public static System.ReadOnlySpan<").Append(type).Append("> ").Append(name).Append(" =>\n    [\n");
        int col = 0;
        foreach (string v in values)
        {
            if (col == 0)
                sb.Append("       ");
            sb.Append(' ').Append(v).Append(',');
            if (++col == 8)
            {
                sb.Append('\n');
                col = 0;
            }
        }
        if (col != 0)
            sb.Append('\n');
        sb.Append("    ];\n\n");
    }

    private static string Pascal(string m) => char.ToUpperInvariant(m[0]) + m[1..];

    private static string Ident(string o) => o switch
    {
        "1" => "One",
        _ => o,
    };

    /// <summary>Used by the entry point and the freshness test.</summary>
    public static string DefaultDataDir(string repoRoot) => Path.Combine(repoRoot, "src", "Hyve.X86", "Decoding", "Opcodes");

    /// <summary>Where the generated files go.</summary>
    public static string DefaultOutputDir(string repoRoot) => Path.Combine(repoRoot, "src", "Hyve.X86", "Decoding");
}
