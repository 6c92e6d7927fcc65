// Runs Vectors/vie-modes.txt: one instruction per line in a given mode, with its segments,
// registers and memory, checked for the device requests, registers, flags, RAM and faults.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Hyve.TestSupport;
using Hyve.Vmm.Emulation;
using Hyve.X86;
using Xunit;

namespace Hyve.Vmm.Tests;

public sealed class VieVectorTests
{
    private static readonly string[] GprNames =
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

    private static readonly Dictionary<string, Register> SegmentNames = new()
    {
        ["es"] = Register.ES,
        ["cs"] = Register.CS,
        ["ss"] = Register.SS,
        ["ds"] = Register.DS,
        ["fs"] = Register.FS,
        ["gs"] = Register.GS,
    };

    private static readonly Dictionary<string, byte> Vectors = new()
    {
        ["DE"] = ExceptionVector.DE,
        ["UD"] = ExceptionVector.UD,
        ["NM"] = ExceptionVector.NM,
        ["SS"] = ExceptionVector.SS,
        ["GP"] = ExceptionVector.GP,
        ["PF"] = ExceptionVector.PF,
        ["AC"] = ExceptionVector.AC,
    };

    public static IEnumerable<object[]> Lines() =>
        File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Vectors", "vie-modes.txt"))
            .Select((text, i) => (text, i))
            .Where(l => l.text.Length > 0 && !l.text.StartsWith('#'))
            .Select(l => new object[] { l.i + 1, l.text });

