// Benchmark entry point: `dotnet run -c Release --project bench/Hyve.Bench -- --filter '*'`.
using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(Hyve.Bench.DecoderBench).Assembly).Run(args);
