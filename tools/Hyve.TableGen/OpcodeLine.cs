// One parsed line of the opcode data files: where it sits in the opcode space and what it decodes to.
using System;
using System.Collections.Generic;
using System.Globalization;

namespace Hyve.TableGen;

/// <summary>The dimensions a decoding tree splits on, in the order the decoder tests them.</summary>
internal enum Dim { Reg, Mod, Rm, Pfx, W, B, Mode, Os, As, L }

/// <summary>A parsed data-file line.</summary>
internal sealed class OpcodeLine
{
    public required string File { get; init; }
    public required int LineNumber { get; init; }
    public required int Map { get; init; }
    public required int[] Opcodes { get; init; }
    public required string Mnemonic { get; init; }
    public required string[] Operands { get; init; }
    public required HashSet<string> Flags { get; init; }
    public string? MemSize { get; set; }

    /// <summary>Condition per dimension; -1 = any. Values: Reg/Rm 0-7; Mod 0=mem 1=reg; Pfx 0=NP 1=66 2=F3 3=F2 4=NF;
    /// W/B 0/1; Mode 0=!64 1=64; Os/As 0=16 1=32 2=64; L (VEX.L) 0/1.</summary>
    public int[] Cond { get; } = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1];

    public string Where => $"{File}:{LineNumber}";

    public static readonly string[] MapNames = ["", "0F", "0F38", "0F3A", "0F0F", "V0F", "V0F38", "V0F3A"];

    /// <summary>Whether the line is in one of the VEX maps (5-7).</summary>
    public bool IsVex => Map >= 5;

    /// <summary>Parses one non-empty, comment-stripped line.</summary>
    public static OpcodeLine Parse(string file, int lineNo, string text)
    {
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
            throw new FormatException($"{file}:{lineNo}: missing ':'");
        string[] left = text[..colon].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string right = text[(colon + 1)..];
        string flagsText = "";
        int bar = right.IndexOf('|', StringComparison.Ordinal);
        if (bar >= 0)
        {
            flagsText = right[(bar + 1)..];
            right = right[..bar];
        }
        string[] rt = right.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (rt.Length is < 1 or > 2)
            throw new FormatException($"{file}:{lineNo}: expected 'mnemonic [operands]' after ':'");
        if (left.Length < 1)
            throw new FormatException($"{file}:{lineNo}: missing opcode");

        (int map, int[] ops) = ParseOpcode(left[0], file, lineNo);
        var operands = new List<string>();
        string? memSize = null;
        if (rt.Length == 2)
        {
            foreach (string o in rt[1].Split(','))
            {
                int c = o.IndexOf(':', StringComparison.Ordinal);
                if (c >= 0)
                {
                    memSize = o[(c + 1)..];
                    operands.Add(o[..c]);
                }
                else
                {
                    operands.Add(o);
                }
            }
        }
        if (operands.Count > 4)
            throw new FormatException($"{file}:{lineNo}: more than four operands");
        var line = new OpcodeLine
        {
            File = file,
            LineNumber = lineNo,
            Map = map,
            Opcodes = ops,
            Mnemonic = rt[0].ToLowerInvariant(),
            Operands = operands.ToArray(),
            Flags = new HashSet<string>(flagsText.Split(' ', StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal),
            MemSize = memSize,
        };
        for (int i = 1; i < left.Length; i++)
            line.ParseCondition(left[i]);
        return line;
    }

    private static (int Map, int[] Ops) ParseOpcode(string tok, string file, int lineNo)
    {
        tok = tok.ToUpperInvariant();
        int map = 0;
        foreach ((string prefix, int m) in new[] { ("V0F38", 6), ("V0F3A", 7), ("V0F", 5), ("0F38", 2), ("0F3A", 3), ("0F0F", 4), ("0F", 1) })
        {
            if (tok.Length > prefix.Length && tok.StartsWith(prefix, StringComparison.Ordinal))
            {
                map = m;
                tok = tok[prefix.Length..];
                break;
            }
        }
        string[] range = tok.Split('-');
        int lo = int.Parse(range[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        int hi = range.Length == 2 ? int.Parse(range[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture) : lo;
        if (range.Length > 2 || lo > hi || hi > 0xFF || range[0].Length != 2)
            throw new FormatException($"{file}:{lineNo}: bad opcode '{tok}'");
        var ops = new int[hi - lo + 1];
        for (int i = 0; i < ops.Length; i++)
            ops[i] = lo + i;
        return (map, ops);
    }

    private void ParseCondition(string c)
    {
        if (c.Length == 2 && c[0] == '/' && c[1] is >= '0' and <= '7')
        {
            Set(Dim.Reg, c[1] - '0');
            return;
        }
        int eq = c.IndexOf('=', StringComparison.Ordinal);
        if (eq < 0)
            throw new FormatException($"{Where}: bad condition '{c}'");
        string k = c[..eq], v = c[(eq + 1)..];
        switch (k)
        {
            case "mod": Set(Dim.Mod, v == "mem" ? 0 : v == "reg" ? 1 : Bad(c)); break;
            case "rm": Set(Dim.Rm, Digit(v, 7, c)); Set(Dim.Mod, 1); break;
            case "pfx": Set(Dim.Pfx, Array.IndexOf(new[] { "NP", "66", "F3", "F2", "NF" }, v) is int p and >= 0 ? p : Bad(c)); break;
            case "w": Set(Dim.W, Digit(v, 1, c)); break;
            case "b": Set(Dim.B, Digit(v, 1, c)); break;
            case "mode": Set(Dim.Mode, v == "64" ? 1 : v == "!64" ? 0 : Bad(c)); break;
            case "os": Set(Dim.Os, Size(v, c)); break;
            case "as": Set(Dim.As, Size(v, c)); break;
            case "l": Set(Dim.L, Digit(v, 1, c)); break;
            default: Bad(c); break;
        }
    }

    private int Size(string v, string c) => v switch { "16" => 0, "32" => 1, "64" => 2, _ => Bad(c) };

    private int Digit(string v, int max, string c) => v.Length == 1 && v[0] >= '0' && v[0] <= '0' + max ? v[0] - '0' : Bad(c);

    private int Bad(string c) => throw new FormatException($"{Where}: bad condition '{c}'");

    private void Set(Dim d, int v)
    {
        if (Cond[(int)d] >= 0 && Cond[(int)d] != v)
            throw new FormatException($"{Where}: conflicting {d} conditions");
        Cond[(int)d] = v;
    }
}
