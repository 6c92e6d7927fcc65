// Decode throughput over real x86-64 code (libcoreclr.so's .text): Hyve's decoder against Iced in one run.
using System;
using System.IO;
using BenchmarkDotNet.Attributes;
using Hyve.Boot;
using Hyve.X86.Decoding;

namespace Hyve.Bench;

[MemoryDiagnoser]
public class DecoderBench
{
    private byte[] _code = [];
    private ulong _address;
    private global::Iced.Intel.ByteArrayCodeReader _reader = null!;
    private global::Iced.Intel.Decoder _iced = null!;

    [GlobalSetup]
    public void Setup()
    {
        string path = Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "libcoreclr.so");
        ElfSection text = ElfFile.ReadSection(File.ReadAllBytes(path), ".text");
        _code = text.Bytes;
        _address = text.Address;
        _reader = new global::Iced.Intel.ByteArrayCodeReader(_code);
        _iced = global::Iced.Intel.Decoder.Create(64, _reader, _address);
        Console.WriteLine($"// libcoreclr.so .text: {_code.Length} bytes");
    }

    [Benchmark(Baseline = true, Description = "Iced")]
    public int IcedDecode()
    {
        _reader.Position = 0;
        _iced.IP = _address;
        int n = 0;
        while (_reader.CanReadByte)
        {
            _iced.Decode(out global::Iced.Intel.Instruction insn);
            n += insn.Length;
        }
        return n;
    }

    [Benchmark(Description = "Hyve")]
    public int HyveDecode()
    {
        ReadOnlySpan<byte> code = _code;
        int pos = 0;
        int n = 0;
        while (pos < code.Length)
        {
            Decoder.Decode(code[pos..], Bitness.Bits64, out Instruction insn);
            int len = insn.Status == DecodeStatus.Ok || insn.Status == DecodeStatus.Unsupported ? insn.Length : 1;
            pos += len;
            n += len;
        }
        return n;
    }
}
