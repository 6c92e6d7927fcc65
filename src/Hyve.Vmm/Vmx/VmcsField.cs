// VMCS field encodings (SDM Appendix B): every field Hyve knows, by name, and the width, type
// and high-half access that the encoding itself carries.
using System.Collections.Generic;

namespace Hyve.Vmm.Vmx;

/// <summary>Width of a VMCS field (encoding bits 14:13).</summary>
public enum VmcsWidth : byte
{
    /// <summary>16 bits.</summary>
    Bits16 = 0,
    /// <summary>64 bits (bit 0 of the encoding selects the high half).</summary>
    Bits64 = 1,
    /// <summary>32 bits.</summary>
    Bits32 = 2,
    /// <summary>Natural width (64 bits on a 64-bit host).</summary>
    Natural = 3,
}

/// <summary>Type of a VMCS field (encoding bits 11:10).</summary>
public enum VmcsType : byte
{
    /// <summary>Control.</summary>
    Control = 0,
    /// <summary>VM-exit information (read-only).</summary>
    ReadOnly = 1,
    /// <summary>Guest state.</summary>
    Guest = 2,
    /// <summary>Host state.</summary>
    Host = 3,
}

/// <summary>VMCS field encodings, with the SDM's names.</summary>
public static class VmcsField
{
#pragma warning disable CS1591 // the names are the SDM's field names
    // 16-bit control, guest and host.
    public const uint Vpid = 0x0000, PostedInterruptNotificationVector = 0x0002, EptpIndex = 0x0004;
    public const uint GuestEsSelector = 0x0800, GuestCsSelector = 0x0802, GuestSsSelector = 0x0804, GuestDsSelector = 0x0806,
        GuestFsSelector = 0x0808, GuestGsSelector = 0x080A, GuestLdtrSelector = 0x080C, GuestTrSelector = 0x080E,
        GuestInterruptStatus = 0x0810, PmlIndex = 0x0812;
    public const uint HostEsSelector = 0x0C00, HostCsSelector = 0x0C02, HostSsSelector = 0x0C04, HostDsSelector = 0x0C06,
        HostFsSelector = 0x0C08, HostGsSelector = 0x0C0A, HostTrSelector = 0x0C0C;

    // 64-bit control, read-only, guest and host.
    public const uint IoBitmapA = 0x2000, IoBitmapB = 0x2002, MsrBitmap = 0x2004, ExitMsrStoreAddress = 0x2006,
        ExitMsrLoadAddress = 0x2008, EntryMsrLoadAddress = 0x200A, ExecutiveVmcsPointer = 0x200C, PmlAddress = 0x200E,
        TscOffset = 0x2010, VirtualApicAddress = 0x2012, ApicAccessAddress = 0x2014, PostedInterruptDescriptor = 0x2016,
        VmFunctionControls = 0x2018, EptPointer = 0x201A, EoiExitBitmap0 = 0x201C, EoiExitBitmap1 = 0x201E,
        EoiExitBitmap2 = 0x2020, EoiExitBitmap3 = 0x2022, EptpListAddress = 0x2024, VmreadBitmap = 0x2026,
        VmwriteBitmap = 0x2028, VirtualizationExceptionInfo = 0x202A, XssExitingBitmap = 0x202C,
        EnclsExitingBitmap = 0x202E, SubPagePermissionTable = 0x2030, TscMultiplier = 0x2032, TertiaryControls = 0x2034;
    public const uint GuestPhysicalAddress = 0x2400;
    public const uint VmcsLinkPointer = 0x2800, GuestDebugCtl = 0x2802, GuestPat = 0x2804, GuestEfer = 0x2806,
        GuestPerfGlobalCtrl = 0x2808, GuestPdpte0 = 0x280A, GuestPdpte1 = 0x280C, GuestPdpte2 = 0x280E, GuestPdpte3 = 0x2810,
        GuestBndcfgs = 0x2812, GuestRtitCtl = 0x2814;
    public const uint HostPat = 0x2C00, HostEfer = 0x2C02, HostPerfGlobalCtrl = 0x2C04;

