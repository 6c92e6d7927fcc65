// How much memory this host can give a guest, read before the guest's RAM is allocated (and
// cleared, which touches every page), so an impossible --memory is refused at once.
using System;
using System.Globalization;
using System.IO;

namespace Hyve.Cli;

/// <summary>The host's available memory.</summary>
internal static class HostMemory
{
    /// <summary>MiB the host can give now: Linux's MemAvailable, bounded by the process's memory
    /// limit (a container's); null where neither can be read.</summary>
    public static long? AvailableMiB()
    {
        long? available = null;
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)
                    && long.TryParse(line.AsSpan(13).Trim().TrimEnd("kB").Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long kib))
                {
                    available = kib >> 10;
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        long limit = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes >> 20;
        return limit > 0 ? Math.Min(available ?? limit, limit) : available;
    }
}
