// BMI1 and BMI2, the VEX-encoded general-register operations: ANDN, BEXTR, BLSI, BLSMSK, BLSR
// (BMI1) and BZHI, MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX (BMI2), each run only when CPUID
// reports its extension. Like every VEX instruction they are #UD in real-address and
// virtual-8086 mode; they need no XSAVE state (CR4.OSXSAVE and XCR0 do not matter).
using Hyve.X86;
using Hyve.X86.Decoding;

namespace Hyve.SoftCpu;

public sealed partial class SoftProcessor
{
    // One BMI instruction; false when it raised.
    private bool Bmi(Mnemonic m)
    {
        ref readonly Instruction i = ref _insn;
        bool bmi2 = m is Mnemonic.Bzhi or Mnemonic.Mulx or Mnemonic.Pdep or Mnemonic.Pext or Mnemonic.Rorx or Mnemonic.Sarx
            or Mnemonic.Shlx or Mnemonic.Shrx;
        if ((_features & (bmi2 ? CpuFeatures.Bmi2 : CpuFeatures.Bmi1)) == 0 || RealAddressing)
            return Raise(ExceptionVector.UD);
        int size = RegisterInfo.GprNumber(i.GetRegister(0)).Size; // 4, or 8 with VEX.W in 64-bit mode
        int bits = size * 8;
        ulong mask = Alu.Mask(size), sign = Alu.SignBit(size);
        // The r/m operand: third for ANDN, MULX, PDEP and PEXT, second for the rest.
        int rmIndex = m is Mnemonic.Andn or Mnemonic.Mulx or Mnemonic.Pdep or Mnemonic.Pext ? 2 : 1;
        if (!Source(rmIndex, size, out ulong src))
            return false;
        ulong result;
        ulong flags = Flags & ~Rflags.Status;
        switch (m)
        {
            case Mnemonic.Andn:
                result = ~Get(i.GetRegister(1)) & src & mask;
                flags |= ZeroSign(result, sign);
                break;
            case Mnemonic.Blsi:
                result = (0 - src) & src & mask;
                flags |= ZeroSign(result, sign) | (src != 0 ? Rflags.CF : 0);
                break;
            case Mnemonic.Blsmsk:
                result = ((src - 1) ^ src) & mask;
                flags |= (result & sign) != 0 ? Rflags.SF : 0; // ZF is cleared
                flags |= src == 0 ? Rflags.CF : 0;
                break;
            case Mnemonic.Blsr:
                result = (src - 1) & src & mask;
                flags |= ZeroSign(result, sign) | (src == 0 ? Rflags.CF : 0);
                break;
            case Mnemonic.Bextr:
                {
                    ulong control = Get(i.GetRegister(2));
                    int start = (int)(control & 0xFF), length = (int)((control >> 8) & 0xFF);
                    result = start >= bits ? 0 : src >> start;
                    if (length < bits)
                        result &= (1UL << length) - 1;
                    flags |= result == 0 ? Rflags.ZF : 0; // CF and OF are cleared
                    break;
                }
            case Mnemonic.Bzhi:
                {
                    int n = (int)(Get(i.GetRegister(2)) & 0xFF);
                    result = n < bits ? src & ((1UL << n) - 1) : src;
                    flags |= ZeroSign(result, sign) | (n > bits - 1 ? Rflags.CF : 0);
                    break;
                }
            case Mnemonic.Mulx:
                {
                    // RDX (EDX) times the source, unsigned; the low half to the second operand, then
                    // the high half to the first, so when they are one register it holds the high half.
                    ulong other = _gpr[2] & mask;
                    ulong high, low;
                    if (size == 8)
                    {
                        high = System.Math.BigMul(other, src, out low);
                    }
                    else
                    {
                        ulong product = other * src;
                        high = product >> 32;
                        low = (uint)product;
                    }
                    Set(i.GetRegister(1), low);
                    Set(i.GetRegister(0), high);
                    return true;
                }
            case Mnemonic.Pdep:
                Set(i.GetRegister(0), Deposit(Get(i.GetRegister(1)), src & mask));
                return true;
            case Mnemonic.Pext:
                Set(i.GetRegister(0), Extract(Get(i.GetRegister(1)), src & mask));
                return true;
            case Mnemonic.Rorx:
                {
                    int count = (int)(i.Immediate & (ulong)(bits - 1));
                    Set(i.GetRegister(0), count == 0 ? src : ((src >> count) | (src << (bits - count))) & mask);
                    return true;
                }
            default:
                {
                    int count = (int)(Get(i.GetRegister(2)) & (ulong)(bits - 1));
                    ulong shifted = m switch
                    {
                        Mnemonic.Shlx => src << count,
                        Mnemonic.Shrx => src >> count,
                        _ => (ulong)(Alu.SignExtend(src, size) >> count),
                    };
                    Set(i.GetRegister(0), shifted & mask);
                    return true;
                }
        }
        Set(i.GetRegister(0), result);
        Flags = flags;
        return true;
    }

    private static ulong ZeroSign(ulong result, ulong sign) => (result == 0 ? Rflags.ZF : 0) | ((result & sign) != 0 ? Rflags.SF : 0);

    // PDEP: the low bits of the source, in order, to the positions of the mask's set bits.
    private static ulong Deposit(ulong source, ulong mask)
    {
        ulong result = 0;
        for (ulong bit = 1; mask != 0; bit <<= 1)
        {
            ulong lowest = mask & (0 - mask);
            if ((source & bit) != 0)
                result |= lowest;
            mask &= mask - 1;
        }
        return result;
    }

    // PEXT: the source's bits at the mask's set bits, packed from bit 0 up.
    private static ulong Extract(ulong source, ulong mask)
    {
        ulong result = 0;
        for (ulong bit = 1; mask != 0; bit <<= 1)
        {
            ulong lowest = mask & (0 - mask);
            if ((source & lowest) != 0)
                result |= bit;
            mask &= mask - 1;
        }
        return result;
    }
}