    // 32-bit control, read-only, guest and host.
    public const uint PinBasedControls = 0x4000, PrimaryProcessorControls = 0x4002, ExceptionBitmap = 0x4004,
        PageFaultErrorCodeMask = 0x4006, PageFaultErrorCodeMatch = 0x4008, Cr3TargetCount = 0x400A, ExitControls = 0x400C,
        ExitMsrStoreCount = 0x400E, ExitMsrLoadCount = 0x4010, EntryControls = 0x4012, EntryMsrLoadCount = 0x4014,
        EntryInterruptionInfo = 0x4016, EntryExceptionErrorCode = 0x4018, EntryInstructionLength = 0x401A,
        TprThreshold = 0x401C, SecondaryProcessorControls = 0x401E, PleGap = 0x4020, PleWindow = 0x4022;
    public const uint InstructionError = 0x4400, ExitReason = 0x4402, ExitInterruptionInfo = 0x4404,
        ExitInterruptionErrorCode = 0x4406, IdtVectoringInfo = 0x4408, IdtVectoringErrorCode = 0x440A,
        ExitInstructionLength = 0x440C, ExitInstructionInfo = 0x440E;
    public const uint GuestEsLimit = 0x4800, GuestCsLimit = 0x4802, GuestSsLimit = 0x4804, GuestDsLimit = 0x4806,
        GuestFsLimit = 0x4808, GuestGsLimit = 0x480A, GuestLdtrLimit = 0x480C, GuestTrLimit = 0x480E, GuestGdtrLimit = 0x4810,
        GuestIdtrLimit = 0x4812, GuestEsAccessRights = 0x4814, GuestCsAccessRights = 0x4816, GuestSsAccessRights = 0x4818,
        GuestDsAccessRights = 0x481A, GuestFsAccessRights = 0x481C, GuestGsAccessRights = 0x481E,
        GuestLdtrAccessRights = 0x4820, GuestTrAccessRights = 0x4822, GuestInterruptibility = 0x4824,
        GuestActivityState = 0x4826, GuestSmbase = 0x4828, GuestSysenterCs = 0x482A, PreemptionTimerValue = 0x482E;
    public const uint HostSysenterCs = 0x4C00;

    // Natural-width control, read-only, guest and host.
    public const uint Cr0GuestHostMask = 0x6000, Cr4GuestHostMask = 0x6002, Cr0ReadShadow = 0x6004, Cr4ReadShadow = 0x6006,
        Cr3Target0 = 0x6008, Cr3Target1 = 0x600A, Cr3Target2 = 0x600C, Cr3Target3 = 0x600E;
    public const uint ExitQualification = 0x6400, IoRcx = 0x6402, IoRsi = 0x6404, IoRdi = 0x6406, IoRip = 0x6408,
        GuestLinearAddress = 0x640A;
    public const uint GuestCr0 = 0x6800, GuestCr3 = 0x6802, GuestCr4 = 0x6804, GuestEsBase = 0x6806, GuestCsBase = 0x6808,
        GuestSsBase = 0x680A, GuestDsBase = 0x680C, GuestFsBase = 0x680E, GuestGsBase = 0x6810, GuestLdtrBase = 0x6812,
        GuestTrBase = 0x6814, GuestGdtrBase = 0x6816, GuestIdtrBase = 0x6818, GuestDr7 = 0x681A, GuestRsp = 0x681C,
        GuestRip = 0x681E, GuestRflags = 0x6820, GuestPendingDebugExceptions = 0x6822, GuestSysenterEsp = 0x6824,
        GuestSysenterEip = 0x6826;
    public const uint HostCr0 = 0x6C00, HostCr3 = 0x6C02, HostCr4 = 0x6C04, HostFsBase = 0x6C06, HostGsBase = 0x6C08,
        HostTrBase = 0x6C0A, HostGdtrBase = 0x6C0C, HostIdtrBase = 0x6C0E, HostSysenterEsp = 0x6C10, HostSysenterEip = 0x6C12,
        HostRsp = 0x6C14, HostRip = 0x6C16;
#pragma warning restore CS1591

    private static readonly HashSet<uint> Known = Collect();

    private static HashSet<uint> Collect()
    {
        var set = new HashSet<uint>();
        foreach (System.Reflection.FieldInfo f in typeof(VmcsField).GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static))
        {
            if (f.IsLiteral && f.FieldType == typeof(uint))
                set.Add((uint)f.GetRawConstantValue()!);
        }
        return set;
    }

    /// <summary>Every field encoding Hyve knows (full accesses; 64-bit fields also have a high half at +1).</summary>
    public static IReadOnlyCollection<uint> All => Known;

    /// <summary>Whether <paramref name="encoding"/> names a field (or the high half of a 64-bit one).</summary>
    public static bool IsKnown(uint encoding) =>
        Known.Contains(encoding) || (High(encoding) && Width(encoding) == VmcsWidth.Bits64 && Known.Contains(encoding & ~1u));

    /// <summary>Width, from bits 14:13.</summary>
    public static VmcsWidth Width(uint encoding) => (VmcsWidth)((encoding >> 13) & 3);

    /// <summary>Type, from bits 11:10.</summary>
    public static VmcsType Type(uint encoding) => (VmcsType)((encoding >> 10) & 3);

    /// <summary>Index, from bits 9:1.</summary>
    public static int Index(uint encoding) => (int)((encoding >> 1) & 0x1FF);

    /// <summary>Bit 0: the high 32 bits of a 64-bit field.</summary>
    public static bool High(uint encoding) => (encoding & 1) != 0;
}
