// Help text and the error type for bad command lines.
using System;

namespace Hyve.Cli;

/// <summary>The command's help text.</summary>
internal static class Usage
{
    public const string Text = """
        usage: hyve <command> [options]

        commands:
          disasm --bits 16|32|64 FILE [--offset N] [--length N] [--section NAME]
              Disassemble FILE (raw bytes, or an ELF64 section with --section) in Intel syntax.
              Numbers are decimal or hex with 0x. Invalid bytes print as (bad) and decoding
              resumes at the next byte; VEX, EVEX and XOP instructions print as (vex/evex/xop).
        """;
}

/// <summary>A malformed command line: reported in one line with exit status 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
