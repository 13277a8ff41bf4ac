/// The runner's metrics and traces, read the way OpenTelemetry reads them (MeterListener,
/// ActivityListener), and their cost when nobody listens. Sequenced: the instruments are
/// process-wide, and other tests' calls must not land in these counts.
module Apisix.Runner.Tests.Runtime.TelemetryTests

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Diagnostics
open System.Diagnostics.Metrics
open System.Net.Sockets
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient

/// One measurement: the instrument, the value, the tags.
type private Measured =
    { Instrument: string
      Value: float
      Tags: Map<string, string> }

/// Collects every measurement of the runner's meter while alive.
type private Collector() =
    let measured = ConcurrentQueue<Measured>()
    let listener = new MeterListener()

    let record (instrument: Instrument) (value: float) (tags: ReadOnlySpan<KeyValuePair<string, obj>>) =
        let mutable map = Map.empty

        for t in tags do
            map <- map.Add(t.Key, string t.Value)

        measured.Enqueue { Instrument = instrument.Name; Value = value; Tags = map }

    do
        listener.InstrumentPublished <-
            fun instrument l ->
                if instrument.Meter.Name = Telemetry.Name then
                    l.EnableMeasurementEvents instrument

        listener.SetMeasurementEventCallback<int64>(fun i v tags _ -> record i (float v) tags)
        listener.SetMeasurementEventCallback<int>(fun i v tags _ -> record i (float v) tags)
        listener.SetMeasurementEventCallback<float>(fun i v tags _ -> record i v tags)
        listener.Start()

    /// Reads the observable instruments now.
    member _.Observe() = listener.RecordObservableInstruments()

    /// The sum of an instrument's values whose tags include every one of `tags`.
    member _.Sum(instrument: string, tags: (string * string) list) =
        measured
        |> Seq.filter (fun m -> m.Instrument = instrument && tags |> List.forall (fun (k, v) -> m.Tags.TryFind k = Some v))
        |> Seq.sumBy _.Value

    /// How many values an instrument recorded with these tags.
    member _.Count(instrument: string, tags: (string * string) list) =
        measured
        |> Seq.filter (fun m -> m.Instrument = instrument && tags |> List.forall (fun (k, v) -> m.Tags.TryFind k = Some v))
        |> Seq.length

    interface IDisposable with
        member _.Dispose() = listener.Dispose()

let private plugins =
    [ Plugin.ofFilter "t-stop" (respond 403 [] "no")
      Plugin.ofFilter "t-rewrite" (setHeader "x-a" "1")
      Plugin.ofFilter "t-throw" (fun _ _ -> failwith "boom")
      Plugin.ofFilter "t-var" (fun req _ ->
          ValueTask<Decision>(
              task {
                  let! _ = req.Var "remote_addr"
                  return Decision.Continue
              }
          )) ]

let private answerVar (_: ExtraInfo.Info) = ValueSome "127.0.0.1"B

