// The lines of a kernel's console log that say something went wrong: a Linux test fails on any
// of them, not only on a missing line it waits for.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;

namespace Hyve.TestSupport;

/// <summary>Finds kernel error lines in a console log.</summary>
public static partial class KernelLog
{
    /// <summary>The lines of <paramref name="log"/> that report a kernel error: a stuck or
    /// unhandled interrupt, a BUG, WARNING, oops or panic, a call trace, a time-out, a driver
    /// probe that failed. Text from <paramref name="expectedEnd"/> on (a panic a test provokes on
    /// purpose) is not looked at.</summary>
    public static IReadOnlyList<string> Errors(string log, string? expectedEnd = null)
    {
        ArgumentNullException.ThrowIfNull(log);
        if (expectedEnd != null && log.IndexOf(expectedEnd, StringComparison.Ordinal) is int at and >= 0)
            log = log[..at];
        return [.. log.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => ErrorLine().IsMatch(l))];
    }

    [GeneratedRegex(@"nobody cared|BUG:|WARNING:|Call Trace|Oops|Kernel panic|timed out|probe .*failed|failed with error|\bfailed to probe\b|Unable to handle|general protection fault|soft lockup|hung_task|blocked for more than")]
    private static partial Regex ErrorLine();
}
