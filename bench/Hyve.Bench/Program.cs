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
    // Alternate the two and keep each one's fastest pass: the minimum is the figure least disturbed by other load.
    double icedMin = double.MaxValue, hyveMin = double.MaxValue;
    for (int round = 0; round < 100; round++)
    {
        var sw = Stopwatch.StartNew();
        b.IcedDecode();
        icedMin = Math.Min(icedMin, sw.Elapsed.TotalMilliseconds);
        sw.Restart();
        b.HyveDecode();
        hyveMin = Math.Min(hyveMin, sw.Elapsed.TotalMilliseconds);
    }
    Console.WriteLine($"fastest pass: iced {icedMin:F2} ms  hyve {hyveMin:F2} ms  ratio {hyveMin / icedMin:F3}");
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(DecoderBench).Assembly).Run(args);