[<Tests>]
let tests =
    testSequenced
    <| testList "Runtime.Telemetry" [
        testCaseTask "the meter counts calls by plugin, phase and outcome, their durations, prepares, ExtraInfo and what is open" <| fun () ->
            task {
                use collector = new Collector()
                use server = new TestServer(plugins)
                use client = server.Connect()
                let! stopToken = client.PrepareAsync([ "t-stop", "" ], "t-stop")
                let! rewriteToken = client.PrepareAsync([ "t-rewrite", "" ], "t-rewrite")
                let! throwToken = client.PrepareAsync([ "t-throw", "" ], "t-throw")
                let! varToken = client.PrepareAsync([ "t-var", "" ], "t-var")
                let! rejected = client.PrepareRawAsync([ "no-such-plugin", "" ], "unknown")
                Expect.equal rejected (ErrResp Err.Code.SERVICE_UNAVAILABLE) "the unknown plugin is rejected"

                for token, id in [ stopToken, 1u; rewriteToken, 2u; throwToken, 3u; varToken, 4u ] do
                    let! _ = client.RequestAsync(httpRequest token id, answerVar)
                    ()

                collector.Observe()
                let calls outcome plugin = collector.Sum("apisix.runner.calls", [ "plugin", plugin; "phase", "request"; "outcome", outcome ])
                Expect.equal (calls "stop" "t-stop") 1.0 "the Stop"
                Expect.equal (calls "rewrite" "t-rewrite") 1.0 "the Rewrite"
                Expect.equal (calls "error" "t-throw") 1.0 "the plugin that threw"
                Expect.equal (calls "pass" "t-var") 1.0 "the call that changed nothing"
                Expect.equal (collector.Count("apisix.runner.call.duration", [ "phase", "request" ])) 4 "a duration per call"
                Expect.equal (collector.Sum("apisix.runner.conf.prepares", [ "result", "accepted" ])) 4.0 "accepted prepares"
                Expect.equal (collector.Sum("apisix.runner.conf.prepares", [ "result", "rejected" ])) 1.0 "rejected prepares"
                Expect.equal (collector.Sum("apisix.runner.extra_info", [ "type", "var" ])) 1.0 "the variable asked of APISIX"
                Expect.equal (collector.Sum("apisix.runner.connections", [])) 1.0 "the one connection open"
                Expect.equal (collector.Sum("apisix.runner.conf.cached", [])) 4.0 "the four prepared configurations"
            }

        testCaseTask "a call's span continues the request's traceparent and carries the plugin and the outcome" <| fun () ->
            task {
                let spans = ConcurrentQueue<Activity>()

                use listener =
                    new ActivityListener(
                        ShouldListenTo = (fun source -> source.Name = Telemetry.Name),
                        Sample = SampleActivity<ActivityContext>(fun _ -> ActivitySamplingResult.AllDataAndRecorded),
                        ActivityStopped = (fun a -> spans.Enqueue a)
                    )

                ActivitySource.AddActivityListener listener
                use server = new TestServer(plugins)
                use client = server.Connect()
                let! token = client.PrepareAsync([ "t-stop", "" ], "t-stop")
                let traceId = "0af7651916cd43dd8448eb211c80319c"
                let parentId = "b7ad6b7169203331"
                let request = httpRequest token 7u

                let traced =
                    { request with
                        Headers = Array.append request.Headers [| TextEntry.Set("traceparent", $"00-{traceId}-{parentId}-01") |] }

                let! _ = client.RequestAsync(traced, unset)
                let! _ = client.RequestAsync(httpRequest token 8u, unset)
                let calls = spans |> Seq.filter (fun a -> a.OperationName = "apisix.runner.call") |> List.ofSeq
                Expect.hasLength calls 2 "a span per call"
                let first = calls.Head
                Expect.equal (first.TraceId.ToHexString()) traceId "the trace of the request"
                Expect.equal (first.ParentSpanId.ToHexString()) parentId "under the gateway's span"
                Expect.equal (first.GetTagItem "apisix.runner.plugin") (box "t-stop") "the plugin"
                Expect.equal (first.GetTagItem "apisix.runner.outcome") (box "stop") "the outcome"
                Expect.equal (first.GetTagItem "apisix.runner.phase") (box "request") "the phase"
                Expect.notEqual (calls[1].TraceId.ToHexString()) traceId "a call without traceparent starts a trace of its own"
            }

        testCaseTask "with nobody listening, a call allocates nothing in the runner" <| fun () ->
            task {
                use server = new TestServer(plugins)
                use client = server.Connect()
                let! token = client.PrepareAsync([ "t-stop", "" ], "t-stop")
                // A client that allocates nothing per call: the frame encoded once, the answer read into one buffer.
                use b = new FrameBuilder()

                let frame =
                    match Encode.httpReqCallReq b (httpRequest token 9u) with
                    | Ok f -> f.ToArray()
                    | Error e -> failwith (e.Describe())

                use socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                socket.Connect(UnixDomainSocketEndPoint server.SocketPath)
                let answer = Array.zeroCreate<byte> 4096

                let call () =
                    socket.Send frame |> ignore
                    let mutable got = socket.Receive answer

                    while got < 4 || got < 4 + ((int answer[1] <<< 16) ||| (int answer[2] <<< 8) ||| int answer[3]) do
                        got <- got + socket.Receive(answer, got, answer.Length - got, SocketFlags.None)

                    if answer[0] <> byte FrameType.HttpReqCall then
                        failtest "the runner answered with an error frame"

                for _ in 1..20000 do
                    call ()

                let before = GC.GetTotalAllocatedBytes true

                for _ in 1..20000 do
                    call ()

                let perCall = float (GC.GetTotalAllocatedBytes true - before) / 20000.0
                // The server's 100 ms deadline tick enumerates its sessions: a few dozen bytes a tick.
                Expect.isLessThan perCall 1.0 $"bytes allocated per call ({perCall:F2})"
            }
    ]
