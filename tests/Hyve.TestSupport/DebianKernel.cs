// A real Linux kernel for the loader tests: Debian's current cloud kernel image (about 26 MB),
// fetched once with apt-get into the temporary directory and unpacked with dpkg-deb. Where
// apt-get cannot fetch it, the tests that need it fail and say why.
using System;
using System.IO;
using System.Linq;

namespace Hyve.TestSupport;

/// <summary>Debian's cloud kernel image, fetched on first use.</summary>
public static class DebianKernel
{
    private static readonly Lazy<(string? Path, string Why)> Found = new(Fetch);

    /// <summary>The bzImage's path, or null.</summary>
    public static string? Path => Found.Value.Path;

    /// <summary>Why it is missing.</summary>
    public static string Why => Found.Value.Why;

    /// <summary>The uncompressed vmlinux inside the bzImage (its LZ4 payload, decompressed once).</summary>
    public static byte[] Vmlinux()
    {
        byte[] bz = File.ReadAllBytes(Path!);
        int setup = ((bz[0x1F1] == 0 ? 4 : bz[0x1F1]) + 1) * 512;
        int offset = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bz.AsSpan(0x248));
        int length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bz.AsSpan(0x24C));
        return Lz4Legacy.Decompress(bz.AsSpan(setup + offset, length));
    }

    private static (string?, string) Fetch()
    {
        string dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "hyve-debian-kernel");
        string? have = Existing(dir);
        if (have != null)
            return (have, "");
        if (!File.Exists("/usr/bin/apt-get") || !File.Exists("/usr/bin/dpkg-deb"))
            return (null, "apt-get and dpkg-deb are needed to fetch Debian's kernel image");
        Directory.CreateDirectory(dir);
        // The cloud kernel metapackage names the current image package.
        string? package = CurrentPackage();
        if (package == null && Environment.UserName == "root")
        {
            HostTool.Sh("apt-get update -q", dir);
            package = CurrentPackage();
        }
        if (package == null)
            return (null, "apt-cache does not know linux-image-cloud-amd64 (run apt-get update)");
        HostTool.Sh($"apt-get download -q {package} && dpkg-deb -x {package}_*.deb unpacked", dir);
        have = Existing(dir);
        return have != null ? (have, "") : (null, $"could not fetch and unpack {package}");
    }

    private static string? Existing(string dir)
    {
        string boot = System.IO.Path.Combine(dir, "unpacked", "boot");
        return Directory.Exists(boot) ? Directory.GetFiles(boot, "vmlinuz-*").FirstOrDefault() : null;
    }

    private static string? CurrentPackage()
    {
        string output = HostTool.Sh("apt-cache depends linux-image-cloud-amd64", Environment.CurrentDirectory);
        foreach (string line in output.Split('\n'))
        {
            string t = line.Trim();
            if (t.StartsWith("Depends: linux-image-", StringComparison.Ordinal))
                return t["Depends: ".Length..].Trim();
        }
        return null;
    }

}
