// Turns one `dotnet fsi build.fsx bench` run into docs/performance.md and docs/performance.svg.
// Loaded by build.fsx; reads what the run left in its output folder.
module Report

open System
open System.IO
open System.Text
open System.Text.Json

/// One loadgen result of compare.sh: a target at a connection count in one round.
type Run =
    { Target: string
      Conns: int
      CallsPerS: float
      P50: float
      P99: float
      CpuPerCall: float
      PeakRssKb: int64
      Errors: int64
      OtherCores: float }

let readRuns (resultsJsonl: string) : Run list =
    [ for line in File.ReadAllLines resultsJsonl do
          if not (String.IsNullOrWhiteSpace line) then
              use doc = JsonDocument.Parse line
              let root = doc.RootElement
              let r = root.GetProperty "result"
              let target = r.GetProperty "target"
              let num (e: JsonElement) (name: string) =
                  match e.TryGetProperty name with
                  | true, v when v.ValueKind = JsonValueKind.Number -> v.GetDouble()
                  | _ -> 0.0

              let host =
                  match r.TryGetProperty "host" with
                  | true, h -> num h "other_cores"
                  | _ -> 0.0

              yield
                  { Target = root.GetProperty("target").GetString()
                    Conns = r.GetProperty("conns").GetInt32()
                    CallsPerS = num r "calls_per_s"
                    P50 = num (r.GetProperty "lat_us") "p50"
                    P99 = num (r.GetProperty "lat_us") "p99"
                    CpuPerCall = num target "cpu_us_per_call"
                    PeakRssKb = int64 (num target "vmhwm_kb")
                    Errors = int64 (num r "errors_total")
                    OtherCores = host } ]

