/// The soak: the runner in-process with the sample runner's plugins (registered as the sample runner
/// registers them, through the C# facade), under mixed calls from several loadgen processes for a
/// set time. Every few seconds it samples RSS, open handles, GC collection counts, the live managed
/// heap and the calls done; after a warm-up (the first third) it fits a line to the heap and RSS
/// samples and fails when either grows faster than its threshold. It also fails when loadgen saw
/// any error, when a stream's answers are not what its plugin gives, or when connections or handles
/// are left behind once the load stops. Run with
/// `dotnet run --project bench/Apisix.Runner.Bench -c Release -- soak SECONDS [options]`.
module Apisix.Runner.Bench.Soak

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Diagnostics
open System.Globalization
open System.IO
open System.Runtime
open System.Text.Json
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Logging
open Apisix.Runner
open Apisix.Runner.Samples

/// What `soak` can be told on its command line.
type Settings =
    { Seconds: float
      /// Time between two samples.
      Sample: float
      /// The live heap may grow at most this much per minute after the warm-up.
      HeapSlope: float
      /// RSS may grow at most this much per minute after the warm-up.
      RssSlope: float
      /// Where loadgen's sources are (copied and built under artifacts/soak).
      LoadgenSource: string option }

let private usage =
    "usage: soak SECONDS [--sample S] [--heap-slope KIB_PER_MIN] [--rss-slope KIB_PER_MIN] [--loadgen DIR]"

/// Default thresholds, in KiB per minute: see docs/reliability.md for how they were chosen.
let defaultHeapSlope = 128.0

let defaultRssSlope = 1024.0

let private number (text: string) =
    match Double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture) with
    | true, v when v > 0.0 && Double.IsFinite v -> Some v
    | _ -> None

let parse (args: string list) : Result<Settings, string> =
    let rec go (s: Settings) args =
        match args with
        | [] -> Ok s
        | "--sample" :: v :: rest ->
            match number v with
            | Some v -> go { s with Sample = v } rest
            | None -> Error $"--sample: not a positive number: {v}"
        | "--heap-slope" :: v :: rest ->
            match number v with
            | Some v -> go { s with HeapSlope = v } rest
            | None -> Error $"--heap-slope: not a positive number: {v}"
        | "--rss-slope" :: v :: rest ->
            match number v with
            | Some v -> go { s with RssSlope = v } rest
            | None -> Error $"--rss-slope: not a positive number: {v}"
        | "--loadgen" :: v :: rest -> go { s with LoadgenSource = Some v } rest
        | other :: _ -> Error $"unknown argument {other}"

    match args with
    | seconds :: rest ->
        match number seconds with
        | Some v when v >= 10.0 ->
            go
                { Seconds = v
                  Sample = 10.0
                  HeapSlope = defaultHeapSlope
                  RssSlope = defaultRssSlope
                  LoadgenSource = None }
                rest
        | _ -> Error $"SECONDS must be a number of seconds, 10 or more, got {seconds}"
    | [] -> Error "SECONDS is missing"

// ---------------------------------------------------------------------------------------------
// The plugins
// ---------------------------------------------------------------------------------------------

/// Calls that reached a plugin, all streams together (one plugin per route, so one per call).
let private calls = [| 0L |]

/// The same plugin, counting the calls its filters run.
let private counted (plugin: Plugin) : Plugin =
    let count (filter: Filter) : Filter =
        fun req resp ->
            Interlocked.Increment(&calls[0]) |> ignore
            filter req resp

    { plugin with
        Prepare =
            fun json ->
                plugin.Prepare json
                |> Result.map (fun f ->
                    { f with
                        Request = f.Request |> ValueOption.map count
                        Response = f.Response |> ValueOption.map count }) }

