// The `hyve` command as a user meets it: one-line errors with exit status 2 for a bad command
// line and 1 for bad input, and the verify command's summary line and status.
using System.IO;
using Xunit;

namespace Hyve.Cli.Tests;

public sealed class CommandTests
{
    private static (int Code, string Out, string Err) Hyve(params string[] args) => RunCommandTests.Hyve(args);

    private static void OneLineError(string err, string contains)
    {
        Assert.StartsWith("hyve: ", err);
        Assert.Contains(contains, err);
        Assert.Single(err.TrimEnd().Split('\n'));
    }

    [Fact]
    public void BadCommandLinesAreUsageErrors()
    {
        var (code, _, err) = Hyve("frobnicate");
        Assert.Equal(2, code);
        OneLineError(err, "unknown command");
        (code, _, err) = Hyve("disasm", "--bits", "17", "x");
        Assert.Equal(2, code);
        OneLineError(err, "--bits");
        (code, _, err) = Hyve("verify", "emulator", "--cases", "lots");
        Assert.Equal(2, code);
        OneLineError(err, "--cases");
        (code, _, err) = Hyve("verify", "cpu");
        Assert.Equal(2, code);
        OneLineError(err, "emulator");
    }

    [Fact]
    public void MissingInputIsAnInputError()
    {
        var (code, _, err) = Hyve("disasm", "--bits", "64", "/nonexistent/file");
        Assert.Equal(1, code);
        OneLineError(err, "no such file");
    }

    [Fact]
    public void DisassemblesRawBytes()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(file, [0x48, 0x89, 0xC8, 0x0F, 0x0B]);
            var (code, output, _) = Hyve("disasm", "--bits", "64", file);
            Assert.Equal(0, code);
            Assert.Contains("mov rax,rcx", output);
            Assert.Contains("ud2", output);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void VerifyEmulatorEndsWithItsSummary()
    {
        var (code, output, _) = Hyve("verify", "emulator", "--cases", "300", "--seed", "5");
        Assert.Equal(0, code);
        Assert.EndsWith("300 passed, 0 failed", output.TrimEnd());
        Assert.Contains("seed 5", output);
    }
}
