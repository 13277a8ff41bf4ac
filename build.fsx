// Build script: `dotnet fsi build.fsx <target>`. Plain F# calling the dotnet CLI, no packages needed.
//   build   restore and build everything in Release, warnings as errors
//   test    build, run the C# tests (xunit) and the F# tests (Expecto), print "N passed, M failed"
//   bench   measure the sample runner against the floor (../shared/loadgen), the micro-benchmarks,
//           allocations per call, start time and memory; writes docs/performance.md
//           (BENCH_ROUNDS, default 3, and BENCH_SECONDS, default 5, size the load runs)
//   fuzz    send hostile frames to a runner process over its socket (FUZZ_FRAMES, default 100000)
//   soak    mixed load on an in-process runner while sampling memory (SOAK_SECONDS, default 1800)
//   pack    make the NuGet packages (core, C# facade, both test kits, the apisix-runner-try tool,
//           the dotnet new templates) and the library packages' symbols packages into
//           artifacts/packages; MSBuild properties may follow, as a release gives them:
//           pack -p:RepositoryUrl=https://github.com/OWNER/REPO -p:Version=1.2.3
//   publish the sample runner as one self-contained file and as a Native AOT binary, in artifacts/publish
//   run     start the sample runner (APISIX_LISTEN_ADDRESS defaults to unix:/tmp/runner.sock)
//   templates  the template round trip: pack, install the templates from the pack, instantiate both,
//           build and test them against the packs, publish the C# one with Native AOT and serve a call
#load "bench/Report.fsx"

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

let artifacts = Path.Combine(root, "artifacts")
let sampleProject = Path.Combine(root, "samples", "SampleRunner", "SampleRunner.csproj")

/// The sample runner as one self-contained executable (what `ext-plugin.cmd` points at).
let publishSingleFile (dir: string) =
    dotnet [ "publish"; sampleProject; "-c"; "Release"; "-r"; "linux-x64"; "--self-contained"; "-p:PublishSingleFile=true"; "-o"; dir ]

/// The sample runner as a Native AOT binary: what an operator copies goes to `dir`, the debug
/// symbols to `dir/../aot-symbols`.
let publishAot (dir: string) =
    dotnet
        [ "publish"; sampleProject; "-c"; "Release"; "-r"; "linux-x64"; "-p:PublishAot=true"
          "--artifacts-path"; Path.Combine(artifacts, "aot-build"); "-o"; dir ]

    let symbols = Path.Combine(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator dir), Path.GetFileName(Path.TrimEndingDirectorySeparator dir) + "-symbols")
    Directory.CreateDirectory symbols |> ignore

    for f in Directory.GetFiles dir do
        if f.EndsWith ".dbg" || f.EndsWith ".pdb" || f.EndsWith ".xml" then
            File.Move(f, Path.Combine(symbols, Path.GetFileName f), true)

let publish () =
    publishSingleFile (Path.Combine(artifacts, "publish", "single-file"))
    publishAot (Path.Combine(artifacts, "publish", "aot"))
    // The RID-specific publishes restored the projects for linux-x64; restore them back for builds and tests.
    dotnet [ "restore"; solution ]

let benchProject = Path.Combine(root, "bench", "Apisix.Runner.Bench")

/// Mixed load on an in-process runner while sampling memory; false when memory kept growing
/// after the warm-up, or a call went wrong. The thresholds are KiB per minute.
let runSoak (seconds: int) (extra: string list) =
    let code, _ =
        exec "dotnet" ([ "run"; "--project"; benchProject; "-c"; "Release"; "--no-build"; "--"; "soak"; string seconds ] @ extra) []

    code = 0

let fsharpTests = Path.Combine(root, "tests", "Apisix.Runner.Tests")
let csharpTests = Path.Combine(root, "tests", "Apisix.Runner.Samples.Tests")
let transportTests = Path.Combine(root, "tests", "Apisix.Runner.Transport.Tests")

