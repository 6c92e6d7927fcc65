// Decoding of the VMX I/O-instruction exit: the exit qualification and the VM-exit instruction
// information, as the SDM lays them out.
using Hyve.Vmm.Emulation;
using Hyve.X86;

namespace Hyve.Vmm.Vmx;

/// <summary>The VMX I/O exit (basic exit reason 30) turned into an <see cref="IoExit"/>.</summary>
public static class VmxIoExit
{
    /// <summary>
    /// Decodes <paramref name="qualification"/> (bits 2:0 size - 1, bit 3 IN, bit 4 string,
    /// bit 5 REP, bit 6 immediate operand, bits 31:16 port) and, for string instructions,
    /// <paramref name="instructionInformation"/> (bits 9:7 address size: 0 = 16, 1 = 32,
    /// 2 = 64 bits, so 2 &lt;&lt; field bytes; bits 17:15 segment, meaningful for OUTS only).
    /// Encodings the SDM does not define are a vmm panic.
    /// </summary>
    public static IoExit Decode(ulong qualification, uint instructionInformation, int instructionLength)
    {
        int sizeField = (int)(qualification & 7);
        byte size = sizeField switch
        {
            0 => 1,
            1 => 2,
            3 => 4,
            _ => throw new VmmPanicException($"I/O exit qualification {qualification:X}: size field {sizeField} is not 0, 1 or 3"),
        };
        bool input = (qualification & 8) != 0;
        bool str = (qualification & 0x10) != 0;
        bool rep = (qualification & 0x20) != 0;
        bool imm = (qualification & 0x40) != 0;
        ushort port = (ushort)(qualification >> 16);
        if (instructionLength is < 1 or > 15)
            throw new VmmPanicException($"I/O exit: instruction length {instructionLength}");
        byte addressSize = 0;
        Register segment = Register.ES;
        if (str)
        {
            uint asField = (instructionInformation >> 7) & 7;
            if (asField > 2)
                throw new VmmPanicException($"I/O exit instruction information {instructionInformation:X}: address-size field {asField}");
            addressSize = (byte)(2 << (int)asField);
            if (!input)
            {
                uint segField = (instructionInformation >> 15) & 7;
                if (segField > 5)
                    throw new VmmPanicException($"I/O exit instruction information {instructionInformation:X}: segment field {segField}");
                segment = RegisterInfo.Add(Register.ES, (int)segField);
            }
        }
        return new IoExit(port, size, input, str, rep, imm, addressSize, segment, (byte)instructionLength);
    }

    /// <summary>The qualification hardware reports for <paramref name="exit"/> (the inverse of
    /// <see cref="Decode"/>, for the software CPU and for tests).</summary>
    public static ulong Qualification(in IoExit exit) =>
        (exit.Size == 4 ? 3UL : (ulong)(exit.Size - 1))
        | (exit.In ? 8UL : 0) | (exit.String ? 0x10UL : 0) | (exit.Rep ? 0x20UL : 0) | (exit.Immediate ? 0x40UL : 0)
        | ((ulong)exit.Port << 16);

    /// <summary>The instruction information for a string <paramref name="exit"/>.</summary>
    public static uint InstructionInformation(in IoExit exit) =>
        ((uint)(exit.AddressSize == 2 ? 0 : exit.AddressSize == 4 ? 1 : 2) << 7) | ((uint)(exit.Segment - Register.ES) << 15);
}