let private median (xs: float list) =
    match List.sort xs with
    | [] -> 0.0
    | s when s.Length % 2 = 1 -> s[s.Length / 2]
    | s -> (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2.0

/// Medians over rounds, by (target, conns), keeping the order targets first appear in.
let summarize (runs: Run list) =
    let targets = runs |> List.map _.Target |> List.distinct
    let conns = runs |> List.map _.Conns |> List.distinct |> List.sort

    [ for c in conns do
          for t in targets do
              match runs |> List.filter (fun r -> r.Target = t && r.Conns = c) with
              | [] -> ()
              | xs ->
                  yield
                      { Target = t
                        Conns = c
                        CallsPerS = median (xs |> List.map _.CallsPerS)
                        P50 = median (xs |> List.map _.P50)
                        P99 = median (xs |> List.map _.P99)
                        CpuPerCall = median (xs |> List.map _.CpuPerCall)
                        PeakRssKb = xs |> List.map _.PeakRssKb |> List.max
                        Errors = xs |> List.sumBy _.Errors
                        OtherCores = median (xs |> List.map _.OtherCores) } ]

/// The table of one scenario with ratios to the floor measured in the same run.
let table (rows: Run list) =
    let sb = StringBuilder()
    sb.AppendLine "| conns | target | calls/s | x floor | p50 µs | p99 µs | p99 x floor | CPU µs/call | CPU x floor | peak RSS MB | errors | others |" |> ignore
    sb.AppendLine "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" |> ignore

    for r in rows do
        let floor = rows |> List.find (fun f -> f.Conns = r.Conns && f.Target = "floor")
        let ratio a b = if b = 0.0 then "–" else (a / b).ToString("0.00")

        sb.AppendLine(
            $"| {r.Conns} | {r.Target} | {r.CallsPerS:N0} | {ratio r.CallsPerS floor.CallsPerS} | {r.P50:N1} | {r.P99:N1} | {ratio r.P99 floor.P99} | {r.CpuPerCall:N2} | {ratio r.CpuPerCall floor.CpuPerCall} | {float r.PeakRssKb / 1024.0:N1} | {r.Errors} | {r.OtherCores:N2} |"
        )
        |> ignore

    sb.ToString()

/// Two panels (calls/s and CPU µs per call against connections), one line per target, as SVG.
let chart (title: string) (rows: Run list) =
    let targets = rows |> List.map _.Target |> List.distinct
    let conns = rows |> List.map _.Conns |> List.distinct |> List.sort
    let colors = [| "#444444"; "#1f77b4"; "#d62728"; "#2ca02c"; "#9467bd"; "#ff7f0e" |]
    let w, h, pad = 380.0, 240.0, 48.0
    let sb = StringBuilder()

    let panel (x0: float) (label: string) (value: Run -> float) =
        let top = rows |> List.map value |> List.max |> max 1e-9
        let px i = x0 + pad + float i * (w - 2.0 * pad) / float (max 1 (conns.Length - 1))
        let py v = 30.0 + (h - pad) * (1.0 - v / (top * 1.1))
        sb.Append($"<text x='{x0 + w / 2.0}' y='20' text-anchor='middle' font-size='13'>{label}</text>") |> ignore
        sb.Append($"<line x1='{x0 + pad}' y1='{py 0.0}' x2='{x0 + w - pad}' y2='{py 0.0}' stroke='#999'/>") |> ignore
        sb.Append($"<line x1='{x0 + pad}' y1='30' x2='{x0 + pad}' y2='{py 0.0}' stroke='#999'/>") |> ignore

        for k in 0..4 do
            let v = top * 1.1 * float k / 4.0
            let label = if top >= 10000.0 then $"{v / 1000.0:F0}k" else $"{v:F1}"
            sb.Append($"<text x='{x0 + pad - 4.0}' y='{py v + 4.0}' text-anchor='end' font-size='10'>{label}</text>") |> ignore

        conns |> List.iteri (fun i c -> sb.Append($"<text x='{px i}' y='{py 0.0 + 14.0}' text-anchor='middle' font-size='10'>{c}</text>") |> ignore)
        sb.Append($"<text x='{x0 + w / 2.0}' y='{py 0.0 + 28.0}' text-anchor='middle' font-size='10'>connections</text>") |> ignore

        targets
        |> List.iteri (fun ti t ->
            let points =
                conns
                |> List.mapi (fun i c -> rows |> List.tryFind (fun r -> r.Target = t && r.Conns = c) |> Option.map (fun r -> $"{px i:F1},{py (value r):F1}"))
                |> List.choose id

            let color = colors[ti % colors.Length]
            let joined = String.Join(" ", points)
            sb.Append($"<polyline fill='none' stroke='{color}' stroke-width='2' points='{joined}'/>") |> ignore)

    sb.Append($"<svg xmlns='http://www.w3.org/2000/svg' width='{2.0 * w}' height='{h + 40.0}' font-family='sans-serif'>") |> ignore
    sb.Append("<rect width='100%' height='100%' fill='white'/>") |> ignore
    panel 0.0 $"{title}: calls/s" _.CallsPerS
    panel w $"{title}: CPU µs per call" _.CpuPerCall

    targets
    |> List.iteri (fun ti t ->
        let x = 60.0 + float ti * 130.0
        sb.Append($"<rect x='{x}' y='{h + 22.0}' width='12' height='4' fill='{colors[ti % colors.Length]}'/>") |> ignore
        sb.Append($"<text x='{x + 16.0}' y='{h + 28.0}' font-size='11'>{t}</text>") |> ignore)

    sb.Append("</svg>").ToString()

/// The goals of issue 12 for the default transport (`*-epoll` targets), JIT and Native AOT,
/// against the floor of the same run: paced (a gateway's everyday load) and saturated.
let private targets (scenarios: (string * string * Run list) list) (memory: (string * (float * int64 * int64)) list) =
    let sb = StringBuilder()
    sb.AppendLine "| target | goal | measured | met |" |> ignore
    sb.AppendLine "|---|---|---:|:-:|" |> ignore
    let line (what: string) (goal: string) (value: string) (ok: bool) =
        let verdict = if ok then "yes" else "no"
        sb.AppendLine $"| {what} | {goal} | {value} | {verdict} |" |> ignore

    for plugin, mode, rows in scenarios do
        for t in rows |> List.map _.Target |> List.distinct |> List.filter (fun t -> t.EndsWith "-epoll") do
            for c in [ 16; 64 ] do
                match rows |> List.tryFind (fun r -> r.Target = t && r.Conns = c), rows |> List.tryFind (fun r -> r.Target = "floor" && r.Conns = c) with
                | Some r, Some f ->
                    let cpu = r.CpuPerCall / f.CpuPerCall
                    line $"{plugin}, {mode}, {t}, {c} conns: CPU per call" "<= 1.3x floor" $"{cpu:F2}x" (cpu <= 1.3)

                    if mode = "paced" then
                        let p99 = r.P99 / f.P99
                        line $"{plugin}, {mode}, {t}, {c} conns: p99 latency" "<= 2x floor" $"{p99:F2}x" (p99 <= 2.0)
                    else
                        let x = r.CallsPerS / f.CallsPerS
                        line $"{plugin}, {mode}, {t}, {c} conns: calls/s" ">= 0.8x floor" $"{x:F2}x" (x >= 0.8)
                | _ -> ()

    match memory |> List.tryFind (fun (n, _) -> n = "aot") with
    | Some(_, (ready, idle, loaded)) ->
        line "AOT: socket ready after start" "<= 50 ms" $"{ready:F1} ms" (ready <= 50.0)
        line "AOT: idle RSS" "<= 30 MB" $"{float idle / 1024.0:F1} MB" (float idle / 1024.0 <= 30.0)
        line "AOT: RSS with 1,000 open connections" "<= 100 MB" $"{float loaded / 1024.0:F1} MB" (float loaded / 1024.0 <= 100.0)
    | None -> ()

    sb.ToString()

/// Writes docs/performance.md and one chart per scenario.
let write (docs: string) (rounds: int) (seconds: int) (scenarios: (string * string * Run list) list) (alloc: string list) (micro: string[]) (memory: (string * (float * int64 * int64)) list) =
    let md = StringBuilder()
    let add (s: string) = md.AppendLine s |> ignore
    add "# Performance"
    add ""
    let today = DateTime.UtcNow.ToString "yyyy-MM-dd"
    add $"Generated by `dotnet fsi build.fsx bench` on {today} ({Environment.ProcessorCount} cores, {Runtime.InteropServices.RuntimeInformation.OSDescription})."
    add ""
    add "## Method"
    add ""
    add "`loadgen` (`../shared/loadgen`) drives each runner's socket the way APISIX does: many connections, one call at a time on each, a realistic request (path, 2 args, 10 browser-like headers). `floor` is a C server that only answers correctly: the physical limit of this machine. `compare.sh` runs every setting interleaved over the floor and the runners, waits for a quiet host before each run, and takes medians."
    add $"Each setting ran {rounds} round(s) of {seconds} s after 1 s of warm-up. The machine has 2 shared cores, so only ratios to the floor of the same run mean anything, CPU per call first; `others` is what unrelated processes took during the window (cores)."
    add ""
    add "Two loads: **saturated** (each connection sends its next call as soon as the answer is in; the floor spins 50 µs before it sleeps, its default) and **paced** (`loadgen --rate 10000`: 10,000 calls/s in all, each connection at its own slot, so every call finds the runner idle and what it costs is the wake-up; the floor runs with `--spin-us 0`, as the runners do not spin either)."
    add ""
    add "Targets: the sample runner published as one self-contained file (`jit-*`) and as a Native AOT binary (`aot-*`), each on the Linux event-loop transport (`*-epoll`, the default) and on .NET's socket engine (`*-socket`, `Runner:Transport=socket`). Scenarios: `say` (a Stop), `request-body-rewrite` (a Rewrite), `client-ip` (one ExtraInfo round trip per call: the variable is asked up front; loadgen answers it empty, so the call ends without action)."
    add ""
    add "## Targets"
    add ""
    add (targets scenarios memory)

    for plugin, mode, rows in scenarios do
        let svg = $"performance-{plugin}-{mode}.svg"
        File.WriteAllText(Path.Combine(docs, svg), chart $"{plugin}, {mode}" rows)
        add $"## `{plugin}`, {mode}"
        add ""
        add (table rows)
        add $"![calls/s and CPU per call against connections, {plugin}, {mode}]({svg})"
        add ""

    add "## Allocation per call"
    add ""
    add "An in-process RunnerServer driven by a client that allocates nothing (`bench alloc`), one million calls each:"
    add ""
    add "```"
    for l in alloc do add (l.Trim())
    add "```"
    add ""
    add "## Start and memory"
    add ""
    add "| runner | socket ready after start | idle RSS | RSS with 1,000 open connections |"
    add "|---|---:|---:|---:|"
    for name, (ready, idle, loaded) in memory do
        add $"| {name} | {ready:F1} ms | {float idle / 1024.0:F1} MB | {float loaded / 1024.0:F1} MB |"
    add ""
    add "## Micro-benchmarks (BenchmarkDotNet)"
    add ""
    for m in micro do add m
    add ""
    add (File.ReadAllText(Path.Combine(__SOURCE_DIRECTORY__, "analysis.md")))
    add ""
    add (File.ReadAllText(Path.Combine(__SOURCE_DIRECTORY__, "google-flatbuffers.md")))
    add ""
    add (File.ReadAllText(Path.Combine(__SOURCE_DIRECTORY__, "extensions-packages.md")))
    add ""
    add "## Reproduce"
    add ""
    add "```sh"
    add "BENCH_ROUNDS=3 BENCH_SECONDS=5 dotnet fsi build.fsx bench   # needs gcc, make, jq, python3"
    add "bench/profile.sh saturated 16   # then: where the CPU per call goes (needs perf; also paced, 64)"
    add "```"
    File.WriteAllText(Path.Combine(docs, "performance.md"), md.ToString())
