// A port-I/O exit as the emulation context needs it, whichever backend reported it.
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.Vmm.Emulation;

/// <summary>
/// An IN, OUT, INS or OUTS that exited: the port, the access size, the direction, whether it is
/// a string instruction and with REP, its address size and (OUTS) source segment, and its length.
/// </summary>
/// <param name="Port">I/O port.</param>
/// <param name="Size">Access size in bytes (1, 2 or 4).</param>
/// <param name="In">IN or INS.</param>
/// <param name="String">INS or OUTS.</param>
/// <param name="Rep">REP prefix (string forms).</param>
/// <param name="Immediate">The port came from an immediate operand (E4-E7).</param>
/// <param name="AddressSize">Address size in bytes (2, 4 or 8) for the string forms.</param>
/// <param name="Segment">Source segment of OUTS (DS unless overridden); INS always writes ES.</param>
/// <param name="Length">Instruction length in bytes (the RIP advance).</param>
public readonly record struct IoExit(ushort Port, byte Size, bool In, bool String, bool Rep, bool Immediate,
    byte AddressSize, Register Segment, byte Length)
{
    /// <summary>
    /// The exit a decoded IN/OUT/INS/OUTS makes, with DX supplying the port of the register forms;
    /// null when <paramref name="insn"/> is not one of them.
    /// </summary>
    public static IoExit? FromInstruction(in Instruction insn, ushort dx)
    {
        if (!insn.IsValid || insn.HasModRM)
            return null;
        byte op = insn.OpcodeByte;
        bool oneByteMap = insn.Mnemonic is Mnemonic.In or Mnemonic.Out or Mnemonic.Insb or Mnemonic.Insw or Mnemonic.Insd
            or Mnemonic.Outsb or Mnemonic.Outsw or Mnemonic.Outsd;
        if (!oneByteMap)
            return null;
        bool str = op is >= 0x6C and <= 0x6F;
        bool imm = op is >= 0xE4 and <= 0xE7;
        bool input = str ? op <= 0x6D : (op & 2) == 0;
        byte size = (op & 1) == 0 ? (byte)1 : insn.OperandSize == 2 ? (byte)2 : (byte)4;
        ushort port = imm ? (ushort)(insn.Immediate & 0xFF) : dx;
        bool rep = str && (insn.Prefixes & (Prefixes.Rep | Prefixes.Repne)) != 0;
        Register seg = str && !input ? insn.MemorySegment : Register.ES;
        return new IoExit(port, size, input, str, rep, imm, insn.AddressSize, seg, insn.Length);
    }
}
