// Benchmark entry point: `dotnet run -c Release --project bench/Hyve.Bench -- --filter '*'`;
// `-- quick` runs a short Stopwatch comparison for development (not a reported figure).
using System;
using System.Diagnostics;
using BenchmarkDotNet.Running;
using Hyve.Bench;

if (args.Length > 0 && args[0] == "quick")
{
    var b = new DecoderBench();
    b.Setup();
    for (int round = 0; round < 5; round++)
    {
        var sw = Stopwatch.StartNew();
        for (int k = 0; k < 10; k++)
            b.IcedDecode();
        double iced = sw.Elapsed.TotalMilliseconds / 10;
        sw.Restart();
        for (int k = 0; k < 10; k++)
            b.HyveDecode();
        double hyve = sw.Elapsed.TotalMilliseconds / 10;
        Console.WriteLine($"iced {iced:F1} ms  hyve {hyve:F1} ms  ratio {hyve / iced:F2}");
    }
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(DecoderBench).Assembly).Run(args);
