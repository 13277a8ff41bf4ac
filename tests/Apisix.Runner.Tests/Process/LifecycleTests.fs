/// The TestHost as a process, started as APISIX starts it: its socket file, its settings, its output,
/// and shutdown under load on SIGTERM and SIGINT.
module Apisix.Runner.Tests.Process.LifecycleTests

open System
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient
open Apisix.Runner.Tests.Support.RunnerProcess
open Apisix.Runner.Tests.Support.Expectations
open Apisix.Runner.Tests.Support

/// One call of the load: when its bytes were all sent, when its answer came, and the answer
/// (none when the runner closed the connection instead).
type private Outcome =
    { Id: uint32
      SentAt: int64
      AnsweredAt: int64
      Answer: RunnerMessage option }

let private connections = 64

/// Keeps one connection busy with `slow` calls until `stopped` or the runner closes it; `warm`
/// completes after its second answer.
let private busy (socket: string) (token: uint32) (n: int) (stopped: CancellationToken) (warm: TaskCompletionSource) =
    task {
        use client = new Client(socket)
        let outcomes = ResizeArray<Outcome>()
        let mutable closed = false

        while not closed && not stopped.IsCancellationRequested do
            let id = uint32 (n * 1_000_000 + outcomes.Count)
            client.Send(HttpReqCallReq(httpRequest token id))
            let sentAt = Stopwatch.GetTimestamp()
            let! frame = client.ReadFrameAsync()

            let answer =
                frame
                |> Option.map (fun (frameType, body) ->
                    match Decode.runnerMessage frameType (ReadOnlySpan body) with
                    | Ok m -> m
                    | Error e -> failwith $"undecodable answer to call {id}: {e.Describe()}")

            outcomes.Add
                { Id = id
                  SentAt = sentAt
                  AnsweredAt = Stopwatch.GetTimestamp()
                  Answer = answer }

            if outcomes.Count = 2 then warm.SetResult()
            closed <- answer.IsNone

        return outcomes
    }

/// Probes the runner's socket on a thread of its own (the pool may be slow to run the test's
/// continuations) until a connection is refused: whether that happened while it was still running.
let private refusedWhileRunning (runner: Runner) =
    let outcome = TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously)

    let probe () =
        let mutable refused = false

        while not refused && not runner.HasExited do
            refused <- not (accepts runner.Socket) && not runner.HasExited
            Thread.Sleep 1

        outcome.SetResult refused

    Thread(probe, IsBackground = true).Start()
    outcome.Task