/// Runs an F# test project, an Expecto console app (no VSTest adapter for Expecto is served here,
/// so `dotnet test` cannot run it), with Expecto's options in `args`.
let runFSharpTests (project: string) (args: string list) (env: (string * string) list) =
    exec "dotnet" ([ "run"; "--project"; project; "-c"; "Release"; "--no-build"; "--"; "--no-spinner"; "--colours"; "0" ] @ args) env

/// What a test run counted, as (passed, failed). A run that exited non-zero without counting a
/// failure, or printed no summary at all (a crash, a build problem), counts as one failure.
let counted (summaries: (int * int) list) (code: int) =
    match summaries with
    | [] -> 0, 1
    | _ ->
        let passed, failed = summaries |> List.fold (fun (p, f) (p', f') -> p + p', f + f') (0, 0)
        passed, (if code <> 0 && failed = 0 then 1 else failed)

let ansi = Regex(@"\x1b\[[0-9;]*m")

/// Expecto's closing line: "EXPECTO! 193 tests run in 00:01:26 for miscellaneous – 193 passed,
/// 0 ignored, 0 failed, 0 errored. Success!"; an errored test (it threw outside an expectation)
/// is a failure too.
let expectoCounts (code: int, lines: string list) =
    let summary = Regex(@"EXPECTO!.*?(\d+) passed, (\d+) ignored, (\d+) failed, (\d+) errored")

    let summaries =
        lines
        |> List.choose (fun l ->
            let m = summary.Match(ansi.Replace(l, ""))
            if m.Success then Some(int m.Groups[1].Value, int m.Groups[3].Value + int m.Groups[4].Value) else None)

    counted summaries code

/// VSTest's line for one test assembly: "Passed!  - Failed: 0, Passed: 110, Skipped: 0, ...".
let vstestCounts (code: int, lines: string list) =
    let summary = Regex(@"(Passed|Failed)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+)")

    let summaries =
        lines
        |> List.choose (fun l ->
            let m = summary.Match l
            if m.Success then Some(int m.Groups[3].Value, int m.Groups[2].Value) else None)

    counted summaries code

let envOr (name: string) (fallback: int) =
    match Environment.GetEnvironmentVariable name with
    | null
    | "" -> fallback
    | v -> int v

