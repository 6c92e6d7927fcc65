// `hyve verify emulator`: the emulator against this machine's CPU, case by case.
using System;
using Hyve.Vmm.Verification;

namespace Hyve.Cli;

/// <summary>The verification subcommand.</summary>
internal static class VerifyCommand
{
    public static int Run(ReadOnlySpan<string> args)
    {
        if (args.Length == 0 || args[0] != "emulator")
            throw new UsageException("verify: expected 'emulator' (hyve verify emulator [--cases N] [--seed S])");
        long cases = 1_000_000;
        int seed = Environment.TickCount & 0x7FFF_FFFF;
        for (int i = 1; i < args.Length; i++)
        {
            string a = args[i];
            switch (a)
            {
                case "--cases": cases = Arguments.Number("verify", Arguments.Value("verify", args, ref i, a), a); break;
                case "--seed":
                    long s = Arguments.Number("verify", Arguments.Value("verify", args, ref i, a), a);
                    if (s > int.MaxValue)
                        throw new UsageException($"verify: --seed must be at most {int.MaxValue}");
                    seed = (int)s;
                    break;
                default: throw new UsageException($"verify: unknown option '{a}'");
            }
        }
        if (!EmulatorVerifier.Supported)
        {
            Console.Error.WriteLine("hyve: verify emulator needs an x86-64 Linux host (it runs each case on this CPU)");
            return 1;
        }
        Console.WriteLine($"verifying the instruction emulator against this CPU: {cases} cases, seed {seed}");
        int report = int.TryParse(Environment.GetEnvironmentVariable("HYVE_VERIFY_REPORT"), out int n) ? n : 5;
        VerifyResult r = EmulatorVerifier.Run(cases, seed, done => Console.WriteLine($"  {done} cases"), report);
        foreach (string f in r.Failures)
            Console.WriteLine($"FAIL {f}");
        Console.WriteLine($"{r.Passed} passed, {r.Failed} failed");
        return r.Failed == 0 ? 0 : 1;
    }
}