/// `soak-extra-info`: a request-phase plugin that talks back to APISIX on every call: the request
/// body is declared up front (prefetched before the chain), the nginx variable `remote_addr` is
/// asked for on demand, so each call makes two ExtraInfo exchanges. The `client-ip` sample asks for
/// its variable up front only, and `response-rewrite` asks in the response phase, which loadgen
/// never reaches (it only sends request calls, type 2), so this F# plugin stands in for asking on
/// demand. loadgen answers every ExtraInfo with an empty result.
let private extraInfo =
    Plugin.ofFilter "soak-extra-info" (fun req _ ->
        task {
            let! address = req.Var "remote_addr"
            let! body = req.Body()
            req.SetHeader("x-soak-remote-addr", address |> ValueOption.defaultValue "(unset)")

            req.SetHeader(
                "x-soak-body-bytes",
                match body with
                | ValueSome b -> string b.Length
                | ValueNone -> "(none)"
            )

            return Decision.Continue
        }
        |> ValueTask<Decision>)
    |> Plugin.prefetch [ ExtraInfo.ReqBody ]

// ---------------------------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------------------------

/// What loadgen reported, summed over a stream's rounds.
type private Totals = Dictionary<string, int64>

let private total (t: Totals) (key: string) =
    match t.TryGetValue key with
    | true, v -> v
    | _ -> 0L

/// One kind of traffic: loadgen processes, one after another (a round each, with a new
/// PrepareConf key, so connections and configurations come and go), on one plugin configuration.
type private Stream =
    { Name: string
      Plugin: string
      Conf: string
      Conns: int
      Headers: int
      PrepareEach: bool
      Expect: string option
      /// What its answers must show over the whole soak: one problem per failed expectation.
      Check: Totals -> string list }

let private share (t: Totals) (action: string) =
    let calls = total t "calls"
    if calls = 0L then 0.0 else float (total t action) / float calls

let private streams: Stream list =
    [ { Name = "say"
        Plugin = "say"
        Conf = """{"body":"hello"}"""
        Conns = 4
        Headers = 10
        PrepareEach = false
        Expect = Some "stop"
        Check = fun _ -> [] }
      { Name = "request-body-rewrite"
        Plugin = "request-body-rewrite"
        Conf = """{"new_body":"{\"soak\":true}"}"""
        Conns = 8
        Headers = 30
        PrepareEach = true
        Expect = Some "rewrite"
        Check = fun _ -> [] }
      { Name = "fault-injection"
        Plugin = "fault-injection"
        Conf = """{"http_status":503,"body":"injected","percentage":10}"""
        Conns = 8
        Headers = 10
        PrepareEach = true
        Expect = None
        Check =
          fun t ->
              // 10 % drawn at random: over thousands of calls the share is within a few tenths of that.
              let stops = share t "actions.stop"
              let nones = share t "actions.none"

              [ if total t "calls" < 1000L then
                    $"""fault-injection: only {total t "calls"} calls"""
                elif stops < 0.05 || stops > 0.15 then
                    $"fault-injection: {stops:P1} of the calls were stopped, expected about 10 percent"
                if abs (stops + nones - 1.0) > 1e-9 then
                    "fault-injection: some answers were neither a stop nor nothing" ] }
      { Name = "soak-extra-info"
        Plugin = "soak-extra-info"
        Conf = "{}"
        Conns = 4
        Headers = 10
        PrepareEach = true
        Expect = Some "rewrite"
        Check =
          fun t ->
              [ if total t "extra_info" < 2L * total t "calls" then
                    $"""soak-extra-info: {total t "extra_info"} ExtraInfo exchanges for {total t "calls"} calls, expected 2 per call""" ] }
      { Name = "limit-req"
        Plugin = "limit-req"
        // 8 lockstep connections against 1,000 calls/s and a burst of 2: some calls wait for
        // their turn (a timer each), the others are refused with 503 at once.
        Conf = """{"rate":1000,"burst":2}"""
        Conns = 8
        Headers = 10
        PrepareEach = true
        Expect = None
        Check =
          fun t ->
              [ if total t "actions.none" = 0L then "limit-req: no call was let through"
                if total t "actions.stop" = 0L then "limit-req: no call was refused" ] }
      { Name = "rewrite"
        Plugin = "rewrite"
        Conf = """{"path":"/soak","headers":{"x-soak":"on","cookie":null},"args":{"page":null,"a6":"soak"}}"""
        Conns = 4
        Headers = 20
        PrepareEach = false
        Expect = Some "rewrite"
        Check = fun _ -> [] } ]