/// Milliseconds from start until the socket accepts, idle RSS, and RSS with 1,000 open connections (kB).
let startAndMemory (file: string) (args: string list) =
    let sock = Path.Combine(Path.GetTempPath(), $"bench-start-{Guid.NewGuid():N}.sock")
    let rss (p: Process) =
        File.ReadAllLines $"/proc/{p.Id}/status"
        |> Array.find (fun l -> l.StartsWith "VmRSS:")
        |> fun l -> int64 (l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1])

    let connect () =
        let s = new Net.Sockets.Socket(Net.Sockets.AddressFamily.Unix, Net.Sockets.SocketType.Stream, Net.Sockets.ProtocolType.Unspecified)
        s.Connect(Net.Sockets.UnixDomainSocketEndPoint sock)
        s

    let psi = ProcessStartInfo(file, args, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
    psi.Environment["APISIX_LISTEN_ADDRESS"] <- "unix:" + sock
    psi.Environment["APISIX_CONF_EXPIRE_TIME"] <- "3600"
    let clock = Stopwatch.StartNew()
    use p = Process.Start psi

    let rec waitReady () =
        try
            (connect ()).Dispose()
            clock.Elapsed.TotalMilliseconds
        with :? Net.Sockets.SocketException when clock.Elapsed < TimeSpan.FromSeconds 20.0 ->
            Threading.Thread.Sleep 1
            waitReady ()

    let ready = waitReady ()
    Threading.Thread.Sleep 1000
    let idle = rss p
    let open' = [ for _ in 1..1000 -> connect () ]
    Threading.Thread.Sleep 1000
    let loaded = rss p

    for s in open' do
        s.Dispose()

    p.Kill()
    ready, idle, loaded

let bench () =
    let out = Path.Combine(artifacts, "bench")
    let rounds, seconds = envOr "BENCH_ROUNDS" 3, envOr "BENCH_SECONDS" 5
    publishSingleFile (Path.Combine(out, "jit"))
    publishAot (Path.Combine(out, "aot"))
    build ()

    // ../shared may be read-only: build loadgen and the floor in a copy.
    let loadgen = Path.Combine(out, "loadgen")
    Directory.CreateDirectory loadgen |> ignore

    for f in Directory.GetFiles(Path.Combine(root, "..", "shared", "loadgen")) do
        File.Copy(f, Path.Combine(loadgen, Path.GetFileName f), true)

    if fst (exec "make" [ "-C"; loadgen; "-s"; "loadgen"; "floor" ] []) <> 0 then failwith "building loadgen failed"

    let jit = Path.Combine(out, "jit", "SampleRunner")
    let aot = Path.Combine(out, "aot", "SampleRunner")

    let runners =
        [ for build, binary in [ "jit", jit; "aot", aot ] do
              for transport in [ "epoll"; "socket" ] -> $"{build}-{transport}=env Runner__Transport={transport} {binary}" ]

    let scenarios =
        [ "say", """{"body":"hello"}""", "stop"
          "request-body-rewrite", """{"new_body":"rewritten"}""", "rewrite"
          "client-ip", "{}", "none" ]

    // Saturated: the floor spins before it sleeps (its default); paced: 10,000 calls/s, nobody spins.
    let modes = [ "saturated", "1 16 64", "50", ""; "paced", "16 64", "0", "--rate 10000" ]

    for plugin, conf, expect in scenarios do
        for mode, conns, spin, load in modes do
            let code, _ =
                exec
                    "bash"
                    ([ Path.Combine(loadgen, "compare.sh"); "-d"; string seconds; "-w"; "1"; "-c"; conns; "-r"; string rounds; "-q"; "20"; "-s"; spin
                       "-o"; Path.Combine(out, $"{plugin}-{mode}"); "-l"; $"--conf-name {plugin} --conf-value {conf} --expect-action {expect} {load}" ]
                     @ runners)
                    []

            if code <> 0 then failwith $"compare.sh failed for {plugin}, {mode}"

    dotnet [ "build"; benchProject; "-c"; "Release"; "-nologo" ]
    let _, alloc = exec "dotnet" [ "run"; "--project"; benchProject; "-c"; "Release"; "--no-build"; "--"; "alloc"; "1000000" ] []
    dotnet [ "run"; "--project"; benchProject; "-c"; "Release"; "--no-build"; "--"; "--filter"; "*"; "--artifacts"; Path.Combine(out, "micro") ]
    let micro = Directory.GetFiles(Path.Combine(out, "micro", "results"), "*-report-github.md") |> Array.map File.ReadAllText

    let memory =
        [ "aot", startAndMemory aot []
          "jit (single file)", startAndMemory jit []
          "dotnet SampleRunner.dll", startAndMemory "dotnet" [ Path.Combine(root, "samples", "SampleRunner", "bin", "Release", "net10.0", "SampleRunner.dll") ] ]

    Report.write
        (Path.Combine(root, "docs"))
        rounds
        seconds
        [ for plugin, _, _ in scenarios do
              for mode, _, _, _ in modes -> plugin, mode, Report.summarize (Report.readRuns (Path.Combine(out, $"{plugin}-{mode}", "results.jsonl"))) ]
        (alloc |> List.filter (fun l -> l.Contains "allocated per call"))
        micro
        memory

/// The fuzz driver of the test suite at full size: CI runs it with 10,000 frames.
let fuzz () =
    build ()
    let frames = envOr "FUZZ_FRAMES" 100_000
    let _, failed = expectoCounts (runFSharpTests fsharpTests [ "--filter-test-list"; "Process.Fuzz" ] [ ("FUZZ_FRAMES", string frames) ])
    if failed > 0 then exit 1

/// The soak at full length (30 minutes unless SOAK_SECONDS says otherwise).
let soak () =
    build ()
    if not (runSoak (envOr "SOAK_SECONDS" 1800) []) then exit 1

/// The packages a user references, the try tool, and (not in the solution: content only) the templates.
let packageProjects =
    [ "src/Apisix.Runner.fsproj"
      "src/Runner.CSharp/Apisix.Runner.CSharp.csproj"
      "src/Testing/Apisix.Runner.Testing.fsproj"
      "src/Runner.CSharp.Testing/Apisix.Runner.CSharp.Testing.csproj"
      "tools/Apisix.Runner.Cli/Apisix.Runner.Cli.fsproj" ]

let templatesProject = Path.Combine(root, "templates", "Apisix.Runner.Templates", "Apisix.Runner.Templates.csproj")

/// Builds what it packs (warnings are errors in every project) and nothing else: a package does
/// not wait for the test projects to build. Each library package comes with its symbols package
/// (.snupkg). `msbuild` goes to every `dotnet pack`: a release gives the repository's address and
/// the version there, `-p:RepositoryUrl=https://github.com/OWNER/REPO -p:Version=1.2.3`
/// (Directory.Build.props says what each one sets).
///
/// The packages' zip entries are dated from the commit (SOURCE_DATE_EPOCH, unless it is set
/// already), not from the clock: two packs of the same commit give byte-identical packages
/// (from the same folder, for the F# ones: Directory.Build.props says why).
let pack (msbuild: string list) =
    let commitTime () =
        try
            match exec "git" [ "log"; "-1"; "--format=%ct" ] [] with
            | 0, [ seconds ] -> [ ("SOURCE_DATE_EPOCH", seconds.Trim()) ]
            | _ -> []
        with _ -> [] // no git here: the clock dates them

    let epoch =
        if String.IsNullOrEmpty(Environment.GetEnvironmentVariable "SOURCE_DATE_EPOCH") then commitTime () else []

    for p in packageProjects @ [ templatesProject ] do
        let args = [ "pack"; Path.Combine(root, p); "-c"; "Release"; "-nologo"; "-o"; Path.Combine(root, "artifacts", "packages") ] @ msbuild

        match exec "dotnet" args epoch with
        | 0, _ -> ()
        | code, _ -> failwith $"dotnet {String.Join(' ', args)} failed with exit code {code}"

/// The sample runner in the foreground: built first, then started on its socket. SIGTERM and SIGINT
/// to this script reach the runner, which drains and removes its socket, so nothing is left behind.
let run () =
    let address =
        match Environment.GetEnvironmentVariable "APISIX_LISTEN_ADDRESS" with
        | null
        | "" -> "unix:/tmp/runner.sock"
        | a -> a

    printfn "Building the sample runner (samples/SampleRunner)..."
    dotnet [ "build"; sampleProject; "-c"; "Release"; "-nologo"; "-v"; "quiet" ]
    printfn "Starting it on %s; stop it with Ctrl+C or SIGTERM." address
    let dll = Path.Combine(root, "samples", "SampleRunner", "bin", "Release", "net10.0", "SampleRunner.dll")
    let psi = ProcessStartInfo("dotnet", [ dll ], WorkingDirectory = root, UseShellExecute = false)
    psi.Environment["APISIX_LISTEN_ADDRESS"] <- address
    use runner = Process.Start psi

    let forward (signal: Runtime.InteropServices.PosixSignal) =
        Runtime.InteropServices.PosixSignalRegistration.Create(
            signal,
            fun context ->
                context.Cancel <- true
                if not runner.HasExited then
                    use kill = Process.Start("kill", [ "-TERM"; string runner.Id ])
                    kill.WaitForExit()
        )

    use _ = forward Runtime.InteropServices.PosixSignal.SIGTERM
    use _ = forward Runtime.InteropServices.PosixSignal.SIGINT
    runner.WaitForExit()
    exit runner.ExitCode

/// The template round trip, as a new user meets the templates, outside this repository (so that
/// nothing of it leaks in): the template package installed from the pack into a private template
/// hive, both templates instantiated, built and tested against the packs (artifacts/packages
/// first, through a private NuGet package folder, so that no older copy of the same version is
/// used), the C# runner published with Native AOT and the F# one run with `dotnet`, each serving
/// one call from the packed apisix-runner-try tool, then stopped with SIGTERM. Stops at the
/// first step that goes wrong, says which, leaves its folder for a look, and returns false;
/// prints each step's time.
let templateRoundTrip () : bool =
    pack []
    let packages = Path.Combine(artifacts, "packages")

    let templatePackage =
        DirectoryInfo(packages).GetFiles("Apisix.Runner.Templates.*.nupkg")
        |> Array.maxBy (fun f -> f.LastWriteTimeUtc)

    let version = templatePackage.Name.Substring("Apisix.Runner.Templates.".Length).Replace(".nupkg", "")
    let work = Directory.CreateTempSubdirectory("apisix-runner-templates-").FullName
    let hive = Path.Combine(work, "template-hive")

    let env =
        [ "NUGET_PACKAGES", Path.Combine(work, "nuget-packages")
          "DOTNET_CLI_TELEMETRY_OPTOUT", "1"
          "DOTNET_NOLOGO", "1"
          "DOTNET_SKIP_FIRST_TIME_EXPERIENCE", "1" ]

    let timings = Collections.Generic.List<string * TimeSpan>()

    let mutable ok = true

    let step (name: string) (action: unit -> unit) =
        if ok then
            printfn "templates: %s" name
            let clock = Stopwatch.StartNew()

            try
                action ()
                timings.Add((name, clock.Elapsed))
            with e ->
                eprintfn "templates: FAILED at '%s': %s" name e.Message
                eprintfn "templates: the round trip's folder is left in %s" work
                ok <- false

    let run (args: string list) =
        match exec "dotnet" args env with
        | 0, lines -> lines
        | code, _ -> failwith $"dotnet {String.Join(' ', args)} exited with {code}"

    /// `dotnet test`, which must run some tests and fail none.
    let test (solution: string) =
        // `run` has already failed on a non-zero exit code.
        let passed, failed = vstestCounts (0, run [ "test"; solution; "-c"; "Release"; "-nologo" ])

        if passed = 0 || failed > 0 then
            failwith $"dotnet test {solution} must pass some tests and fail none: {passed} passed, {failed} failed (a run without a summary counts as 1 failed)"

    /// Starts a runner on a socket in the work folder, plays one call at it with the tool, checks
    /// the answer, and stops it as APISIX does (SIGTERM); the runner must exit with 0.
    let serve (name: string) (file: string) (args: string list) (expect: string list) =
        let socket = Path.Combine(work, $"{name}.sock")
        let psi = ProcessStartInfo(file, args, UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true)
        psi.Environment["APISIX_LISTEN_ADDRESS"] <- "unix:" + socket
        psi.Environment["APISIX_CONF_EXPIRE_TIME"] <- "3600"
        use runner = Process.Start psi
        let output = Collections.Concurrent.ConcurrentQueue<string>()
        runner.OutputDataReceived.Add(fun e -> if not (isNull e.Data) then output.Enqueue e.Data)
        runner.ErrorDataReceived.Add(fun e -> if not (isNull e.Data) then output.Enqueue e.Data)
        runner.BeginOutputReadLine()
        runner.BeginErrorReadLine()
        let clock = Stopwatch.StartNew()

        try
            while not (File.Exists socket) do
                if runner.HasExited || clock.Elapsed > TimeSpan.FromSeconds 30.0 then
                    failwith $"""{name} did not listen on {socket}: {String.Join('\n', output)}"""

                Threading.Thread.Sleep 20

            let tool = Path.Combine(work, "tool", "apisix-runner-try")

            let code, lines =
                exec tool [ "--socket"; socket; "--plugin"; """hello={"greeting":"hi"}"""; "--header"; "x-hello: ci" ] []

            let answer = String.Join('\n', lines)

            if code <> 0 then failwith $"apisix-runner-try exited with {code}"

            for e in expect do
                if not (answer.Contains e) then failwith $"the answer lacks '{e}'"
        finally
            if not runner.HasExited then exec "kill" [ "-TERM"; string runner.Id ] [] |> ignore

        if not (runner.WaitForExit 10_000) then
            runner.Kill()
            failwith $"{name} did not stop within 10 s of SIGTERM"

        if runner.ExitCode <> 0 then
            failwith $"""{name} exited with {runner.ExitCode} on SIGTERM: {String.Join('\n', output)}"""

    let csharp = Path.Combine(work, "HelloRunner")
    let fsharp = Path.Combine(work, "HelloFs")

    step "install the template package" (fun () -> run [ "new"; "install"; templatePackage.FullName; "--debug:custom-hive"; hive ] |> ignore)

    step "dotnet new apisix-runner, apisix-runner-fsharp" (fun () ->
        run [ "new"; "apisix-runner"; "-n"; "HelloRunner"; "-o"; csharp; "--debug:custom-hive"; hive ] |> ignore
        run [ "new"; "apisix-runner-fsharp"; "-n"; "HelloFs"; "-o"; fsharp; "--debug:custom-hive"; hive ] |> ignore

        for project in [ Path.Combine(csharp, "HelloRunner", "HelloRunner.csproj"); Path.Combine(fsharp, "HelloFs", "HelloFs.fsproj") ] do
            if not (File.ReadAllText(project).Contains $"Version=\"{version}\"") then
                failwith $"{project} does not reference the packages' version {version}")

    // This repository's packs first (and only they may give Apisix.Runner*), then the packages this
    // machine already has, then the sources it normally uses.
    step "NuGet.config: the packs first" (fun () ->
        let normal =
            run [ "nuget"; "list"; "source"; "--format"; "short" ]
            |> List.choose (fun l ->
                match l.Trim().Split(' ', 2) with
                | [| "E"; source |] -> Some source
                | _ -> None)

        let local = Environment.GetEnvironmentVariable "NUGET_PACKAGES"

        let cache =
            if String.IsNullOrEmpty local then
                Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".nuget", "packages")
            else
                local

        let sources = ("machine-cache", cache) :: List.mapi (fun i s -> $"source-{i}", s) normal

        File.WriteAllText(
            Path.Combine(work, "NuGet.config"),
            String.concat
                "\n"
                [ "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
                  "<configuration>"
                  "  <packageSources>"
                  "    <clear />"
                  $"    <add key=\"apisix-runner\" value=\"{packages}\" />"
                  for key, value in sources do
                      $"    <add key=\"{key}\" value=\"{value}\" />"
                  "  </packageSources>"
                  "  <packageSourceMapping>"
                  "    <packageSource key=\"apisix-runner\"><package pattern=\"Apisix.Runner*\" /></packageSource>"
                  for key, _ in sources do
                      $"    <packageSource key=\"{key}\"><package pattern=\"*\" /></packageSource>"
                  "  </packageSourceMapping>"
                  "</configuration>"
                  "" ]
        ))

    step "C#: restore, build, test" (fun () -> test (Path.Combine(csharp, "HelloRunner.slnx")))
    step "F#: restore, build, test" (fun () -> test (Path.Combine(fsharp, "HelloFs.slnx")))

    step "C#: publish with Native AOT" (fun () ->
        run [ "publish"; Path.Combine(csharp, "HelloRunner", "HelloRunner.csproj"); "-c"; "Release"; "-r"; "linux-x64"; "-o"; Path.Combine(work, "aot") ]
        |> ignore

        let binary = FileInfo(Path.Combine(work, "aot", "HelloRunner"))
        if not binary.Exists then failwith "the publish made no HelloRunner executable"
        if File.Exists(Path.Combine(work, "aot", "HelloRunner.dll")) then failwith "the publish made a JIT runner, not Native AOT"
        printfn "templates: Native AOT binary %s, %.1f MB" binary.FullName (float binary.Length / 1048576.0))

    step "install apisix-runner-try from the pack" (fun () ->
        run [ "tool"; "install"; "Apisix.Runner.Cli"; "--version"; version; "--tool-path"; Path.Combine(work, "tool"); "--add-source"; packages ]
        |> ignore)

    step "C#: the AOT runner serves a call" (fun () ->
        serve "HelloRunner" (Path.Combine(work, "aot", "HelloRunner")) [] [ "answer: Stop"; "hi, ci"; "content-type: text/plain" ])

    step "F#: the runner serves a call" (fun () ->
        let dll = Path.Combine(fsharp, "HelloFs", "bin", "Release", "net10.0", "HelloFs.dll")
        serve "HelloFs" "dotnet" [ dll ] [ "answer: Stop"; "hi, ci"; "x-runner: fsharp" ])

    if ok then
        Directory.Delete(work, true)
        printfn "templates: the round trip passed"

    for name, elapsed in timings do
        printfn "  %6.1f s  %s" elapsed.TotalSeconds name

    printfn "  %6.1f s  in all (after pack)" (timings |> Seq.sumBy (fun (_, t) -> t.TotalSeconds))
    ok

