namespace Apisix.Runner

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Diagnostics
open System.Diagnostics.Metrics

/// The runner's metrics (Meter `Apisix.Runner`) and traces (ActivitySource `Apisix.Runner`), free
/// when nobody listens: every measurement first checks that its instrument is enabled, and a span
/// starts only when the source has listeners. docs/observability.md lists the instruments.
module Telemetry =
    /// The name of the runner's Meter and ActivitySource.
    [<Literal>]
    let Name = "Apisix.Runner"

    let private version = typeof<Outcome>.Assembly.GetName().Version.ToString()

    /// The runner's meter.
    let meter = new Meter(Name, version)

    /// The runner's activity source: one span per call.
    let source = new ActivitySource(Name, version)

    let internal calls =
        meter.CreateCounter<int64>("apisix.runner.calls", "{call}", "Calls answered, by the plugin that ran last, phase and outcome")

    let internal duration =
        meter.CreateHistogram<float>("apisix.runner.call.duration", "s", "Time from a call's frame to its answer, by phase and outcome")

    let internal prepared =
        meter.CreateCounter<int64>("apisix.runner.conf.prepares", "{conf}", "PrepareConf requests, by result (accepted, rejected)")

    let internal extraInfo =
        meter.CreateCounter<int64>("apisix.runner.extra_info", "{exchange}", "ExtraInfo round trips with APISIX, by what was asked (var, req_body, resp_body)")

    let internal bufferWaits =
        meter.CreateCounter<int64>("apisix.runner.memory.waits", "{wait}", "Frames and ExtraInfo replies that waited for the memory budget (Runner:MaxBufferedBytes), by what waited (frame, reply)")

    let internal stalls =
        meter.CreateCounter<int64>("apisix.runner.loop.stalls", "{stall}", "Event loops held by one call past the stall threshold")

    let internal phaseName (phase: CallPhase) =
        if phase = CallPhase.Request then "request" else "response"

    let internal infoName (info: ExtraInfo.Info) =
        match info with
        | ExtraInfo.Var _ -> "var"
        | ExtraInfo.ReqBody -> "req_body"
        | ExtraInfo.RespBody -> "resp_body"

    /// The servers running in this process, whose counts the gauges add up.
    let private servers = ConcurrentDictionary<obj, struct (Func<int> * Func<int> * Func<int64>)>()

    let private total (pick: struct (Func<int> * Func<int> * Func<int64>) -> Func<'T>) (zero: 'T) (add: 'T -> 'T -> 'T) =
        Func<'T>(fun () ->
            let mutable sum = zero

            for KeyValue(_, counts) in servers do
                sum <- add sum ((pick counts).Invoke())

            sum)

    let private connections =
        meter.CreateObservableUpDownCounter<int>("apisix.runner.connections", total (fun struct (c, _, _) -> c) 0 (+), "{connection}", "Connections from APISIX open now")

    let private cached =
        meter.CreateObservableUpDownCounter<int>("apisix.runner.conf.cached", total (fun struct (_, c, _) -> c) 0 (+), "{conf}", "Prepared route configurations held now")

    let private buffered =
        meter.CreateObservableUpDownCounter<int64>(
            "apisix.runner.memory.buffered",
            total (fun struct (_, _, b) -> b) 0L (+),
            "By",
            "Bytes held now against the memory budget: large frames, ExtraInfo replies and answers"
        )

    /// Adds a running server's connection and configuration counts and its buffered bytes to the
    /// gauges, until disposed.
    let internal observe (server: obj) (connectionCount: Func<int>) (configurationCount: Func<int>) (bufferedBytes: Func<int64>) : IDisposable =
        servers[server] <- struct (connectionCount, configurationCount, bufferedBytes)

        { new IDisposable with
            member _.Dispose() = servers.TryRemove server |> ignore }

    /// Starts the span of a call, as a child of the W3C `traceparent` the request carries when
    /// there is one; null when nobody listens.
    let internal startCall (request: Request) : Activity =
        if not (source.HasListeners()) then
            null
        else
            let phase = request.Phase
            let traceparent = if phase = CallPhase.Request then request.GetHeader "traceparent" else null
            let tracestate = if isNull traceparent then null else request.GetHeader "tracestate"
            let mutable parent = Unchecked.defaultof<ActivityContext>

            let activity =
                if not (isNull traceparent) && ActivityContext.TryParse(traceparent, tracestate, true, &parent) then
                    source.StartActivity("apisix.runner.call", ActivityKind.Server, parent)
                else
                    source.StartActivity("apisix.runner.call", ActivityKind.Server)

            if not (isNull activity) then
                activity.SetTag("apisix.runner.phase", phaseName phase) |> ignore

            activity

    /// Records how a call ended: the counter, the duration (from `started`, a Stopwatch timestamp,
    /// 0 when not measured) and the span.
    let internal endCall (phase: CallPhase) (plugin: string) (outcome: Outcome) (started: int64) (activity: Activity) =
        if calls.Enabled then
            calls.Add(
                1L,
                KeyValuePair("plugin", box plugin),
                KeyValuePair("phase", box (phaseName phase)),
                KeyValuePair("outcome", box outcome.Name)
            )

        if started <> 0L then
            duration.Record(
                Stopwatch.GetElapsedTime(started).TotalSeconds,
                KeyValuePair("phase", box (phaseName phase)),
                KeyValuePair("outcome", box outcome.Name)
            )

        if not (isNull activity) then
            activity.SetTag("apisix.runner.plugin", plugin).SetTag("apisix.runner.outcome", outcome.Name) |> ignore

            if outcome = Outcome.Error || outcome = Outcome.Timeout || outcome = Outcome.Broken then
                activity.SetStatus(ActivityStatusCode.Error, outcome.Name) |> ignore

            activity.Dispose()
