// The Intel 440FX host bridge at 00:00.0, as QEMU's pc machine has it: its identity (which
// firmware checks to know the platform), the PAM registers 0x59-0x5F that decide whether the
// BIOS area 0xC0000-0xFFFFF reads ROM or shadow RAM, and SMRAM (0x72) reporting a chipset whose
// SMM space is never opened (this machine has no SMM). The BIOS area is RAM whatever PAM says
// (what firmware wants once it has shadowed itself); the registers keep what firmware writes.
namespace Hyve.Devices.Pci;

/// <summary>The i440FX PCI and memory controller.</summary>
public sealed class HostBridge : PciFunction
{
    /// <summary>PAM0, the first of the seven shadow-control registers.</summary>
    public const int Pam0 = 0x59;

    /// <summary>The SMRAM control register.</summary>
    public const int Smram = 0x72;

    /// <summary>The bridge with its reset values.</summary>
    public HostBridge()
        : base(0x8086, 0x1237, 0x02, 0x06_00_00)
    {
        Config[4] = 0x06;    // memory space and bus master on
        Config[6] = 0x80;    // status: fast back-to-back capable
        Config[7] = 0x02;    // medium DEVSEL timing
        Config[Smram] = 0x02; // C_BASE_SEG 010 (the A segment), all else clear
        Writable(0x50, 9);   // PMCCFG, DETURBO, DBC, AXC, DRT, DRAMC
        Writable(Pam0, 7, 0x33);
        Writable(Pam0, 1, 0x30); // PAM0's low nibble is reserved
        Writable(0x60, 8);   // DRB: DRAM row boundaries
        Writable(Smram, 1, 0x78);
    }

    /// <summary>The PAM register for the BIOS area segment at <paramref name="address"/>: its two
    /// bits (read enable, write enable) for that 16 KiB (64 KiB for 0xF0000).</summary>
    public int Pam(uint address)
    {
        if (address >= 0xF0000)
            return (Config[Pam0] >> 4) & 3;
        int segment = (int)((address - 0xC0000) >> 14);
        return (Config[Pam0 + 1 + segment / 2] >> (4 * (segment & 1))) & 3;
    }
}
