// The `hyve` command: dispatches to subcommands; bad input is a one-line error and a non-zero exit.
using System;
using System.IO;
using Hyve.Cli;

if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
{
    Console.WriteLine(Usage.Text);
    return args.Length == 0 ? 2 : 0;
}
if (args[0] is "--version" or "version")
{
    Console.WriteLine($"hyve {Usage.Version}");
    return 0;
}
try
{
    return args[0] switch
    {
        "disasm" => DisasmCommand.Run(args.AsSpan(1)),
        "verify" => VerifyCommand.Run(args.AsSpan(1)),
        "run" => RunCommand.Run(args.AsSpan(1)),
        _ => throw new UsageException($"unknown command '{args[0]}' (try 'hyve help')"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"hyve: {e.Message}");
    return 2;
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
{
    Console.Error.WriteLine($"hyve: {e.Message}");
    return 1;
}
catch (Exception e)
{
    // A bug in Hyve itself: still one line for the user, with the exception type to report.
    Console.Error.WriteLine($"hyve: internal error: {e.GetType().Name}: {e.Message}");
    if (Environment.GetEnvironmentVariable("HYVE_DEBUG") == "1")
        Console.Error.WriteLine(e.StackTrace);
    return 2;
}
