// Intel-syntax text for decoded instructions (the disassembler's output).
using System.Globalization;
using System.Text;

namespace Hyve.X86.Decoding;

/// <summary>Formats a decoded <see cref="Instruction"/> in Intel syntax, lower case, hex numbers with 0x.</summary>
public static class Formatter
{
    /// <summary>Formats <paramref name="insn"/> located at <paramref name="ip"/> (used for branch and RIP-relative targets).</summary>
    public static string Format(in Instruction insn, ulong ip)
    {
        var sb = new StringBuilder(48);
        Format(in insn, ip, sb);
        return sb.ToString();
    }

    /// <summary>Appends the text of <paramref name="insn"/> to <paramref name="sb"/>.</summary>
    public static void Format(in Instruction insn, ulong ip, StringBuilder sb)
    {
        if (insn.Status == DecodeStatus.Unsupported)
        {
            sb.Append("(vex/evex/xop)");
            return;
        }
        if (!insn.IsValid)
        {
            sb.Append("(bad)");
            return;
        }
        bool stringOp = false;
        for (int i = 0; i < insn.OperandCount; i++)
            stringOp |= insn.GetOperandKind(i) >= OperandKind.MemorySegSI;
        if ((insn.Prefixes & Prefixes.Lock) != 0)
            sb.Append("lock ");
        if (stringOp && (insn.Prefixes & Prefixes.Rep) != 0)
            sb.Append(IsRepeCompare(insn.Mnemonic) ? "repe " : "rep ");
        if (stringOp && (insn.Prefixes & Prefixes.Repne) != 0)
            sb.Append("repne ");
        sb.Append(insn.Mnemonic.ToString().ToLowerInvariant());
        for (int i = 0; i < insn.OperandCount; i++)
        {
            sb.Append(i == 0 ? " " : ",");
            AppendOperand(in insn, i, ip, sb);
        }
    }

    private static bool IsRepeCompare(Mnemonic m) =>
        m is Mnemonic.Cmpsb or Mnemonic.Cmpsw or Mnemonic.Cmpsd or Mnemonic.Cmpsq or Mnemonic.Scasb or Mnemonic.Scasw or Mnemonic.Scasd or Mnemonic.Scasq;

    private static void AppendOperand(in Instruction insn, int i, ulong ip, StringBuilder sb)
    {
        OperandKind k = insn.GetOperandKind(i);
        switch (k)
        {
            case OperandKind.Register:
                sb.Append(insn.GetRegister(i).Name());
                break;
            case OperandKind.Immediate8:
            case OperandKind.Immediate16:
            case OperandKind.Immediate32:
            case OperandKind.Immediate64:
            case OperandKind.Immediate8to16:
            case OperandKind.Immediate8to32:
            case OperandKind.Immediate8to64:
            case OperandKind.Immediate32to64:
                Hex(sb, insn.Immediate & ImmediateMask(k));
                break;
            case OperandKind.Immediate8_2nd:
                Hex(sb, insn.Immediate2);
                break;
            case OperandKind.NearBranch16:
            case OperandKind.NearBranch32:
            case OperandKind.NearBranch64:
                Hex(sb, insn.NearBranchTarget(ip));
                break;
            case OperandKind.FarBranch16:
            case OperandKind.FarBranch32:
                Hex(sb, insn.Immediate2);
                sb.Append(':');
                Hex(sb, insn.Immediate);
                break;
            case OperandKind.Memory:
                AppendMemory(in insn, ip, sb);
                break;
            default:
                AppendImplicitMemory(in insn, k, sb);
                break;
        }
    }

    private static ulong ImmediateMask(OperandKind k) => k switch
    {
        OperandKind.Immediate8 => 0xFF,
        OperandKind.Immediate16 or OperandKind.Immediate8to16 => 0xFFFF,
        OperandKind.Immediate32 or OperandKind.Immediate8to32 => 0xFFFF_FFFF,
        _ => ulong.MaxValue,
    };

    private static void SizePrefix(int size, StringBuilder sb)
    {
        string? s = size switch
        {
            1 => "byte ptr ",
            2 => "word ptr ",
            4 => "dword ptr ",
            6 => "fword ptr ",
            8 => "qword ptr ",
            10 => "tbyte ptr ",
            16 => "xmmword ptr ",
            32 => "ymmword ptr ",
            _ => null,
        };
        sb.Append(s);
    }

    private static void AppendMemory(in Instruction insn, ulong ip, StringBuilder sb)
    {
        SizePrefix(insn.MemorySize, sb);
        if (insn.SegmentPrefix != Register.None)
            sb.Append(insn.SegmentPrefix.Name()).Append(':');
        sb.Append('[');
        if (insn.IsIpRelative)
        {
            Hex(sb, insn.IpRelativeTarget(ip));
            sb.Append(']');
            return;
        }
        bool any = false;
        if (insn.MemoryBase != Register.None)
        {
            sb.Append(insn.MemoryBase.Name());
            any = true;
        }
        if (insn.MemoryIndex != Register.None)
        {
            if (any)
                sb.Append('+');
            sb.Append(insn.MemoryIndex.Name());
            if (insn.MemoryScale != 1)
                sb.Append('*').Append((char)('0' + insn.MemoryScale));
            any = true;
        }
        long disp = insn.Displacement;
        if (!any)
        {
            ulong mask = insn.AddressSize == 2 ? 0xFFFF : insn.AddressSize == 4 ? 0xFFFF_FFFF : ulong.MaxValue;
            Hex(sb, (ulong)disp & mask);
        }
        else if (disp != 0)
        {
            sb.Append(disp < 0 ? '-' : '+');
            Hex(sb, disp < 0 ? (ulong)(-disp) : (ulong)disp);
        }
        sb.Append(']');
    }

    private static void AppendImplicitMemory(in Instruction insn, OperandKind k, StringBuilder sb)
    {
        SizePrefix(insn.MemorySize, sb);
        string reg;
        bool es = k >= OperandKind.MemoryESDI;
        switch (k)
        {
            case OperandKind.MemorySegSI: reg = "si"; break;
            case OperandKind.MemorySegESI: reg = "esi"; break;
            case OperandKind.MemorySegRSI: reg = "rsi"; break;
            case OperandKind.MemorySegDI: case OperandKind.MemoryESDI: reg = "di"; break;
            case OperandKind.MemorySegEDI: case OperandKind.MemoryESEDI: reg = "edi"; break;
            default: reg = "rdi"; break;
        }
        if (es)
            sb.Append("es:");
        else if (insn.SegmentPrefix != Register.None)
            sb.Append(insn.SegmentPrefix.Name()).Append(':');
        sb.Append('[').Append(reg).Append(']');
    }

    private static void Hex(StringBuilder sb, ulong v) => sb.Append("0x").Append(v.ToString("x", CultureInfo.InvariantCulture));
}
