// The KVM API's argument structs for x86-64, laid out as <linux/kvm.h> and <asm/kvm.h> declare
// them (the tests compare every size and offset used here with the headers through gcc).
using System.Runtime.InteropServices;

namespace Hyve.Kvm;

/// <summary>struct kvm_regs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmRegs
{
    /// <summary>RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP, R8..R15 (KVM's order, not the encoding's).</summary>
    public ulong Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rsp, Rbp, R8, R9, R10, R11, R12, R13, R14, R15;
    /// <summary>RIP.</summary>
    public ulong Rip;
    /// <summary>RFLAGS.</summary>
    public ulong Rflags;
}

/// <summary>struct kvm_segment.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmSegment
{
    /// <summary>Base.</summary>
    public ulong Base;
    /// <summary>Limit in bytes.</summary>
    public uint Limit;
    /// <summary>Selector.</summary>
    public ushort Selector;
    /// <summary>Descriptor fields, one byte each.</summary>
    public byte Type, Present, Dpl, Db, S, L, G, Avl, Unusable, Padding;
}

/// <summary>struct kvm_dtable.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmDtable
{
    /// <summary>Base.</summary>
    public ulong Base;
    /// <summary>Limit.</summary>
    public ushort Limit;
    private readonly ushort _pad0, _pad1, _pad2;
}

/// <summary>struct kvm_sregs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmSregs
{
    /// <summary>Segment registers (KVM's order), TR and LDTR.</summary>
    public KvmSegment Cs, Ds, Es, Fs, Gs, Ss, Tr, Ldt;
    /// <summary>GDTR and IDTR.</summary>
    public KvmDtable Gdt, Idt;
    /// <summary>Control registers, EFER and the APIC base.</summary>
    public ulong Cr0, Cr2, Cr3, Cr4, Cr8, Efer, ApicBase;
    /// <summary>Pending external interrupt bitmap (256 bits).</summary>
    public ulong Bitmap0, Bitmap1, Bitmap2, Bitmap3;
}

/// <summary>struct kvm_fpu.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmFpu
{
    /// <summary>x87 registers, 16 bytes each.</summary>
    public fixed byte Fpr[128];
    /// <summary>Control and status words, abridged tag word.</summary>
    public ushort Fcw, Fsw;
    /// <summary>Abridged tag word.</summary>
    public byte Ftwx, Pad1;
    /// <summary>Last opcode.</summary>
    public ushort LastOpcode;
    /// <summary>Last instruction and data pointers.</summary>
    public ulong LastIp, LastDp;
    /// <summary>XMM0..XMM15, 16 bytes each.</summary>
    public fixed byte Xmm[256];
    /// <summary>MXCSR.</summary>
    public uint Mxcsr;
    private readonly uint _pad2;
}

/// <summary>struct kvm_msr_entry.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrEntry
{
    /// <summary>MSR number.</summary>
    public uint Index;
    private readonly uint _reserved;
    /// <summary>Value.</summary>
    public ulong Data;
}

/// <summary>struct kvm_msrs with one entry.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrs1
{
    /// <summary>Number of entries (1).</summary>
    public uint Count;
    private readonly uint _pad;
    /// <summary>The entry.</summary>
    public KvmMsrEntry Entry;
}

/// <summary>struct kvm_cpuid_entry2.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmCpuidEntry
{
    /// <summary>Leaf and subleaf.</summary>
    public uint Function, Index;
    /// <summary>KVM_CPUID_FLAG_*.</summary>
    public uint Flags;
    /// <summary>Result registers.</summary>
    public uint Eax, Ebx, Ecx, Edx;
    private readonly uint _pad0, _pad1, _pad2;
}

/// <summary>struct kvm_userspace_memory_region.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmMemoryRegion
{
    /// <summary>Slot number and flags.</summary>
    public uint Slot, Flags;
    /// <summary>Guest-physical base, size and host address.</summary>
    public ulong GuestPhysAddr, MemorySize, UserspaceAddr;
}

/// <summary>struct kvm_enable_cap.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmEnableCap
{
    /// <summary>Capability and flags.</summary>
    public uint Cap, Flags;
    /// <summary>Arguments.</summary>
    public ulong Arg0, Arg1, Arg2, Arg3;
    private fixed byte _pad[64];
}

/// <summary>struct kvm_msr_filter_range.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrFilterRange
{
    /// <summary>KVM_MSR_FILTER_READ/WRITE.</summary>
    public uint Flags;
    /// <summary>Number of MSRs the bitmap covers.</summary>
    public uint Count;
    /// <summary>First MSR.</summary>
    public uint Base;
    /// <summary>One bit per MSR: set allows KVM to handle it, clear sends it to user space.</summary>
    public nint Bitmap;
}

/// <summary>struct kvm_vcpu_events.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmVcpuEvents
{
    /// <summary>Exception: injected, vector, has error code, pending; error code.</summary>
    public byte ExceptionInjected, ExceptionNr, ExceptionHasErrorCode, ExceptionPending;
    /// <summary>Error code of the exception.</summary>
    public uint ExceptionErrorCode;
    /// <summary>Interrupt: injected, vector, soft, shadow.</summary>
    public byte InterruptInjected, InterruptNr, InterruptSoft, InterruptShadow;
    /// <summary>NMI: injected, pending, masked.</summary>
    public byte NmiInjected, NmiPending, NmiMasked, NmiPad;
    /// <summary>SIPI vector.</summary>
    public uint SipiVector;
    /// <summary>KVM_VCPUEVENT_VALID_*.</summary>
    public uint Flags;
    private fixed byte _rest[40];
}
