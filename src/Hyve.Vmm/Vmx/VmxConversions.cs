// Data conversion between the guest's architectural state and the VMCS's encodings: segment
// access rights and descriptors, the CR0/CR4 guest/host masks and read shadows, EFER.LMA and the
// IA-32e-mode entry control, and the interruptibility state. This belongs to the VMX logic, not
// to the VMCS API (bhyve 13063).
using Hyve.X86;

namespace Hyve.Vmm.Vmx;

/// <summary>Interruptibility-state bits (VMCS 0x4824).</summary>
public static class Interruptibility
{
    /// <summary>Blocking by STI.</summary>
    public const uint Sti = 1;
    /// <summary>Blocking by MOV SS.</summary>
    public const uint MovSs = 2;
    /// <summary>Blocking by SMI.</summary>
    public const uint Smi = 4;
    /// <summary>Blocking by NMI.</summary>
    public const uint Nmi = 8;

    /// <summary>Whether an external interrupt can be delivered with this state and RFLAGS.</summary>
    public static bool InterruptWindowOpen(uint state, ulong rflags) => (rflags & Rflags.IF) != 0 && (state & (Sti | MovSs)) == 0;

    /// <summary>Whether an NMI can be delivered.</summary>
    public static bool NmiWindowOpen(uint state) => (state & (Nmi | MovSs)) == 0;
}

/// <summary>Conversions the VMX layer makes.</summary>
public static class VmxConversions
{
    /// <summary>VM-entry control bit 9: IA-32e mode guest.</summary>
    public const uint EntryIa32eMode = 1 << 9;

    /// <summary>The VMX access rights of a segment loaded from <paramref name="descriptor"/> (an
    /// 8-byte GDT/LDT entry) with <paramref name="selector"/>; a null selector is unusable.</summary>
    public static uint AccessRightsFromDescriptor(ulong descriptor, ushort selector)
    {
        if ((selector & ~3) == 0)
            return 0x1_0000; // unusable
        uint high = (uint)(descriptor >> 32);
        // Type, S, DPL, P come from bits 15:8 of the high word; AVL, L, D/B, G from bits 23:20.
        return ((high >> 8) & 0xFF) | (((high >> 20) & 0xF) << 12);
    }

    /// <summary>The segment a descriptor describes: base, byte-granular limit, access rights.</summary>
    public static Segment SegmentFromDescriptor(ulong descriptor, ushort selector)
    {
        ulong baseAddr = ((descriptor >> 16) & 0xFF_FFFF) | (((descriptor >> 56) & 0xFF) << 24);
        uint limit = (uint)((descriptor & 0xFFFF) | (((descriptor >> 48) & 0xF) << 16));
        uint access = AccessRightsFromDescriptor(descriptor, selector);
        if ((access & 0x8000) != 0)
            limit = (limit << 12) | 0xFFF; // 4 KiB granularity
        return new Segment(selector, baseAddr, limit, access);
    }

    /// <summary>The 8-byte descriptor for <paramref name="segment"/> (base bits 31:0).</summary>
    public static ulong DescriptorFromSegment(in Segment segment)
    {
        uint access = segment.Access;
        uint limit = segment.Limit;
        if ((access & 0x8000) != 0)
            limit >>= 12;
        ulong b = segment.Base;
        return (limit & 0xFFFF) | ((b & 0xFF_FFFF) << 16) | ((ulong)(access & 0xFF) << 40)
            | ((ulong)((limit >> 16) & 0xF) << 48) | ((ulong)((access >> 12) & 0xF) << 52) | (((b >> 24) & 0xFF) << 56);
    }

    /// <summary>What the guest reads from CR0 or CR4: bits the host owns (set in
    /// <paramref name="mask"/>) come from the read shadow, the rest from the real register.</summary>
    public static ulong GuestVisible(ulong actual, ulong mask, ulong shadow) => (actual & ~mask) | (shadow & mask);

    /// <summary>Whether a guest write of <paramref name="value"/> to CR0 or CR4 must exit: it
    /// changes a host-owned bit away from the read shadow.</summary>
    public static bool WriteExits(ulong value, ulong mask, ulong shadow) => ((value ^ shadow) & mask) != 0;

    /// <summary>The value the register takes for a write that does not exit: host-owned bits keep
    /// their real value.</summary>
    public static ulong ApplyWrite(ulong actual, ulong value, ulong mask) => (actual & mask) | (value & ~mask);

    /// <summary>The VM-entry controls with the IA-32e-mode bit set from EFER.LMA, as VM entry
    /// requires them to agree.</summary>
    public static uint EntryControlsFor(uint entryControls, ulong efer) =>
        (efer & PagingState.EferLMA) != 0 ? entryControls | EntryIa32eMode : entryControls & ~EntryIa32eMode;

    /// <summary>EFER as VM entry loads it: LMA follows the IA-32e-mode control (and LME with it).</summary>
    public static ulong EferFor(ulong efer, uint entryControls) =>
        (entryControls & EntryIa32eMode) != 0 ? efer | PagingState.EferLMA | PagingState.EferLME : efer & ~PagingState.EferLMA;
}