    private static ulong Hex(string s) => ulong.Parse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);

    [Theory]
    [MemberData(nameof(Lines))]
    public void Vector(int line, string text)
    {
        string[] parts = text.Split('|', StringSplitOptions.TrimEntries);
        Assert.True(parts.Length == 4, $"line {line}: four fields expected");
        var cpu = new MockCpu { Rip = 0 };
        var memory = new MockGuestMemory();
        var half = new MockDeviceHalf();
        (PagingState paging, Segment cs, Segment data) = parts[0] switch
        {
            "real" => (new PagingState(0, 0, 0, 0, 0), new Segment(0, 0, 0xFFFF, 0x9B), new Segment(0, 0, 0xFFFF, 0x93)),
            "pm16" => (new PagingState(PagingState.Cr0PE, 0, PagingState.Cr4OSFXSR, 0, 0), new Segment(8, 0, 0xFFFF, 0x9B), Segment.FlatData),
            "pm32" => (new PagingState(PagingState.Cr0PE, 0, PagingState.Cr4OSFXSR, 0, 0), Segment.Code32, Segment.FlatData),
            "compat" => (PagingState.Flat, Segment.Code32, Segment.FlatData),
            "long" => (PagingState.Flat, Segment.Code64, Segment.FlatData),
            _ => throw new InvalidDataException($"line {line}: unknown mode {parts[0]}"),
        };
        foreach (Register s in SegmentNames.Values)
            cpu.Segments[s] = s == Register.CS ? cs : data;
        ulong at = 0;
        foreach (string token in parts[2].Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] kv = token.Split('=', 2);
            string key = kv[0], value = kv[1];
            int gpr = Array.IndexOf(GprNames, key);
            if (gpr >= 0)
                cpu.Gpr[gpr] = Hex(value);
            else if (SegmentNames.TryGetValue(key, out Register seg))
            {
                string[] f = value.Split(':');
                cpu.Segments[seg] = new Segment(f.Length > 3 ? (ushort)Hex(f[3]) : (ushort)0, Hex(f[0]), (uint)Hex(f[1]), (uint)Hex(f[2]));
            }
            else
            {
                switch (key)
                {
                    case "rip": cpu.Rip = Hex(value); break;
                    case "flags": cpu.Rflags = Hex(value); break;
                    case "at": at = Hex(value); break;
                    case "cpl": paging = paging with { Cpl = (int)Hex(value) }; break;
                    case "am": paging = paging with { Cr0 = paging.Cr0 | PagingState.Cr0AM }; break;
                    case "dev":
                    case "ram":
                        string[] f = value.Split(':');
                        byte[] bytes = Convert.FromHexString(f[1]);
                        for (int i = 0; i < bytes.Length; i++)
                        {
                            if (key == "ram")
                                memory.Ram[(int)Hex(f[0]) + i] = bytes[i];
                            else
                                half.Store(Hex(f[0]) + (ulong)i, bytes[i], 1);
                        }
                        break;
                    default: throw new InvalidDataException($"line {line}: unknown input {key}");
                }
            }
        }
        ulong[] before = (ulong[])cpu.Gpr.Clone();
        ulong ripBefore = cpu.Rip;
        byte[] insn = Convert.FromHexString(parts[1]);

        var vie = new Vie();
        vie.Begin(at, at, glaValid: true, paging, cpu, memory, insn);
        VieStatus st;
        int passes = 0;
        do
        {
            st = vie.Emulate(cpu, new MockVmmDevices(), memory);
            if (st == VieStatus.NeedsDevice)
                Assert.Equal(FulfillResult.Ok, vie.Fulfill(half.Answer(vie.Pending)));
            Assert.True(++passes < 1000, $"line {line}: no end");
        }
        while (st is VieStatus.NeedsDevice or VieStatus.Repeat);

        var requests = new List<MmioAccess>();
        var expectRegs = new Dictionary<int, ulong>();
        ulong? expectRip = null;
        foreach (string token in parts[3].Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (token == "fallback")
            {
                Assert.True(st == VieStatus.Fallback, $"line {line}: {st}, expected a fallback");
                return;
            }
            if (token.StartsWith("fault=", StringComparison.Ordinal))
            {
                string f = token[6..];
                int paren = f.IndexOf('(');
                byte vector = Vectors[paren < 0 ? f : f[..paren]];
                Assert.True(st == VieStatus.Fault, $"line {line}: {st}, expected a fault");
                Assert.Equal(vector, vie.Fault.Vector);
                if (paren >= 0)
                    Assert.Equal((uint)Hex(f[(paren + 1)..^1]), vie.Fault.ErrorCode);
                Assert.Equal(ripBefore, cpu.Rip);
                Assert.Empty(half.Requests);
                return;
            }
            if (token[0] is 'R' or 'W' && token.Contains('@'))
            {
                bool write = token[0] == 'W';
                string[] f = token[1..].Split('@', '=');
                requests.Add(new MmioAccess(Hex(f[1]), byte.Parse(f[0], CultureInfo.InvariantCulture), write, write ? Hex(f[2]) : 0));
                continue;
            }
            string[] kv = token.Split('=', 2);
            int gpr = Array.IndexOf(GprNames, kv[0]);
            if (gpr >= 0)
                expectRegs[gpr] = Hex(kv[1]);
            else if (kv[0] == "rip")
                expectRip = Hex(kv[1]);
            else if (kv[0] == "status")
                Assert.True((cpu.Rflags & Rflags.Status) == Hex(kv[1]), $"line {line}: status flags {cpu.Rflags & Rflags.Status:X}, expected {kv[1]}");
            else if (kv[0] == "ram")
            {
                string[] f = kv[1].Split(':');
                byte[] bytes = Convert.FromHexString(f[1]);
                Assert.Equal(bytes, memory.Ram.AsSpan((int)Hex(f[0]), bytes.Length).ToArray());
            }
            else
                throw new InvalidDataException($"line {line}: unknown expectation {kv[0]}");
        }
        Assert.True(st == VieStatus.Done, $"line {line}: {st} {(st == VieStatus.Fault ? vie.Fault.ToString() : "")}");
        Assert.Equal(requests, half.Requests);
        for (int r = 0; r < 16; r++)
        {
            ulong expected = expectRegs.TryGetValue(r, out ulong v) ? v : before[r];
            Assert.True(expected == cpu.Gpr[r], $"line {line}: {GprNames[r]} = {cpu.Gpr[r]:X}, expected {expected:X}");
        }
        ulong ipMask = parts[0] is "real" or "pm16" ? 0xFFFF : parts[0] == "long" ? ulong.MaxValue : 0xFFFF_FFFF;
        Assert.Equal(expectRip ?? ((ripBefore + (ulong)insn.Length) & ipMask), cpu.Rip);
    }
}