/// These tests measure how fast a process exits: they run alone, after the parallel tests.
[<Tests>]
let tests =
    testSequenced
    <| testList "Process.Lifecycle" [
        testList "the socket file gets the configured mode, 0766 by default" [
            for setting, mode in [ null, "766"; "0700", "700" ] ->
                testCase (if isNull setting then $"unset: {mode}" else $"{setting}: {mode}") <| fun () ->
                    use sandbox = new Sandbox()
                    let env = if isNull setting then [] else [ "Runner__SocketMode", setting ]
                    use _runner = Runner.Ready(sandbox.Socket, env)
                    Expect.equal (Convert.ToString(int (File.GetUnixFileMode sandbox.Socket), 8)) mode "the socket file's mode"
        ]

        testCase "the socket's missing parent directories are created" <| fun () ->
            use sandbox = new Sandbox()
            use runner = Runner.Ready(sandbox.Path "run/apisix/runner.sock")
            Expect.isTrue (File.Exists runner.Socket) "the socket file exists"

        testList "a stale socket file is replaced" [
            for stale in [ "a leftover regular file"; "the socket of a process that died" ] ->
                testCase stale <| fun () ->
                    use sandbox = new Sandbox()

                    if stale = "a leftover regular file" then
                        File.WriteAllText(sandbox.Socket, "left over")
                    else
                        // .NET unlinks a socket file when the socket is disposed; a Python process that binds and exits does not.
                        let bind = "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])"
                        run "/usr/bin/python3" [ "-c"; bind; sandbox.Socket ] "" |> ignore

                    Expect.isTrue (File.Exists sandbox.Socket && not (accepts sandbox.Socket)) "the stale file is in place"
                    use _runner = Runner.Ready sandbox.Socket
                    ()
        ]

        testCaseTask "the live socket of another process is not taken over" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use other = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                other.Bind(UnixDomainSocketEndPoint sandbox.Socket)
                other.Listen 8
                use runner = new Runner(sandbox.Socket, [])
                let! code = runner.WaitForExit(TimeSpan.FromSeconds 15.0)
                Expect.isTrue (code <> 0) (runner.Describe())
                Expect.stringContains (String.Join("\n", runner.Output)) sandbox.Socket "the runner's output"
                Expect.isTrue (accepts sandbox.Socket) "the other process still serves its socket"
            }

        testList "a bad setting stops the runner at once with a message naming it" [
            for name, value, named in
                [ "APISIX_LISTEN_ADDRESS", null, "APISIX_LISTEN_ADDRESS"
                  "APISIX_LISTEN_ADDRESS", "unix:relative.sock", "APISIX_LISTEN_ADDRESS"
                  "APISIX_CONF_EXPIRE_TIME", "soon", "APISIX_CONF_EXPIRE_TIME"
                  "Runner__SocketMode", "abc", "SocketMode"
                  "Runner__CallTimeout", "-1", "CallTimeout"
                  "Runner__MaxFrameBytes", "10", "MaxFrameBytes" ] ->
                testCaseTask (if isNull value then $"{name} unset" else $"{name}={value}") <| fun () ->
                    task {
                        use sandbox = new Sandbox()
                        use runner = new Runner(sandbox.Socket, [ name, value ])
                        // Generous for a loaded machine; a runner that waits for a connection instead never exits.
                        let! code = runner.WaitForExit(TimeSpan.FromSeconds 15.0)
                        Expect.isTrue (code <> 0) (runner.Describe())
                        Expect.stringContains (String.Join("\n", runner.Output)) named "the runner's output"
                        Expect.isFalse (File.Exists sandbox.Socket) "no socket file is left behind"
                    }
        ]

        // APISIX may keep its token cache across a runner restart (path_for_test, a container, a
        // respawn racing a worker): a token of the old process must not name a route of the new one.
        testCaseTask "every token of a runner is unknown to the next runner on the same socket with the same routes" <| fun () ->
            task {
                use sandbox = new Sandbox()
                let routes = [ for i in 1..50 -> $"route-{i}", [ "stop", $"{{\"status\": {200 + i}}}" ] ]

                let prepareAll () =
                    task {
                        use client = new Client(sandbox.Socket)
                        let tokens = ResizeArray<uint32>()

                        for key, conf in routes do
                            let! token = client.PrepareAsync(conf, key)
                            tokens.Add token

                        return List.ofSeq tokens
                    }

                let first =
                    task {
                        use runner = Runner.Ready sandbox.Socket
                        let! tokens = prepareAll ()
                        runner.Signal Signal.SIGTERM
                        let! code = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
                        Expect.equal code 0 "the first runner stops cleanly"
                        return tokens
                    }

                let! old = first
                Expect.equal (List.distinct old).Length routes.Length "one token per route"
                use runner = Runner.Ready sandbox.Socket
                use client = new Client(sandbox.Socket)

                for token in old do
                    match! client.RequestAsync(httpRequest token 1u, unset) with
                    | ErrResp Err.Code.CONF_TOKEN_NOT_FOUND -> ()
                    | other -> failtest $"token {token} of the first runner was answered {other} by the second"

                // The same routes get tokens of the new runner's own, which serve.
                let! fresh = prepareAll ()
                Expect.isEmpty (Set.intersect (set old) (set fresh)) "no token of the first runner is handed out again"

                match! client.RequestAsync(httpRequest fresh.Head 2u, unset) with
                | HttpReqCallResp r -> Expect.equal r.Id 2u "the new token serves"
                | other -> failtest $"a fresh token was answered {other}"
            }

        testCaseTask "a normal run prints one line when it listens, one when it stops, and nothing per call" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket

                do!
                    task {
                        use client = new Client(sandbox.Socket)
                        let! vars = client.PrepareAsync([ "vars", """{"names": ["remote_addr"]}""" ], "vars")
                        let! stop = client.PrepareAsync([ "stop", """{"status": 403}""" ], "stop")

                        for id in 1u .. 50u do
                            for token in [ vars; stop; 999_999u ] do
                                match! client.RequestAsync(httpRequest token id, (fun _ -> ValueSome "127.0.0.1"B)) with
                                | HttpReqCallResp r -> Expect.equal r.Id id "the answer's id"
                                | ErrResp Err.Code.CONF_TOKEN_NOT_FOUND -> ()
                                | other -> failtest $"call {id} with token {token} was answered {other}"
                    }

                // The console logger writes from a queue: only after the exit is all output in.
                runner.Signal Signal.SIGTERM
                let! _ = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
                match runner.Output with
                | [ listening; stopped ] ->
                    Expect.stringStarts listening "info: Apisix.Runner.Lifetime[10] Listening on unix:" "the first line"
                    Expect.stringContains listening sandbox.Socket "the first line names the socket"
                    let transport = TransportUnderTest.effective (RunnerOptions())
                    Expect.stringContains listening $"{transport} transport" "the first line names the transport"
                    Expect.stringStarts stopped "info: Apisix.Runner.Lifetime[14] Stopped" "the last line"
                | output -> failtest $"expected two lines, one at start and one at stop; the output: {String.Join('\n', output)}"
            }

        // APISIX keeps idle connections to the runner in its keep-alive pool when it reloads.
        testCaseTask "SIGTERM with an idle keep-alive connection open exits 0" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                use client = new Client(sandbox.Socket)
                let! _ = client.PrepareAsync([ "stop", "{}" ], "stop")
                runner.Signal Signal.SIGTERM
                let! code = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
                Expect.equal code 0 (runner.Describe())
                Expect.isFalse (File.Exists sandbox.Socket) "the socket file is removed"
            }

        // 64 connections busy with 200 ms calls when the signal comes.
        testList "on a signal every call sent before it is answered, and the runner exits 0 within 1 s" [
            for signal in [ Signal.SIGTERM; Signal.SIGINT ] ->
                testCaseTask (string signal) <| fun () ->
                    task {
                        use sandbox = new Sandbox()
                        use runner = Runner.Ready sandbox.Socket

                        let! token =
                            task {
                                use client = new Client(sandbox.Socket)
                                return! client.PrepareAsync([ "slow", """{"ms": 200}""" ], "slow")
                            }

                        use stop = new CancellationTokenSource()
                        let warm = Array.init connections (fun _ -> TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously))
                        let load = Array.init connections (fun n -> busy sandbox.Socket token n stop.Token warm[n])
                        do! Task.WhenAll(warm |> Array.map _.Task).WaitAsync(TimeSpan.FromSeconds 30.0)
                        do! Task.Delay 50 // lands the signal in the middle of the calls rather than at their edges

                        // A call whose bytes were all sent before this instant must be answered. One sent after it
                        // (by a connection that had just checked `stop`) may be answered or cut off.
                        let signalledAt = Stopwatch.GetTimestamp()
                        let signalledClock = DateTime.Now
                        stop.Cancel()
                        runner.Signal signal

                        let refused = refusedWhileRunning runner
                        let! code = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
                        // When the test process reaped the runner: recorded on .NET's SIGCHLD path, so it does not
                        // include delays of the test's own continuations, and is never earlier than the real exit.
                        let took = runner.ExitTime - signalledClock
                        note $"{signal}: exited {code} after {took.TotalMilliseconds:F0} ms"
                        let! outcomes = Task.WhenAll(load).WaitAsync(TimeSpan.FromSeconds 10.0)
                        let outcomes = Seq.concat outcomes |> List.ofSeq
                        let before = outcomes |> List.filter (fun o -> o.SentAt < signalledAt)
                        let lost = before |> List.filter _.Answer.IsNone
                        let inFlight = before |> List.filter (fun o -> o.Answer.IsSome && o.AnsweredAt > signalledAt)
                        note $"{before.Length} calls sent before the signal, {inFlight.Length} of them in flight, {lost.Length} lost"

                        for o in outcomes do
                            match o.Answer with
                            | Some(HttpReqCallResp { Id = id; Action = HttpReqCall.NoAction }) when id = o.Id -> ()
                            | None -> ()
                            | other -> failtest $"call {o.Id} was answered {other}"

                        Expect.isTrue (inFlight.Length >= connections / 2) $"only {inFlight.Length} calls were in flight at the signal"
                        Expect.isTrue lost.IsEmpty $"{lost.Length} of {before.Length} calls sent before {signal} got no answer; {runner.Describe()}"
                        let! refused = refused
                        Expect.isTrue refused "new connections were refused while the runner drained"
                        Expect.equal code 0 (runner.Describe())
                        Expect.isFalse (File.Exists sandbox.Socket) "the socket file is removed"
                        Expect.isTrue (took < TimeSpan.FromSeconds 1.0) $"exited {took.TotalMilliseconds:F0} ms after {signal}; {runner.Describe()}"
                    }
        ]
    ]
