// A bootable image made from Debian's packages as a user would make one: grub-mkrescue (from
// grub-common, with grub-pc-bin's BIOS modules, grub-efi-amd64-bin's UEFI modules and xorriso)
// around a kernel, an initramfs and a grub.cfg that puts GRUB's console on COM1 and boots the
// kernel at once. The result is a hybrid ISO 9660 image: El Torito for a CD drive (a BIOS entry
// and an EFI one), and for a hard disk an MBR with GRUB's boot code and an EFI system partition
// holding GRUB's EFI image.
using System.IO;

namespace Hyve.TestSupport;

/// <summary>Builds GRUB rescue images.</summary>
public static class GrubImage
{
    private static readonly string[] Needed = ["/usr/bin/grub-mkrescue", "/usr/bin/xorriso", "/usr/lib/grub/i386-pc/boot_hybrid.img",
        "/usr/lib/grub/x86_64-efi/linux.mod", "/usr/bin/mformat"];

    /// <summary>Why images cannot be built here, or null when they can.</summary>
    public static string? Unavailable => System.Array.TrueForAll(Needed, File.Exists)
        ? null
        : "grub-mkrescue, xorriso, mtools and GRUB's BIOS and UEFI modules are needed: install Debian's grub-common, grub-pc-bin, grub-efi-amd64-bin, mtools and xorriso";

    /// <summary>Writes an image to a new temporary file (the caller deletes it) holding
    /// <paramref name="kernel"/> as /boot/vmlinuz and <paramref name="initramfs"/> as
    /// /boot/initrd, which GRUB boots with <paramref name="cmdline"/>, printing "GRUB: loading
    /// Linux" first.</summary>
    public static string Build(string kernel, byte[] initramfs, string cmdline)
    {
        string tree = Directory.CreateTempSubdirectory("hyve-grub-").FullName;
        try
        {
            string boot = Path.Combine(tree, "boot");
            Directory.CreateDirectory(Path.Combine(boot, "grub"));
            File.Copy(kernel, Path.Combine(boot, "vmlinuz"));
            File.WriteAllBytes(Path.Combine(boot, "initrd"), initramfs);
            File.WriteAllText(Path.Combine(boot, "grub", "grub.cfg"),
                "serial --unit=0 --speed=115200\nterminal_input serial\nterminal_output serial\n" +
                $"echo \"GRUB: loading Linux\"\nlinux /boot/vmlinuz {cmdline}\ninitrd /boot/initrd\nboot\n");
            string image = Path.GetTempFileName();
            HostTool.Sh($"grub-mkrescue -o '{image}' '{tree}' 2>&1");
            if (new FileInfo(image).Length < 1 << 20)
                throw new IOException($"grub-mkrescue did not build an image in {image}");
            return image;
        }
        finally
        {
            Directory.Delete(tree, recursive: true);
        }
    }
}
