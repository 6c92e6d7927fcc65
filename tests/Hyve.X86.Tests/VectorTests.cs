// Decoder vectors from Vectors/decoder.txt: field-by-field agreement with Iced (the oracle), exact
// length, and the Intel text (a snapshot of Hyve's own formatter, which has no external oracle).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using Hyve.X86.Decoding;
using Xunit;

namespace Hyve.X86.Tests;

public sealed class VectorTests
{
    private const ulong Ip = 0; // the vectors were written for an instruction at address 0

    public static IEnumerable<object[]> Vectors()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Vectors", "decoder.txt");
        string[] lines = File.ReadAllLines(path);
        for (int i = 0; i < lines.Length; i++)
        {
            string l = lines[i].Trim();
            if (l.Length == 0 || l[0] == '#')
                continue;
            string[] parts = l.Split('|', StringSplitOptions.TrimEntries);
            yield return [i + 1, int.Parse(parts[0], CultureInfo.InvariantCulture), parts[1], parts[2]];
        }
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void VectorDecodesAsExpected(int line, int bits, string hex, string text)
    {
        byte[] bytes = Convert.FromHexString(hex);
        string? diff = IcedComparer.Compare(bytes, bits, Ip, out var iced, out Instruction ours);
        Assert.True(diff == null, $"line {line}: differs from Iced ({iced.Code}): {diff}");
        if (text == "(bad)")
        {
            Assert.False(ours.IsValid, $"line {line}: expected an invalid encoding");
            Assert.Equal(Iced.Intel.Code.INVALID, iced.Code);
            return;
        }
        Assert.True(ours.Length == bytes.Length, $"line {line}: length {ours.Length}, vector has {bytes.Length} bytes");
        Assert.Equal(text, Formatter.Format(in ours, Ip));
    }

    [Fact]
    public void LengthLimitAndTruncationHaveTheirOwnStatus()
    {
        Assert.Equal(DecodeStatus.Ok, Decoder.Decode(Convert.FromHexString("666666666666666666666666666690"), Bitness.Bits64, out Instruction nop));
        Assert.Equal(15, nop.Length);
        Assert.Equal(DecodeStatus.TooLong, Decoder.Decode(Convert.FromHexString("66666666666666666666666666666690"), Bitness.Bits64, out _));
        Assert.Equal(DecodeStatus.TooLong, Decoder.Decode(Convert.FromHexString("2626262626C784001122334455667788"), Bitness.Bits32, out _));
        Assert.Equal(DecodeStatus.NoMoreBytes, Decoder.Decode(Convert.FromHexString("488B0425"), Bitness.Bits64, out _));
        Assert.Equal(DecodeStatus.NoMoreBytes, Decoder.Decode(ReadOnlySpan<byte>.Empty, Bitness.Bits64, out _));
    }

    [Fact]
    public void VectorsCoverEveryMapInEveryMode()
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (object[] v in Vectors())
        {
            string hex = (string)v[2];
            int bits = (int)v[1];
            string stripped = StripPrefixes(hex, bits);
            string map = stripped.StartsWith("0F38", StringComparison.Ordinal) ? "0F38"
                : stripped.StartsWith("0F3A", StringComparison.Ordinal) ? "0F3A"
                : stripped.StartsWith("0F0F", StringComparison.Ordinal) ? "3DNow"
                : stripped.StartsWith("0F", StringComparison.Ordinal) ? "0F"
                : stripped.Length >= 2 && stripped[0] == 'D' && stripped[1] >= '8' ? "x87"
                : stripped.StartsWith("C4", StringComparison.Ordinal) || stripped.StartsWith("C5", StringComparison.Ordinal) ? "VEX"
                : "1";
            seen.Add($"{bits}:{map}");
        }
        foreach (int bits in new[] { 16, 32, 64 })
        {
            foreach (string map in new[] { "1", "0F", "0F38", "0F3A", "3DNow", "x87", "VEX" })
                Assert.Contains($"{bits}:{map}", seen);
        }
    }

    private static string StripPrefixes(string hex, int bits)
    {
        int i = 0;
        while (i + 2 <= hex.Length)
        {
            string b = hex.Substring(i, 2);
            bool prefix = b is "66" or "67" or "F0" or "F2" or "F3" or "2E" or "36" or "3E" or "26" or "64" or "65"
                || (bits == 64 && b[0] == '4');
            if (!prefix)
                break;
            i += 2;
        }
        return hex[i..];
    }
}
