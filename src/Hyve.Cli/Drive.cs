// QEMU's -drive vocabulary for `hyve run --drive`: FILE or file=FILE, then if=ide|virtio|floppy
// (default ide), media=disk|cdrom (default disk) and readonly=on|off (default off), comma
// separated; each drive maps onto the machine's IDE disk, CD drive, virtio-blk-pci disk or
// floppy drive.
using System;

namespace Hyve.Cli;

/// <summary>One --drive option.</summary>
internal readonly record struct Drive(string File, string Interface, bool Cdrom, bool ReadOnly)
{
    /// <summary>Reads <paramref name="spec"/>; a usage error names what is wrong.</summary>
    public static Drive Parse(string spec)
    {
        string? file = null, iface = "ide", media = "disk", readOnly = "off";
        foreach (string part in spec.Split(','))
        {
            int eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0 && file == null)
            {
                file = part;
                continue;
            }
            string key = eq < 0 ? part : part[..eq], value = eq < 0 ? "" : part[(eq + 1)..];
            switch (key)
            {
                case "file": file = value; break;
                case "if": iface = value; break;
                case "media": media = value; break;
                case "readonly": readOnly = value; break;
                default: throw new UsageException($"run: --drive: unknown setting '{key}' (file, if, media, readonly)");
            }
        }
        if (string.IsNullOrEmpty(file))
            throw new UsageException("run: --drive: no file given");
        if (iface is not ("ide" or "virtio" or "floppy"))
            throw new UsageException($"run: --drive: if={iface}: expected ide, virtio or floppy");
        if (media is not ("disk" or "cdrom"))
            throw new UsageException($"run: --drive: media={media}: expected disk or cdrom");
        if (readOnly is not ("on" or "off"))
            throw new UsageException($"run: --drive: readonly={readOnly}: expected on or off");
        return new Drive(file, iface, media == "cdrom", readOnly == "on");
    }
}
