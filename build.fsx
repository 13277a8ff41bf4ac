// Build script: `dotnet fsi build.fsx <target>`. Plain F# calling the dotnet CLI, no packages needed.
//   build   restore and build everything in Release, warnings as errors
//   test    build, run every test project, print "N passed, M failed"
//   bench   run the BenchmarkDotNet micro-benchmarks (bench/)
//   pack    make the NuGet packages of the F# core and the C# facade into artifacts/packages
//   run     start the sample runner (APISIX_LISTEN_ADDRESS defaults to unix:/tmp/runner.sock)
open System
open System.Diagnostics
open System.IO
open System.Text.RegularExpressions

let root = __SOURCE_DIRECTORY__
let solution = Path.Combine(root, "Runner.sln")

/// Runs a command, echoing its output; returns the exit code and the output lines.
let exec (file: string) (args: string list) (env: (string * string) list) =
    let psi = ProcessStartInfo(file, args, WorkingDirectory = root, UseShellExecute = false)
    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true

    for k, v in env do
        psi.Environment[k] <- v

    use p = new Process(StartInfo = psi)
    let lines = Collections.Concurrent.ConcurrentQueue<string>()

    let echo (e: DataReceivedEventArgs) =
        if not (isNull e.Data) then
            lines.Enqueue e.Data
            Console.WriteLine e.Data

    p.OutputDataReceived.Add echo
    p.ErrorDataReceived.Add echo
    p.Start() |> ignore
    p.BeginOutputReadLine()
    p.BeginErrorReadLine()
    p.WaitForExit()
    p.ExitCode, List.ofSeq lines

let dotnet args =
    match exec "dotnet" args [] with
    | 0, _ -> ()
    | code, _ -> failwith $"dotnet {String.Join(' ', args)} failed with exit code {code}"

let build () =
    dotnet [ "restore"; solution ]
    dotnet [ "build"; solution; "-c"; "Release"; "--no-restore"; "-warnaserror"; "-nologo" ]

/// VSTest prints one summary line per test assembly; add them up into the closing line.
let test () =
    build ()
    let code, lines = exec "dotnet" [ "test"; solution; "-c"; "Release"; "--no-build"; "-nologo" ] []
    let summary = Regex(@"(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+)")

    let failed, passed =
        lines
        |> List.choose (fun l ->
            let m = summary.Match l
            if m.Success then Some(int m.Groups[2].Value, int m.Groups[3].Value) else None)
        |> List.fold (fun (f, p) (f', p') -> f + f', p + p') (0, 0)

    // A crashed test host or a build problem prints no summary: count it as a failure.
    let failed = if code <> 0 && failed = 0 then failed + 1 else failed
    printfn "%d passed, %d failed" passed failed
    if failed > 0 || passed = 0 then exit 1

let bench () =
    dotnet [ "run"; "--project"; Path.Combine(root, "bench", "Apisix.Runner.Bench"); "-c"; "Release"; "--"; "--filter"; "*" ]

let pack () =
    build ()

    for p in [ "src/Apisix.Runner.fsproj"; "src/Runner.CSharp/Apisix.Runner.CSharp.csproj" ] do
        dotnet [ "pack"; Path.Combine(root, p); "-c"; "Release"; "--no-build"; "-o"; Path.Combine(root, "artifacts", "packages") ]

let run () =
    let address =
        match Environment.GetEnvironmentVariable "APISIX_LISTEN_ADDRESS" with
        | null
        | "" -> "unix:/tmp/runner.sock"
        | a -> a

    let code, _ =
        exec "dotnet" [ "run"; "--project"; Path.Combine(root, "samples", "SampleRunner"); "-c"; "Release" ] [ "APISIX_LISTEN_ADDRESS", address ]

    exit code

match fsi.CommandLineArgs |> Array.skip 1 |> List.ofArray with
| [ "build" ] -> build ()
| [ "test" ] -> test ()
| [ "bench" ] -> bench ()
| [ "pack" ] -> pack ()
| [ "run" ] -> run ()
| args ->
    eprintfn "usage: dotnet fsi build.fsx build|test|bench|pack|run (got: %s)" (String.Join(' ', args))
    exit 2
