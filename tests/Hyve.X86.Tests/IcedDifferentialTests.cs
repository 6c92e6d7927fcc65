// Differential tests of the decoder against Iced: random windows, a systematic opcode sweep, real binaries.
using System;
using Hyve.TestSupport;
using Hyve.X86.Decoding;
using Iced.Intel;
using Xunit;
using Xunit.Abstractions;
using HDecoder = Hyve.X86.Decoding.Decoder;
using HInstruction = Hyve.X86.Decoding.Instruction;

namespace Hyve.X86.Tests;

public sealed class IcedDifferentialTests(ITestOutputHelper output)
{
    /// <summary>Runs both decoders over <paramref name="buf"/> at each given start, comparing everything.</summary>
    private static void Run(byte[] buf, int bitness, ulong baseIp, IcedComparer.Report report, Func<int, int> next, int start, int end, int window)
    {
        var reader = new ByteArrayCodeReader(buf);
        var iced = Iced.Intel.Decoder.Create(bitness, reader);
        for (int pos = start; pos < end;)
        {
            reader.Position = pos;
            iced.IP = baseIp + (ulong)pos;
            iced.Decode(out Iced.Intel.Instruction ii);
            int len = Math.Min(window, buf.Length - pos);
            ReadOnlySpan<byte> span = buf.AsSpan(pos, len);
            HDecoder.Decode(span, (Bitness)bitness, out HInstruction hi);
            report.Compared++;
            string? diff = IcedComparer.Diff(in ii, iced.LastError, in hi, span, bitness, baseIp + (ulong)pos);
            if (diff != null)
                report.Add(bitness, span, in ii, in hi, diff);
            pos = next(ii.Code == Code.INVALID ? pos + 1 : pos + ii.Length);
        }
    }

    [Theory]
    [InlineData(16)]
    [InlineData(32)]
    [InlineData(64)]
    public void RandomWindowsAgreeWithIced(int bitness)
    {
        int seed = TestEnvironment.Int("HYVE_SEED", 20261121) + bitness;
        int windows = TestEnvironment.Int("HYVE_DECODER_WINDOWS", 1_000_000);
        output.WriteLine($"seed {seed} (HYVE_SEED base), {windows} windows of 15 bytes, {bitness}-bit");
        var rng = new Random(seed);
        byte[] buf = new byte[windows * 15 + 15];
        rng.NextBytes(buf);
        var report = new IcedComparer.Report();
        // One decode per window: each window starts at a multiple of 15 and sees only its 15 bytes.
        for (int w = 0; w < windows; w++)
            Run(buf, bitness, 0x1000, report, _ => int.MaxValue, w * 15, w * 15 + 1, 15);
        output.WriteLine(report.Summary());
        Assert.True(report.Mismatches == 0, report.Summary());
        Assert.Equal(windows, report.Compared);
    }

    [Theory]
    [InlineData(16)]
    [InlineData(32)]
    [InlineData(64)]
    public void OpcodeSweepAgreesWithIced(int bitness)
    {
        // Every opcode of every map, behind each mandatory/legacy prefix, with every ModRM byte.
        byte[][] prefixSets = bitness == 64
            ? [[], [0x66], [0xF3], [0xF2], [0xF0], [0x48], [0x4F], [0x66, 0x48], [0xF3, 0x48], [0x67]]
            : [[], [0x66], [0xF3], [0xF2], [0xF0], [0x67]];
        byte[][] maps = [[], [0x0F], [0x0F, 0x38], [0x0F, 0x3A]];
        byte[] tail = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE];
        byte[] buf = new byte[15];
        var report = new IcedComparer.Report();
        foreach (byte[] pfx in prefixSets)
        {
            foreach (byte[] map in maps)
            {
                for (int op = 0; op < 256; op++)
                {
                    for (int modrm = 0; modrm < 256; modrm++)
                    {
                        int n = 0;
                        foreach (byte p in pfx) buf[n++] = p;
                        foreach (byte m in map) buf[n++] = m;
                        buf[n++] = (byte)op;
                        buf[n++] = (byte)modrm;
                        for (int k = 0; n < 15; k++) buf[n++] = tail[k];
                        Run(buf, bitness, 0x7000, report, _ => int.MaxValue, 0, 1, 15);
                    }
                }
            }
        }
        output.WriteLine(report.Summary());
        Assert.True(report.Mismatches == 0, report.Summary());
    }

    [Fact]
    public void RealBinariesAgreeWithIced()
    {
        int binaries = 0;
        var report = new IcedComparer.Report();
        foreach (string path in ElfText.KnownBinaries())
        {
            var text = ElfText.Read(path);
            if (text == null)
            {
                output.WriteLine($"absent: {path}");
                continue;
            }
            binaries++;
            long before = report.Compared;
            (byte[] bytes, ulong addr) = (text.Value.Bytes, text.Value.Address);
            Run(bytes, 64, addr, report, p => p, 0, bytes.Length, 15);
            output.WriteLine($"{path}: .text {bytes.Length} bytes, {report.Compared - before} instructions compared");
        }
        output.WriteLine(report.Summary());
        Assert.True(binaries >= 2, "need at least two real binaries (libcoreclr.so, cc1)");
        Assert.True(report.Mismatches == 0, report.Summary());
    }
}
