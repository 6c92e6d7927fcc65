// Help text and the error type for bad command lines.
using System;

namespace Hyve.Cli;

/// <summary>The command's help text.</summary>
internal static class Usage
{
    public const string Text = """
        usage: hyve <command> [options]

        commands:
          run [--kernel FILE [--initrd FILE] | --kernel FILE --load ADDR] [--cmdline STR] [--cpus N]
              [--memory MiB] [--disk FILE] [--backend soft|kvm] [--verify-emulation]
              [--timeout SECONDS] [--stats]
              Boot a Multiboot kernel, a Linux bzImage, or a flat binary at ADDR (entered in 32-bit
              protected mode) (default: the built-in demo guest) on the software CPU (or KVM) with
              COM1 on the terminal (Ctrl-A x quits). Exit status: (v << 1) | 1 for a write of v
              to isa-debug-exit (port 0xF4), 0 for power-off or reset, 124 on timeout, 3 when
              every vCPU halted with interrupts disabled, 2 for a triple fault or internal error.
          disasm --bits 16|32|64 FILE [--offset N] [--length N] [--section NAME]
              Disassemble FILE (raw bytes, or an ELF64 section with --section) in Intel syntax.
              Numbers are decimal or hex with 0x. Invalid bytes print as (bad) and decoding
              resumes at the next byte; VEX, EVEX and XOP instructions print as (vex/evex/xop).
          verify emulator [--cases N] [--seed S]
              Run N random cases (default 1000000) of the MMIO instruction emulator against this
              CPU: each instruction runs natively and through the emulator with its operand in
              device memory (sometimes split with RAM), and registers, flags, SSE registers,
              memory and the device accesses must agree. Ends with "N passed, M failed"; exits 0
              only when nothing failed. x86-64 Linux hosts only.
        """;
}

/// <summary>A malformed command line: reported in one line with exit status 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