let templates () = if not (templateRoundTrip ()) then exit 1

/// Every test: the C# tests (xunit, through VSTest), then the F# tests (Expecto) on each transport,
/// one after the other, added up into the closing line, with the CI-sized soak (60 s) and the
/// templates' round trip counted as one more check each.
/// The Native AOT runner is made first: the end-to-end tests run against it as well.
let test () =
    build ()
    publishAot (Path.Combine(artifacts, "publish", "aot"))
    let csPassed, csFailed = vstestCounts (exec "dotnet" [ "test"; csharpTests; "-c"; "Release"; "--no-build"; "-nologo" ] [])
    // The F# tests run once on each transport: the Linux event loops (the default) and .NET's
    // socket engine (the fallback), in process and in every runner process they start.
    let fsPassed, fsFailed =
        [ "epoll"; "socket" ]
        |> List.map (fun transport -> expectoCounts (runFSharpTests fsharpTests [] [ ("RUNNER_TEST_TRANSPORT", transport) ]))
        |> List.fold (fun (p, f) (p', f') -> p + p', f + f') (0, 0)

    // The epoll transport on its own: connections, drain, the watchdog, fd limits, 10,000 connections.
    let transportPassed, transportFailed =
        expectoCounts (runFSharpTests transportTests [] [])

    // Sixty seconds show gross leaks only, so the RSS threshold is loose; the long soak is the real check.
    let soaked = runSoak 60 [ "--sample"; "5"; "--heap-slope"; "1024"; "--rss-slope"; "32768" ]
    let templated =
        try
            templateRoundTrip ()
        with e ->
            eprintfn "templates: FAILED before the round trip: %s" e.Message
            false

    let checks = [ soaked; templated ]
    let passed = csPassed + fsPassed + transportPassed + (checks |> List.filter id |> List.length)
    let failed = csFailed + fsFailed + transportFailed + (checks |> List.filter not |> List.length)
    printfn "%d passed, %d failed" passed failed
    if failed > 0 || passed = 0 then exit 1

match fsi.CommandLineArgs |> Array.skip 1 |> List.ofArray with
| [ "build" ] -> build ()
| [ "test" ] -> test ()
| [ "bench" ] -> bench ()
| [ "fuzz" ] -> fuzz ()
| [ "soak" ] -> soak ()
| "pack" :: msbuild when msbuild |> List.forall (fun a -> a.StartsWith "-p:") -> pack msbuild
| [ "publish" ] -> publish ()
| [ "run" ] -> run ()
| [ "templates" ] -> templates ()
| args ->
    eprintfn "usage: dotnet fsi build.fsx build|test|bench|fuzz|soak|pack [-p:Name=value ...]|publish|run|templates (got: %s)" (String.Join(' ', args))
    exit 2
