// Real binaries on the machine whose code sections feed the differential tests.
using System.Collections.Generic;
using System.IO;
using Hyve.Boot;

namespace Hyve.X86.Tests;

/// <summary>Locates real x86-64 code on the machine.</summary>
public static class ElfText
{
    /// <summary>The .text of <paramref name="path"/>, or null when the file is absent.</summary>
    public static ElfSection? Read(string path) => File.Exists(path) ? ElfFile.ReadSection(File.ReadAllBytes(path), ".text") : null;

    /// <summary>The .NET runtime's libcoreclr.so and gcc's cc1, where present.</summary>
    public static string[] KnownBinaries()
    {
        var list = new List<string>
        {
            Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "libcoreclr.so"),
        };
        const string gccDir = "/usr/lib/gcc/x86_64-linux-gnu";
        if (Directory.Exists(gccDir))
        {
            foreach (string d in Directory.GetDirectories(gccDir))
            {
                if (File.Exists(Path.Combine(d, "cc1")))
                {
                    list.Add(Path.Combine(d, "cc1"));
                    break;
                }
            }
        }
        return list.ToArray();
    }
}
