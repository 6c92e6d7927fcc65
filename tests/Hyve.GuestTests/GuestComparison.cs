// One run's result lines against a reference run's: which checks agree, which did not run on one
// side (skipped: not a match), which differ. A comparison holds only when something was compared,
// nothing differs and neither run was stopped by its time limit.
using System;
using System.Collections.Generic;

namespace Hyve.GuestTests;

/// <summary>The outcome of comparing a run with a reference run, check by check.</summary>
public sealed record GuestComparison(int Matched, int Skipped, IReadOnlyList<string> Differences, IReadOnlyList<string> TimedOut)
{
    /// <summary>Whether the run agrees with the reference: at least one check compared, no
    /// difference, no time-out on either side.</summary>
    public bool Holds => Matched > 0 && LinesAgree && TimedOut.Count == 0;

    /// <summary>Whether every line either run printed has its counterpart (whatever the
    /// time-outs): true for two runs that stopped at the same check.</summary>
    public bool LinesAgree => Differences.Count == 0;

    /// <summary>The counts and the differences, for the test log and the failure message.</summary>
    public string Summary =>
        $"{Matched} matched, {Skipped} skipped on one side (not compared), {Differences.Count} differ" +
        (Matched == 0 ? " (nothing was compared)" : "") +
        (TimedOut.Count > 0 ? $"; {string.Join(" and ", TimedOut)} timed out" : "") +
        (Differences.Count > 0 ? ":\n  " + string.Join("\n  ", Differences) : "");

    /// <summary>Compares <paramref name="run"/> with <paramref name="reference"/> line by line.</summary>
    public static GuestComparison Of(GuestRun reference, GuestRun run, string referenceName = "reference", string runName = "run")
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(run);
        var differences = new List<string>();
        var timedOut = new List<string>();
        if (reference.TimedOut)
            timedOut.Add(referenceName);
        if (run.TimedOut)
            timedOut.Add(runName);
        IReadOnlyList<string> want = reference.ResultsWithDirectives, got = run.ResultsWithDirectives;
        int matched = 0, skipped = 0;
        for (int i = 0; i < Math.Max(want.Count, got.Count); i++)
        {
            string? w = i < want.Count ? want[i] : null, g = i < got.Count ? got[i] : null;
            if (w == null || g == null)
            {
                differences.Add(w == null ? $"only {runName}: {g}" : $"only {referenceName}: {w}");
                continue;
            }
            // A check that one machine skipped still has to be the same check on both.
            if (GuestRun.IsSkip(w) || GuestRun.IsSkip(g))
            {
                if (Check(w) == Check(g))
                {
                    skipped++;
                    continue;
                }
            }
            else if (w == g)
            {
                matched++;
                continue;
            }
            differences.Add($"{referenceName}: {w} | {runName}: {g}");
        }
        return new GuestComparison(matched, skipped, differences, timedOut);
    }

    // "ok 3 - name # SKIP why" -> "3 - name": the check's number and name, whatever its result.
    private static string Check(string line)
    {
        int start = line.IndexOf(' ', line.StartsWith("not ", StringComparison.Ordinal) ? 4 : 0) + 1;
        int end = line.IndexOf(" # ", StringComparison.Ordinal);
        return end < 0 ? line[start..] : line[start..end];
    }
}
