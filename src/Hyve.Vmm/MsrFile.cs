// The MSRs the vmm owns for a vCPU: EFER, the APIC base, TSC and TSC deadline, PAT, the MTRRs,
// the feature and miscellaneous ones; the SYSCALL/SYSENTER and segment-base MSRs are kept by
// the backend (the processor uses them). Anything else goes to the device half.
using Hyve.Vmm.Backend;
using Hyve.Vmm.Devices;
using Hyve.X86;

namespace Hyve.Vmm;

/// <summary>What became of an RDMSR or WRMSR.</summary>
public enum MsrResult : byte
{
    /// <summary>Done.</summary>
    Handled,
    /// <summary>The MSR or the value is not allowed: #GP(0).</summary>
    Fault,
    /// <summary>Not the vmm's: ask the device half.</summary>
    NotOwned,
}

/// <summary>MSR numbers the vmm knows.</summary>
public static class Msr
{
#pragma warning disable CS1591 // the names are the SDM's
    public const uint Tsc = 0x10, PlatformId = 0x17, ApicBase = 0x1B, FeatureControl = 0x3A, TscAdjust = 0x3B,
        BiosSignId = 0x8B, MtrrCap = 0xFE, SysenterCs = 0x174, SysenterEsp = 0x175, SysenterEip = 0x176,
        McgCap = 0x179, McgStatus = 0x17A, MiscEnable = 0x1A0, MtrrPhysBase0 = 0x200, MtrrPhysMask7 = 0x20F,
        MtrrFix64K = 0x250, MtrrFix16K80 = 0x258, MtrrFix16KA0 = 0x259, MtrrFix4KC0 = 0x268, MtrrFix4KF8 = 0x26F,
        Pat = 0x277, MtrrDefType = 0x2FF, TscDeadline = 0x6E0, X2ApicFirst = 0x800, X2ApicLast = 0x8FF,
        Efer = 0xC000_0080, Star = 0xC000_0081, Lstar = 0xC000_0082, Cstar = 0xC000_0083, Fmask = 0xC000_0084,
        FsBase = 0xC000_0100, GsBase = 0xC000_0101, KernelGsBase = 0xC000_0102, TscAux = 0xC000_0103;
#pragma warning restore CS1591
}

/// <summary>The vmm's MSRs of one vCPU.</summary>
public sealed class MsrFile
{
    private readonly ulong[] _mtrrVariable = new ulong[16];
    private readonly ulong[] _mtrrFixed = new ulong[11];
    private readonly ulong[] _backendKept = new ulong[12];
    private ulong _tscOffset;

    /// <summary>MSRs for a vCPU; the bootstrap processor's APIC base has the BSP flag.</summary>
    public MsrFile(bool bootstrap) => ApicBase = 0xFEE0_0000 | 0x800 | (bootstrap ? 0x100UL : 0);

    /// <summary>IA32_APIC_BASE.</summary>
    public ulong ApicBase { get; private set; }

    /// <summary>The vCPU's local APIC: the x2APIC MSRs, TSC deadline and APIC base mode go to it.</summary>
    public LocalApic? Apic { get; set; }

    /// <summary>IA32_TSC_DEADLINE (the local APIC reads it).</summary>
    public ulong TscDeadline { get; private set; }

    /// <summary>IA32_PAT.</summary>
    public ulong Pat { get; private set; } = 0x0007_0406_0007_0406;

    /// <summary>IA32_MTRR_DEF_TYPE.</summary>
    public ulong MtrrDefType { get; private set; }

    /// <summary>IA32_MISC_ENABLE (fast strings on).</summary>
    public ulong MiscEnable { get; private set; } = 1;

    /// <summary>The guest's TSC at VM time <paramref name="nowNs"/>, for a backend that leaves the
    /// TSC to the vmm: it counts the clock's nanoseconds (1 GHz). A backend with a TSC of its own
    /// (KVM) keeps IA32_TSC itself.</summary>
    public ulong Tsc(long nowNs) => (ulong)nowNs + _tscOffset;

    /// <summary>RDMSR.</summary>
    public MsrResult Read(uint msr, IBackendVcpu cpu, long nowNs, out ulong value)
    {
        value = 0;
        switch (msr)
        {
            case Msr.Efer: value = cpu.Control.Efer; return MsrResult.Handled;
            case Msr.ApicBase: value = ApicBase; return MsrResult.Handled;
            case Msr.Tsc: value = Tsc(nowNs); return MsrResult.Handled;
            case Msr.TscAdjust: value = _tscOffset; return MsrResult.Handled;
            case Msr.TscDeadline: value = Apic?.TscDeadline ?? TscDeadline; return MsrResult.Handled;
            case Msr.Pat: value = Pat; return MsrResult.Handled;
            case Msr.MtrrCap: value = 0x508; return MsrResult.Handled; // 8 variable ranges, fixed ranges, write-combining
            case Msr.MtrrDefType: value = MtrrDefType; return MsrResult.Handled;
            case >= Msr.MtrrPhysBase0 and <= Msr.MtrrPhysMask7: value = _mtrrVariable[msr - Msr.MtrrPhysBase0]; return MsrResult.Handled;
            case Msr.MiscEnable: value = MiscEnable; return MsrResult.Handled;
            case Msr.FeatureControl: value = 1; return MsrResult.Handled; // locked, VMX off
            case Msr.PlatformId or Msr.BiosSignId or Msr.McgCap or Msr.McgStatus: return MsrResult.Handled;
        }
        int fixedIndex = FixedMtrr(msr);
        if (fixedIndex >= 0)
        {
            value = _mtrrFixed[fixedIndex];
            return MsrResult.Handled;
        }
        int kept = BackendKept(msr);
        if (kept >= 0)
        {
            if (!cpu.TryGetMsr(msr, out value))
                value = _backendKept[kept];
            return MsrResult.Handled;
        }
        if (msr is >= Msr.X2ApicFirst and <= Msr.X2ApicLast)
            return Apic != null && Apic.ReadMsr(msr, out value) ? MsrResult.Handled : MsrResult.Fault;
        return MsrResult.NotOwned;
    }