/// Adds the numbers of one loadgen JSON report to the totals (objects flattened as `a.b`).
let private add (totals: Totals) (report: JsonElement) =
    let rec walk (prefix: string) (e: JsonElement) =
        for p in e.EnumerateObject() do
            let key = if prefix = "" then p.Name else prefix + "." + p.Name

            match p.Value.ValueKind with
            | JsonValueKind.Number ->
                match p.Value.TryGetInt64() with
                | true, v -> totals[key] <- total totals key + v
                | _ -> ()
            | JsonValueKind.Object -> walk key p.Value
            | _ -> ()

    lock totals (fun () ->
        walk "" report
        totals["rounds"] <- total totals "rounds" + 1L)

/// Runs a stream's rounds until `until` (on `clock`), on the calling thread; problems go to
/// `problems`. Everything here blocks: on Unix, reading a process's output asynchronously holds a
/// thread-pool thread, and the pool belongs to the runner under test.
let private drive
    (loadgen: string)
    (socket: string)
    (clock: Stopwatch)
    (until: TimeSpan)
    (round: TimeSpan)
    (stream: Stream)
    (totals: Totals)
    (problems: ConcurrentQueue<string>)
    =
    let mutable n = 0

    while until - clock.Elapsed > TimeSpan.FromSeconds 1.0 do
        let duration = min round (until - clock.Elapsed)

        let args =
            [ "--sock"; socket
              "--conns"; string stream.Conns
              "--duration"; duration.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture)
              "--warmup"; "0"
              "--conf-name"; stream.Plugin
              "--conf-value"; stream.Conf
              "--key"; $"soak-{stream.Name}-{n}"
              "--prepare"; (if stream.PrepareEach then "each" else "once")
              "--headers"; string stream.Headers
              "--json" ]
            @ (match stream.Expect with
               | Some a -> [ "--expect-action"; a ]
               | None -> [])

        let start =
            ProcessStartInfo(loadgen, args, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false)

        use p = Process.Start start
        // loadgen writes a few lines, the report last, and stderr only on a failure: both fit in
        // their pipes, so reading one to its end and then the other cannot deadlock. Read this
        // way, the pipes are the reader's to close: disposing the Process leaves them open.
        use stdout = p.StandardOutput
        use stderr = p.StandardError
        let out = stdout.ReadToEnd()
        let err = stderr.ReadToEnd()
        p.WaitForExit()

        let last =
            out.Split('\n', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
            |> Array.tryFindBack (fun l -> l.StartsWith '{')

        match last with
        | None -> problems.Enqueue $"{stream.Name} round {n}: loadgen exited {p.ExitCode} without a report: {err.Trim()}"
        | Some json ->
            use doc = JsonDocument.Parse json
            let r = doc.RootElement
            add totals r
            let errors = r.GetProperty("errors_total").GetInt64() + r.GetProperty("warmup_errors").GetInt64()
            let unanswered = r.GetProperty("unanswered_after_drain").GetInt64()

            if errors > 0L || unanswered > 0L || p.ExitCode <> 0 then
                let kinds =
                    [ for e in r.GetProperty("errors").EnumerateObject() do
                          if e.Value.GetInt64() > 0L then $"{e.Name}={e.Value.GetInt64()}" ]

                let kinds = String.Join(" ", Array.ofList kinds)

                problems.Enqueue
                    $"{stream.Name} round {n}: loadgen exit {p.ExitCode}, {errors} errors ({kinds}), {unanswered} unanswered"

        n <- n + 1

/// Copies loadgen's sources (the directory may be read-only) under artifacts/soak and builds it there.
let private buildLoadgen (root: string) (source: string option) =
    let source =
        source
        |> Option.orElse (Option.ofObj (Environment.GetEnvironmentVariable "LOADGEN_SRC") |> Option.filter (String.IsNullOrWhiteSpace >> not))
        |> Option.defaultValue (Path.Combine(root, "..", "shared", "loadgen"))

    if not (File.Exists(Path.Combine(source, "loadgen.c"))) then
        failwith $"no loadgen sources in {Path.GetFullPath source}: pass --loadgen DIR or set LOADGEN_SRC"

    let dir = Path.Combine(root, "artifacts", "soak", "loadgen")
    Directory.CreateDirectory dir |> ignore

    // Sources only: a loadgen binary beside them may be from another machine. The copies are
    // replaced, not overwritten, since the originals (and so the copies) may be read-only.
    for name in [ "Makefile"; "loadgen.c"; "fbmini.h" ] do
        let target = Path.Combine(dir, name)
        File.Delete target
        File.Copy(Path.Combine(source, name), target)

    use make = Process.Start(ProcessStartInfo("make", [ "-C"; dir; "-s"; "loadgen" ], UseShellExecute = false))
    make.WaitForExit()

    if make.ExitCode <> 0 then
        failwith $"building loadgen in {dir} failed (make exited {make.ExitCode})"

    Path.Combine(dir, "loadgen")

let private repoRoot () =
    let rec up (dir: DirectoryInfo) =
        if isNull dir then None
        elif File.Exists(Path.Combine(dir.FullName, "Runner.sln")) then Some dir.FullName
        else up dir.Parent

    up (DirectoryInfo(Directory.GetCurrentDirectory()))
    |> Option.orElse (up (DirectoryInfo AppContext.BaseDirectory))
    |> Option.defaultWith (fun () -> failwith "no Runner.sln above the current directory or the program")

// ---------------------------------------------------------------------------------------------
// The samples
// ---------------------------------------------------------------------------------------------

type private Sample =
    { At: float
      Calls: int64
      Connections: int
      Confs: int
      Handles: int
      Threads: int
      /// Collections the runtime chose, by generation; the full collection the sampler induces
      /// before measuring the heap is not counted.
      Gen0: int
      Gen1: int
      Gen2: int
      Allocated: int64
      /// Live managed heap, after a full blocking compacting collection.
      Heap: int64
      /// Memory the GC holds committed, live or free (it gives free regions back gradually).
      Committed: int64
      Rss: int64 }

let private status (field: string) =
    File.ReadLines "/proc/self/status"
    |> Seq.find (fun l -> l.StartsWith(field + ":", StringComparison.Ordinal))
    |> fun l -> int64 (l.Split(' ', '\t').[1..] |> Array.find (fun s -> s <> ""))

let private handles () =
    Directory.GetFileSystemEntries "/proc/self/fd"

/// What an open handle is: `socket`, `pipe`, `anon_inode:[eventpoll]`, a file's path, ...
let private target (fd: string) =
    let link =
        try
            FileInfo(fd).LinkTarget |> Option.ofObj |> Option.defaultValue ""
        with _ ->
            ""

    // `socket:[inode]` and `pipe:[inode]`: the kind, not the instance.
    let bracket = link.IndexOf ":["

    if bracket > 0 && link.EndsWith ']' && link.Substring(bracket + 2, link.Length - bracket - 3) |> Seq.forall Char.IsDigit then
        link.Substring(0, bracket)
    else
        link

/// The runtime keeps the files of the assemblies and native libraries it loads open, and it loads
/// some of them lazily, the first time a code path needs them: those are not leaks.
let private isLibrary (target: string) =
    target.EndsWith(".dll", StringComparison.Ordinal) || target.EndsWith(".so", StringComparison.Ordinal) || target.Contains ".so."

/// The open handles other than libraries, counted by kind, read at once (a handle closed since
/// the listing, such as the listing's own, has no target and is left out).
let private handleKinds () =
    handles ()
    |> Array.map target
    |> Array.filter (fun t -> t <> "" && not (isLibrary t))
    |> Array.countBy id
    |> Map.ofArray

let private takeSample (server: RunnerServer) (at: float) (induced: int) =
    // Counts first: the collection induced below must not be counted as the runtime's own.
    let gen0 = GC.CollectionCount 0 - induced
    let gen1 = GC.CollectionCount 1 - induced
    let gen2 = GC.CollectionCount 2 - induced
    let allocated = GC.GetTotalAllocatedBytes false
    let reached = Volatile.Read(&calls[0])
    GCSettings.LargeObjectHeapCompactionMode <- GCLargeObjectHeapCompactionMode.CompactOnce
    GC.Collect(2, GCCollectionMode.Forced, true, true)
    // What that collection left: every generation after it, free space inside them left out.
    // (GC.GetTotalMemory reads allocation contexts that other threads are filling: it can even go negative.)
    let full = GC.GetGCMemoryInfo GCKind.FullBlocking
    let live = full.GenerationInfo.ToArray() |> Array.sumBy (fun g -> g.SizeAfterBytes - g.FragmentationAfterBytes)

    { At = at
      Calls = reached
      Connections = server.ConnectionCount
      Confs = server.Cache.Count
      Handles = (handles ()).Length
      Threads = int (status "Threads")
      Gen0 = gen0
      Gen1 = gen1
      Gen2 = gen2
      Allocated = allocated
      Heap = live
      Committed = GC.GetGCMemoryInfo().TotalCommittedBytes
      Rss = status "VmRSS" * 1024L }

/// Least-squares slope of `y` over `x`.
let slope (points: (float * float) list) =
    let n = float points.Length
    let mx = (points |> List.sumBy fst) / n
    let my = (points |> List.sumBy snd) / n
    let sxy = points |> List.sumBy (fun (x, y) -> (x - mx) * (y - my))
    let sxx = points |> List.sumBy (fun (x, _) -> (x - mx) * (x - mx))
    if sxx = 0.0 then 0.0 else sxy / sxx

let private printTable (samples: Sample list) =
    printfn ""
    printfn "| t (s) | calls | calls/s | conns | confs | fds | threads | gen0 | gen1 | gen2 | alloc B/call | heap KiB | GC committed KiB | RSS KiB |"
    printfn "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

    samples
    |> List.pairwise
    |> List.append [ (List.head samples, List.head samples) ]
    |> List.iter (fun (p, s) ->
        let dt = s.At - p.At
        let dc = s.Calls - p.Calls
        let rate = if dt > 0.0 then float dc / dt else 0.0
        let perCall = if dc > 0L then float (s.Allocated - p.Allocated) / float dc else 0.0

        printfn
            "| %.0f | %d | %.0f | %d | %d | %d | %d | %d | %d | %d | %.0f | %d | %d | %d |"
            s.At s.Calls rate s.Connections s.Confs s.Handles s.Threads s.Gen0 s.Gen1 s.Gen2 perCall (s.Heap / 1024L) (s.Committed / 1024L) (s.Rss / 1024L))

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

let private soak (settings: Settings) =
    let root = repoRoot ()
    let loadgen = buildLoadgen root settings.LoadgenSource
    let socket = Path.Combine(Path.GetTempPath(), $"apisix-soak-{Environment.ProcessId}.sock")
    let round = TimeSpan.FromSeconds(Math.Clamp(settings.Seconds / 4.0, 5.0, 30.0))

    // Configurations of finished rounds expire soon after (1.2 rounds), so the cache holds about two
    // rounds' worth in steady state: expiry and the sweep are part of what is soaked.
    let options =
        RunnerOptions(ListenAddress = "unix:" + socket, ConfExpireTime = round, CallTimeout = TimeSpan.FromSeconds 10.0)

    let services = ServiceCollection()
    services.AddLogging(fun b -> b.AddConsole().SetMinimumLevel(LogLevel.Warning) |> ignore) |> ignore
    services.AddSingleton<TimeProvider> TimeProvider.System |> ignore
    services.AddSamplePlugins() |> ignore
    services.AddPlugin extraInfo |> ignore
    use provider = services.BuildServiceProvider()
    let plugins = provider.GetServices<Plugin>() |> Seq.map counted |> List.ofSeq
    let server = RunnerServer(options, plugins, provider.GetRequiredService<ILoggerFactory>(), TimeProvider.System)
    match server.Open() with
    | Ok() -> ()
    | Error e -> failwith (e.Describe())

    printfn "soak: %.0f s, %d loadgen streams (%s), rounds of %.0f s, %d connections, sample every %.0f s"
        settings.Seconds streams.Length (String.Join(", ", streams |> List.map _.Name |> Array.ofList)) round.TotalSeconds
        (streams |> List.sumBy _.Conns) settings.Sample
    printfn "plugins: %s" (String.Join(", ", plugins |> List.map _.Name |> Array.ofList))

    let problems = ConcurrentQueue<string>()
    let totals = [ for s in streams -> s, Totals() ]
    let samples = List<Sample>()
    let baselineHandles = handles ()
    let before = handleKinds ()
    samples.Add(takeSample server 0.0 0)

    let clock = Stopwatch.StartNew()
    let until = TimeSpan.FromSeconds settings.Seconds

    let load =
        [ for s, t in totals ->
              let run () =
                  try
                      drive loadgen socket clock until round s t problems
                  with e ->
                      problems.Enqueue $"{s.Name}: the load stream failed: {e.Message}"

              let thread = Thread(run, IsBackground = true, Name = "soak " + s.Name)
              thread.Start()
              thread ]

    let mutable next = 1

    while float next * settings.Sample <= settings.Seconds + 1e-6 do
        let due = TimeSpan.FromSeconds(float next * settings.Sample)
        let wait = due - clock.Elapsed

        if wait > TimeSpan.Zero then
            Thread.Sleep wait

        samples.Add(takeSample server clock.Elapsed.TotalSeconds samples.Count)
        let s = samples[samples.Count - 1]
        eprintfn "soak: t=%.0f s, %d calls, heap %d KiB, RSS %d KiB, %d fds" s.At s.Calls (s.Heap / 1024L) (s.Rss / 1024L) s.Handles
        next <- next + 1

    // The streams end with the time; loadgen drains its calls (at most 2 s) before it closes.
    let late = Stopwatch.StartNew()

    for thread in load do
        if not (thread.Join(TimeSpan.FromSeconds 30.0 - late.Elapsed |> max TimeSpan.Zero)) then
            problems.Enqueue $"{thread.Name}: loadgen still running 30 s after the end of the soak"

    // The runner notices the closed connections at once; give it a moment on a busy machine.
    let idle = Stopwatch.StartNew()

    while server.ConnectionCount > 0 && idle.Elapsed < TimeSpan.FromSeconds 5.0 do
        Thread.Sleep 50

    // Then for the handles: a socket whose last operation is still completing is closed a moment
    // after it is disposed. A leaked handle stays; one that is closing goes within this wait.
    let extraHandles (now: Map<string, int>) =
        [ for KeyValue(what, n) in now do
              let was = before |> Map.tryFind what |> Option.defaultValue 0
              if n > was then $"{n - was} x {what}" ]

    let mutable after = handleKinds ()

    while not (extraHandles after).IsEmpty && idle.Elapsed < TimeSpan.FromSeconds 10.0 do
        Thread.Sleep 100
        after <- handleKinds ()

    let ending = takeSample server clock.Elapsed.TotalSeconds samples.Count
    let endingHandles = handles ()
    server.StopAsync(CancellationToken.None).Wait()

    let samples = List.ofSeq samples
    printTable (samples @ [ ending ])
    printfn "(last row: after the load stopped and every connection was closed)"

    printfn ""
    printfn "| stream | rounds | calls | none | stop | rewrite | ExtraInfo | re-prepares | reconnects | errors |"
    printfn "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

    for s, t in totals do
        printfn
            "| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d |"
            s.Name (total t "rounds") (total t "calls") (total t "actions.none") (total t "actions.stop") (total t "actions.rewrite")
            (total t "extra_info") (total t "re_prepares") (total t "reconnects") (total t "errors_total" + total t "warmup_errors")

        if total t "calls" = 0L then
            problems.Enqueue $"{s.Name}: no calls were made"

        for p in s.Check t do
            problems.Enqueue p

    let loadgenCalls = totals |> List.sumBy (fun (_, t) -> total t "calls")
    printfn ""
    printfn "calls: %d answered to loadgen, %d reached a plugin (runner side), in %.0f s" loadgenCalls ending.Calls settings.Seconds

    // The fit: every sample taken under load after the warm-up (the first third).
    let warmup = settings.Seconds / 3.0
    // (Half a sample of slack: a sample due at the end of the warm-up may be taken a hair early.)
    let fitted = samples |> List.filter (fun s -> s.At >= warmup - settings.Sample / 2.0)

    let verdict (what: string) (pick: Sample -> int64) (threshold: float) =
        let perMinute = slope [ for s in fitted -> s.At / 60.0, float (pick s) / 1024.0 ]
        let first, last = pick fitted.Head, pick (List.last fitted)

        printfn
            "%s slope after the warm-up (t >= %.0f s, %d samples): %+.1f KiB/min (threshold %.0f KiB/min); %d -> %d KiB"
            what warmup fitted.Length perMinute threshold (first / 1024L) (last / 1024L)

        if perMinute > threshold then
            problems.Enqueue $"{what} grows by {perMinute:F1} KiB/min after the warm-up, above the threshold of {threshold:F0} KiB/min"

    if fitted.Length < 3 then
        problems.Enqueue $"only {fitted.Length} samples after the warm-up: run longer or sample more often"
    else
        verdict "heap" _.Heap settings.HeapSlope
        verdict "RSS" _.Rss settings.RssSlope

    printfn "handles: %d before the load, %d after it; connections left: %d" baselineHandles.Length endingHandles.Length ending.Connections

    if ending.Connections > 0 then
        problems.Enqueue $"{ending.Connections} connections still open 5 s after loadgen closed them all"

    // Compared as multisets of what they are, libraries left out: a socket or pipe more is a leak.
    let extra = extraHandles after

    printfn
        "handles other than libraries: %d before the load, %d after it"
        (before |> Map.fold (fun a _ n -> a + n) 0)
        (after |> Map.fold (fun a _ n -> a + n) 0)

    if not extra.IsEmpty then
        let extra = String.Join(", ", Array.ofList extra)
        problems.Enqueue $"more handles open 10 s after the load than before it: {extra}"

    printfn ""

    if problems.IsEmpty then
        printfn "SOAK PASSED"
        0
    else
        for p in problems do
            printfn "FAILED: %s" p

        printfn "SOAK FAILED (%d problems)" problems.Count
        1

/// `soak SECONDS [options]`: 0 when the runner held up, 1 when it did not, 2 for bad usage.
let run (args: string list) =
    match parse args with
    | Error e ->
        eprintfn "%s\n%s" e usage
        2
    | Ok settings -> soak settings
