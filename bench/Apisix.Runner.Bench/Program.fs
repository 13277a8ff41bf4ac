module Apisix.Runner.Bench.Program

open BenchmarkDotNet.Configs
open BenchmarkDotNet.Diagnosers
open BenchmarkDotNet.Jobs
open BenchmarkDotNet.Order
open BenchmarkDotNet.Running
open Perfolizer.Horology

/// A short job: the host has 2 shared, noisy cores, and the whole suite should take a few minutes.
/// `AsDefault` lets a `--job` on the command line replace it. All benchmarks share one table.
let config =
    DefaultConfig.Instance
        .AddJob(
            Job.Default
                .WithLaunchCount(1)
                .WithWarmupCount(3)
                .WithIterationCount(7)
                .WithIterationTime(TimeInterval.FromMilliseconds 250.0)
                .WithId("Short")
                .AsDefault()
        )
        .AddDiagnoser(MemoryDiagnoser.Default)
        .WithOptions(ConfigOptions.JoinSummary)
        .WithOrderer(DefaultOrderer(SummaryOrderPolicy.Declared, MethodOrderPolicy.Declared))

/// Runs the BenchmarkDotNet suite; a benchmark that failed to build or run makes it fail.
let private benchmarks (args: string[]) =
    let summaries =
        BenchmarkSwitcher.FromAssembly(typeof<CodecBenchmarks>.Assembly).Run(args, config)

    let failed =
        summaries
        |> Seq.exists (fun s -> s.HasCriticalValidationErrors || s.Reports |> Seq.exists (fun r -> not r.Success))

    if failed then 1 else 0

[<EntryPoint>]
let main args =
    match args with
    | [| "alloc" |] -> AllocationProbe.run 1_000_000
    | [| "alloc"; calls |] -> AllocationProbe.run (int calls)
    | _ when args.Length > 0 && args[0] = "soak" -> Soak.run (List.ofArray args[1..])
    | _ -> benchmarks args