    /// <summary>WRMSR.</summary>
    public MsrResult Write(uint msr, ulong value, IBackendVcpu cpu, long nowNs)
    {
        switch (msr)
        {
            case Msr.Efer:
                {
                    const ulong writable = 1 | PagingState.EferLME | PagingState.EferNXE; // SCE, LME, NXE
                    ControlState c = cpu.Control;
                    if ((value & ~(writable | PagingState.EferLMA)) != 0)
                        return MsrResult.Fault;
                    bool paging = (c.Cr0 & PagingState.Cr0PG) != 0;
                    if (paging && ((value ^ c.Efer) & PagingState.EferLME) != 0)
                        return MsrResult.Fault; // LME changes only with paging off
                    cpu.Control = c with { Efer = (value & writable) | (c.Efer & PagingState.EferLMA) };
                    return MsrResult.Handled;
                }
            case Msr.ApicBase:
                if ((value & ~0xF_FFFF_FFFF_FD00UL) != 0)
                    return MsrResult.Fault;
                if ((value & 0xC00) == 0x400)
                    return MsrResult.Fault; // x2APIC without the global enable is invalid
                if ((ApicBase & 0x400) != 0 && (value & 0xC00) == 0x800)
                    return MsrResult.Fault; // leaving x2APIC goes through disabled
                ApicBase = (value & ~0x100UL) | (ApicBase & 0x100); // the BSP flag is read-only
                if (Apic != null)
                    Apic.X2Apic = (value & 0x400) != 0;
                return MsrResult.Handled;
            case Msr.Tsc: _tscOffset = value - (ulong)nowNs; return MsrResult.Handled;
            case Msr.TscAdjust: _tscOffset = value; return MsrResult.Handled;
            case Msr.TscDeadline:
                TscDeadline = value;
                if (Apic != null)
                    Apic.TscDeadline = value;
                return MsrResult.Handled;
            case Msr.Pat:
                for (int i = 0; i < 8; i++)
                {
                    ulong type = (value >> (8 * i)) & 0xFF;
                    if (type is 2 or 3 or > 7)
                        return MsrResult.Fault;
                }
                Pat = value;
                return MsrResult.Handled;
            case Msr.MtrrDefType:
                if ((value & ~0xCFFUL) != 0)
                    return MsrResult.Fault;
                MtrrDefType = value;
                return MsrResult.Handled;
            case >= Msr.MtrrPhysBase0 and <= Msr.MtrrPhysMask7: _mtrrVariable[msr - Msr.MtrrPhysBase0] = value; return MsrResult.Handled;
            case Msr.MiscEnable: MiscEnable = value; return MsrResult.Handled;
            case Msr.FeatureControl or Msr.PlatformId or Msr.MtrrCap or Msr.McgCap: return MsrResult.Fault; // read-only
            case Msr.BiosSignId or Msr.McgStatus: return MsrResult.Handled;
        }
        int fixedIndex = FixedMtrr(msr);
        if (fixedIndex >= 0)
        {
            _mtrrFixed[fixedIndex] = value;
            return MsrResult.Handled;
        }
        int kept = BackendKept(msr);
        if (kept >= 0)
        {
            if (msr is Msr.FsBase or Msr.GsBase or Msr.KernelGsBase or Msr.Lstar or Msr.Cstar or Msr.SysenterEsp or Msr.SysenterEip
                && (ulong)((long)(value << 16) >> 16) != value)
                return MsrResult.Fault; // not canonical
            if (!cpu.TrySetMsr(msr, value))
                _backendKept[kept] = value;
            return MsrResult.Handled;
        }
        if (msr is >= Msr.X2ApicFirst and <= Msr.X2ApicLast)
            return Apic != null && Apic.WriteMsr(msr, value) ? MsrResult.Handled : MsrResult.Fault;
        return MsrResult.NotOwned;
    }

    private static int FixedMtrr(uint msr) => msr switch
    {
        Msr.MtrrFix64K => 0,
        Msr.MtrrFix16K80 => 1,
        Msr.MtrrFix16KA0 => 2,
        >= Msr.MtrrFix4KC0 and <= Msr.MtrrFix4KF8 => 3 + (int)(msr - Msr.MtrrFix4KC0),
        _ => -1,
    };

    // The MSRs the processor itself uses, which the backend keeps when it can.
    private static int BackendKept(uint msr) => msr switch
    {
        Msr.SysenterCs => 0,
        Msr.SysenterEsp => 1,
        Msr.SysenterEip => 2,
        Msr.Star => 3,
        Msr.Lstar => 4,
        Msr.Cstar => 5,
        Msr.Fmask => 6,
        Msr.FsBase => 7,
        Msr.GsBase => 8,
        Msr.KernelGsBase => 9,
        Msr.TscAux => 10,
        _ => -1,
    };
}
