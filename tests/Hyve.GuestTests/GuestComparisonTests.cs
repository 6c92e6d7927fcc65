// The comparison the guest suite uses: runs with nothing in them, runs stopped by their time
// limit and checks skipped on one side must not count as agreement.
using Xunit;

namespace Hyve.GuestTests;

public sealed class GuestComparisonTests
{
    private static GuestRun Run(string output, int status = 1) => new(output, status);

    [Fact]
    public void TwoEmptyRunsDoNotAgree()
    {
        GuestComparison c = GuestComparison.Of(Run(""), Run(""));
        Assert.False(c.Holds);
        Assert.Equal(0, c.Matched);
        Assert.Contains("nothing was compared", c.Summary, System.StringComparison.Ordinal);
    }

    [Fact]
    public void ATimedOutRunOnEitherSideDoesNotAgree()
    {
        const string Lines = "ok 1 - a\nok 2 - b\n";
        GuestComparison referenceTimedOut = GuestComparison.Of(Run(Lines + "\n[qemu: timed out]\n", 124), Run(Lines));
        Assert.False(referenceTimedOut.Holds);
        Assert.True(referenceTimedOut.LinesAgree); // the same lines up to where it stopped
        Assert.Contains("reference timed out", referenceTimedOut.Summary, System.StringComparison.Ordinal);
        Assert.False(GuestComparison.Of(Run(Lines), Run(Lines, 124)).Holds);
        // The same lines, both complete: they agree.
        GuestComparison c = GuestComparison.Of(Run(Lines), Run(Lines));
        Assert.True(c.Holds);
        Assert.Equal((2, 0), (c.Matched, c.Skipped));
    }

    [Fact]
    public void ASkippedCheckIsCountedApartNotAsAMatch()
    {
        GuestComparison c = GuestComparison.Of(
            Run("ok 1 - a\nok 2 - b # SKIP no POPCNT on this CPU\n"),
            Run("ok 1 - a\nok 2 - b\n"));
        Assert.Equal((1, 1), (c.Matched, c.Skipped));
        Assert.True(c.Holds);
        // Only skips: nothing compared.
        GuestComparison none = GuestComparison.Of(Run("ok 1 - b # SKIP no device here\n"), Run("ok 1 - b\n"));
        Assert.Equal((0, 1), (none.Matched, none.Skipped));
        Assert.False(none.Holds);
        // A skip still names the same check on both sides.
        Assert.False(GuestComparison.Of(Run("ok 1 - a\nok 2 - b # SKIP x\n"), Run("ok 1 - a\nok 2 - c\n")).Holds);
    }

    [Fact]
    public void DifferentOrMissingLinesDoNotAgree()
    {
        Assert.False(GuestComparison.Of(Run("ok 1 - a\nok 2 - b\n"), Run("ok 1 - a\nnot ok 2 - b\n")).Holds);
        Assert.False(GuestComparison.Of(Run("ok 1 - a\nok 2 - b\n"), Run("ok 1 - a\n")).Holds);
        Assert.False(GuestComparison.Of(Run("ok 1 - a\n"), Run("ok 1 - a\nok 2 - b\n")).Holds);
    }
}
