// User space for the Linux guest tests: Debian's statically linked busybox (busybox-static,
// about 2 MB), fetched once with apt-get into the temporary directory, and an initramfs (the
// kernel's "newc" cpio format) built around it with the init script a test gives.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;

namespace Hyve.TestSupport;

/// <summary>Debian's static busybox and initramfs images built from it.</summary>
public static class DebianBusybox
{
    private static readonly Lazy<(string? Path, string Why)> Found = new(Fetch);

    /// <summary>The busybox binary's path, or null.</summary>
    public static string? Path => Found.Value.Path;

    /// <summary>Why it is missing.</summary>
    public static string Why => Found.Value.Why;

    /// <summary>An initramfs holding /bin/busybox, /init (<paramref name="init"/>, run by the
    /// kernel as process 1), /dev/console, empty /proc and /sys, and each of
    /// <paramref name="programs"/> as an executable at its path.</summary>
    public static byte[] Initramfs(string init, params (string Path, byte[] Data)[] programs)
    {
        var cpio = new Cpio();
        foreach (string dir in new[] { "bin", "dev", "proc", "sys" })
            cpio.Add(dir, 0x41ED, []);                       // drwxr-xr-x
        cpio.Add("bin/busybox", 0x81ED, File.ReadAllBytes(Path!)); // -rwxr-xr-x
        cpio.Add("init", 0x81ED, Encoding.ASCII.GetBytes(init));
        cpio.Add("dev/console", 0x2180, [], 5, 1);            // crw------- 5,1
        foreach (var (path, data) in programs)
            cpio.Add(path.TrimStart('/'), 0x81ED, data);
        return cpio.Finish();
    }

    private static (string?, string) Fetch()
    {
        string dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "hyve-debian-busybox");
        string binary = System.IO.Path.Combine(dir, "unpacked", "bin", "busybox");
        if (File.Exists(binary))
            return (binary, "");
        if (!File.Exists("/usr/bin/apt-get") || !File.Exists("/usr/bin/dpkg-deb"))
            return (null, "apt-get and dpkg-deb are needed to fetch Debian's busybox-static");
        Directory.CreateDirectory(dir);
        HostTool.Sh("apt-get download -q busybox-static && dpkg-deb -x busybox-static_*.deb unpacked", dir);
        if (!File.Exists(binary) && Environment.UserName == "root")
            HostTool.Sh("apt-get update -q && apt-get download -q busybox-static && dpkg-deb -x busybox-static_*.deb unpacked", dir);
        return File.Exists(binary) ? (binary, "") : (null, "could not fetch and unpack busybox-static (apt-get download busybox-static)");
    }

    // The "newc" cpio format: a 110-byte ASCII header per entry, name and data each padded to 4.
    private sealed class Cpio
    {
        private readonly List<byte> _out = [];
        private int _inode = 1;

        public void Add(string name, int mode, byte[] data, int rdevMajor = 0, int rdevMinor = 0)
        {
            byte[] nameBytes = Encoding.ASCII.GetBytes(name + "\0");
            int[] fields = [_inode++, mode, 0, 0, (mode & 0xF000) == 0x4000 ? 2 : 1, 0, data.Length, 0, 0, rdevMajor, rdevMinor, nameBytes.Length, 0];
            _out.AddRange(Encoding.ASCII.GetBytes("070701" + string.Concat(fields.Select(f => f.ToString("X8", System.Globalization.CultureInfo.InvariantCulture)))));
            _out.AddRange(nameBytes);
            Pad();
            _out.AddRange(data);
            Pad();
        }

        public byte[] Finish()
        {
            Add("TRAILER!!!", 0, []);
            return [.. _out];
        }

        private void Pad()
        {
            while (_out.Count % 4 != 0)
                _out.Add(0);
        }
    }
}
