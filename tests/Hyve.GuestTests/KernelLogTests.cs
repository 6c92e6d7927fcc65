// The kernel-log check the Linux tests rely on: it must find the error lines a real boot printed
// before the SCI override existed, and leave a clean log and a provoked panic alone.
using Hyve.TestSupport;
using Xunit;

namespace Hyve.GuestTests;

public sealed class KernelLogTests
{
    // From a Debian 6.1 boot on Hyve whose MADT lacked the SCI's override.
    private const string StuckSci = """
        [    0.218514] ACPI: 1 ACPI AML tables successfully acquired and loaded
        [    0.218556] irq 9: nobody cared (try booting with the "irqpoll" option)
        [    0.218560] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0-57-cloud-amd64 #1  Debian 6.1.192-3
        [    0.218569] Call Trace:
        [    0.218573]  <IRQ>
        """;

    [Fact]
    public void FindsAnInterruptNobodyCaredFor()
    {
        Assert.Equal(
            ["[    0.218556] irq 9: nobody cared (try booting with the \"irqpoll\" option)", "[    0.218569] Call Trace:"],
            KernelLog.Errors(StuckSci));
    }

    [Theory]
    [InlineData("[    1.000000] WARNING: CPU: 0 PID: 1 at kernel/foo.c:12 bar+0x1/0x2")]
    [InlineData("[    1.000000] BUG: kernel NULL pointer dereference, address: 0000000000000000")]
    [InlineData("[    1.000000] Oops: 0000 [#1] PREEMPT SMP NOPTI")]
    [InlineData("[    1.000000] Kernel panic - not syncing: Attempted to kill init!")]
    [InlineData("[    1.000000] virtio_blk: probe of virtio0 failed with error -22")]
    [InlineData("[    1.000000] ata1: SRST failed (errno=-16) timed out")]
    public void FindsEachKindOfError(string line) =>
        Assert.Equal([line], KernelLog.Errors("[    0.9] fine\n" + line + "\r\n[    1.1] fine too\n"));

    [Fact]
    public void LeavesACleanLogAndAProvokedPanicAlone()
    {
        const string Log = """
            [    0.300224] i8042: Probing ports directly.
            [    1.471606] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)
            [    1.471620] Call Trace:
            """;
        Assert.Empty(KernelLog.Errors(Log, expectedEnd: "Kernel panic - not syncing: VFS"));
        Assert.Equal(2, KernelLog.Errors(Log).Count);
    }
}
