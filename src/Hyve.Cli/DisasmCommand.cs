// `hyve disasm`: one instruction per line (offset, bytes, Intel syntax); invalid bytes resume at the next byte.
using System;
using System.Globalization;
using System.IO;
using System.Text;
using Hyve.Boot;
using Hyve.X86.Decoding;

namespace Hyve.Cli;

/// <summary>The disassembler subcommand.</summary>
internal static class DisasmCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        int bits = 0;
        long offset = 0;
        long length = -1;
        string? section = null;
        string? file = null;
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            switch (a)
            {
                case "--bits":
                    long b = Arguments.Number("disasm", Arguments.Value("disasm", args, ref i, a), a);
                    if (b is not (16 or 32 or 64))
                        throw new UsageException("--bits must be 16, 32 or 64");
                    bits = (int)b;
                    break;
                case "--offset": offset = Arguments.Number("disasm", Arguments.Value("disasm", args, ref i, a), a); break;
                case "--length": length = Arguments.Number("disasm", Arguments.Value("disasm", args, ref i, a), a); break;
                case "--section": section = Arguments.Value("disasm", args, ref i, a); break;
                default:
                    if (a.StartsWith('-'))
                        throw new UsageException($"disasm: unknown option '{a}'");
                    if (file != null)
                        throw new UsageException("disasm: only one FILE");
                    file = a;
                    break;
            }
        }
        if (bits == 0)
            throw new UsageException("disasm: --bits 16|32|64 is required");
        if (file == null)
            throw new UsageException("disasm: FILE is required");
        if (!File.Exists(file))
            throw new FileNotFoundException($"{file}: no such file");

        byte[] image = File.ReadAllBytes(file);
        ulong baseAddress = 0;
        if (section != null)
        {
            ElfSection s = ElfFile.ReadSection(image, section);
            image = s.Bytes;
            baseAddress = s.Address;
        }
        if (offset < 0 || offset > image.Length)
            throw new UsageException($"disasm: --offset {offset} is outside the {image.Length}-byte input");
        long count = image.Length - offset;
        if (length >= 0)
            count = Math.Min(count, length);
        using var output = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false), 1 << 16);
        Write(image.AsSpan((int)offset, (int)count), (Bitness)bits, baseAddress + (ulong)offset, output);
        return 0;
    }

    /// <summary>Disassembles <paramref name="code"/> starting at address <paramref name="ip"/>.</summary>
    public static void Write(ReadOnlySpan<byte> code, Bitness bitness, ulong ip, TextWriter w)
    {
        var sb = new StringBuilder(128);
        int pos = 0;
        while (pos < code.Length)
        {
            Hyve.X86.Decoding.Decoder.Decode(code[pos..], bitness, out Instruction insn);
            int len = insn.Status is DecodeStatus.Ok or DecodeStatus.Unsupported ? insn.Length : 1;
            sb.Clear();
            sb.Append(CultureInfo.InvariantCulture, $"{ip + (ulong)pos,8:x}  ");
            int start = sb.Length;
            for (int k = 0; k < len; k++)
                sb.Append(CultureInfo.InvariantCulture, $"{code[pos + k]:x2} ");
            sb.Append(' ', Math.Max(1, 31 - (sb.Length - start)));
            Formatter.Format(in insn, ip + (ulong)pos, sb);
            w.WriteLine(sb.ToString());
            pos += len;
        }
    }
}
