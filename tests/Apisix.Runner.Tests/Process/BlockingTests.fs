/// Plugins that hold their thread: a blocking wait, a computation that never ends. Whatever the
/// transport runs plugins on, the other connections must keep being answered, and a plugin that
/// never finishes must still get its call answered at the deadline and let the runner stop.
module Apisix.Runner.Tests.Process.BlockingTests

open System
open System.Diagnostics
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient
open Apisix.Runner.Tests.Support.RunnerProcess
open Apisix.Runner.Tests.Support.Expectations
open Apisix.Runner.Tests.Support

let private limit = TimeSpan.FromMinutes 2.0

/// Calls `token` on a connection of its own until `until` passes; the latency of each call (ms).
let private callUntil (socket: string) (token: uint32) (first: uint32) (until: int64) =
    task {
        use client = new Client(socket)
        let latencies = ResizeArray<float>()
        let mutable id = first

        while Stopwatch.GetTimestamp() < until do
            let started = Stopwatch.GetTimestamp()

            match! client.RequestAsync(httpRequest token id, unset) with
            | HttpReqCallResp r when r.Id = id -> latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds)
            | other -> failtest $"call {id} was answered {other}"

            id <- id + 1u

        return latencies
    }

let private percentile (p: float) (sorted: float[]) =
    sorted[min (sorted.Length - 1) (int (ceil (p * float sorted.Length)) - 1)]

[<Tests>]
let tests =
    testSequenced
    <| testList "Process.Blocking" [
        testTaskWithin limit "a plugin that blocks its thread for 1.5 s holds up none of 64 other connections" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                use setup = new Client(sandbox.Socket)
                let! blocking = setup.PrepareAsync([ "block", """{"ms": 1500}""" ], "block")
                let! quick = setup.PrepareAsync([ "stop", """{"status": 200}""" ], "stop")
                let until = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 4L
                let blocked = callUntil sandbox.Socket blocking 1u until
                let others = [| for c in 1..64 -> callUntil sandbox.Socket quick (uint32 c * 1_000_000u) until |]
                let! blockedCalls = blocked
                let! otherCalls = Task.WhenAll others
                let latencies = otherCalls |> Array.collect _.ToArray() |> Array.sort
                let transport = TransportUnderTest.effective (RunnerOptions())

                note
                    $"blocking plugin ({transport} transport): {blockedCalls.Count} calls of 1.5 s; meanwhile {latencies.Length} calls on 64 other connections, p50 %.1f{percentile 0.5 latencies} ms, p99 %.1f{percentile 0.99 latencies} ms, max %.1f{Array.last latencies} ms"

                Expect.isGreaterThanOrEqual blockedCalls.Count 2 "the blocking calls were answered, one after the other"
                Expect.isGreaterThan latencies.Length 640 "the other connections kept being answered"
                // Queued behind a 1.5 s block, a call would take at least that long: none did.
                Expect.isLessThan (Array.last latencies) 1000.0 "no call waited for the blocking plugin"
            }

        testTaskWithin limit "a plugin that blocks on a new connection's first call holds up no connection opened after it" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                use setup = new Client(sandbox.Socket)
                let! blocking = setup.PrepareAsync([ "block", """{"ms": 1500}""" ], "block")
                let! quick = setup.PrepareAsync([ "stop", """{"status": 200}""" ], "stop")

                // The call is written as soon as the connection is, so it is there when the runner
                // accepts; the next connection must not wait for the plugin.
                for attempt in 1u .. 3u do
                    use first = new Client(sandbox.Socket)
                    let held = first.RequestAsync(httpRequest blocking attempt, unset)
                    do! Task.Delay 200
                    use next = new Client(sandbox.Socket)
                    let started = Stopwatch.GetTimestamp()
                    let! answer = next.RequestAsync(httpRequest quick attempt, unset)
                    let waited = Stopwatch.GetElapsedTime(started).TotalMilliseconds
                    Expect.isTrue (answer.IsHttpReqCallResp) $"answered {answer}"
                    Expect.isLessThan waited 1000.0 $"attempt {attempt}: the new connection's call did not wait for the blocked one"
                    let! first' = held
                    Expect.isTrue first'.IsHttpReqCallResp $"the blocked call was answered too: {first'}"
            }

        testTaskWithin limit "calls that block from their connection's first frame are answered at the deadline all the same" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready(sandbox.Socket, [ "Runner__CallTimeout", "00:00:01" ])
                use setup = new Client(sandbox.Socket)
                let! blocking = setup.PrepareAsync([ "block", """{"ms": 6000}""" ], "block")
                // The runner is stopped while the connections open and their calls are written, so
                // each session finds its call before it ever waits; the deadline must hold for it as
                // for any other. Two, not more: on the socket transport each blocked call holds a pool
                // thread, and a third would wait for the pool to grow (docs/writing-plugins.md).
                runner.Signal Signal.SIGSTOP
                let! stopped = eventually (fun () -> runner.IsStopped)
                Expect.isTrue stopped "the runner stopped"
                let clients = [| for _ in 1..2 -> new Client(sandbox.Socket) |]
                let calls = clients |> Array.mapi (fun i c -> c.RequestAsync(httpRequest blocking (uint32 i + 1u), unset))
                let started = Stopwatch.GetTimestamp()
                runner.Signal Signal.SIGCONT
                let! answers = Task.WhenAll calls
                let waited = Stopwatch.GetElapsedTime started

                for answer in answers do
                    Expect.equal answer (ErrResp Err.Code.SERVICE_UNAVAILABLE) "each call's answer is the deadline's"

                Expect.isLessThan waited (TimeSpan.FromSeconds 4.0) "answered at the deadline, not when the plugins returned"

                for c in clients do
                    (c :> IDisposable).Dispose()
            }

        testTaskWithin limit "a plugin that computes forever gets its call answered SERVICE_UNAVAILABLE at the deadline, and the runner goes on" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready(sandbox.Socket, [ "Runner__CallTimeout", "00:00:01" ])
                use spinning = new Client(sandbox.Socket)
                let! spin = spinning.PrepareAsync([ "spin", "" ], "spin")
                let started = Stopwatch.GetTimestamp()
                let! answer = spinning.RequestAsync(httpRequest spin 1u, unset)
                let waited = Stopwatch.GetElapsedTime started
                Expect.equal answer (ErrResp Err.Code.SERVICE_UNAVAILABLE) "the deadline's answer"
                Expect.isTrue (waited >= TimeSpan.FromSeconds 1.0) $"answered at the deadline, not before ({waited})"
                Expect.isTrue (spinning.IsClosedAsync().Result) "the connection of the timed-out call is closed"
                use other = new Client(sandbox.Socket)
                let! stop = other.PrepareAsync([ "stop", """{"status": 200}""" ], "stop")

                for id in 2u .. 20u do
                    match! other.RequestAsync(httpRequest stop id, unset) with
                    | HttpReqCallResp r -> Expect.equal r.Id id "answered while the plugin still computes"
                    | other -> failtest $"call {id} was answered {other}"

                // The thread the plugin holds does not hold up the runner's shutdown either.
                runner.Signal Signal.SIGTERM
                let! code = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
                Expect.equal code 0 $"stopped by SIGTERM: {runner.Describe()}"
            }
    ]
