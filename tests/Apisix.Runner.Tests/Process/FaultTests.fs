/// Faults a runner process meets: clients that leave mid-frame or without reading their answer, a
/// writer that trickles, 10,000 idle connections, frames at and over the size limit, a flood of
/// configurations, expiry. And security: configurations bounded in size and depth, a ReDoS
/// pattern, log lines that the wire cannot break, secrets that never reach the log.
module Apisix.Runner.Tests.Process.FaultTests

open System
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Text
open System.Text.Json
open System.Text.Json.Serialization.Metadata
open System.Threading
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient
open Apisix.Runner.Tests.Support.RunnerProcess
open Apisix.Runner.Tests.Support.ProcessProbe
open Apisix.Runner.Tests.Support.RawConnection
open Apisix.Runner.Tests.Support.Expectations

/// The TestHost's `stop` route these tests use, and its answer.
let private stopConf = [ "stop", """{"status": 403, "body": "no"}""" ]

let private denied (id: uint32) =
    HttpReqCallResp
        { Id = id
          Action = HttpReqCall.Stop { Status = 403us; Headers = [||]; Body = "no"B } }

/// The smallest call: no address, headers or arguments.
let private minimal (token: uint32) (id: uint32) : HttpReqCall.Req =
    { Id = id
      SrcIp = [||]
      Method = Method.GET
      Path = "/"
      Args = [||]
      Headers = [||]
      ConfToken = token }

let private mib (bytes: int) = float bytes / 1048576.0

/// The soft limit on open files of a process ("self" or a pid).
let private openFilesLimit (pid: string) =
    let line = File.ReadLines $"/proc/{pid}/limits" |> Seq.find (fun l -> l.StartsWith("Max open files", StringComparison.Ordinal))

    match line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3] with
    | "unlimited" -> Int64.MaxValue
    | soft -> int64 soft

/// The longest one of these tests may take: a runner that misbehaves fails its test within this
/// time (most fail much sooner, on their own checks), never holds up the run.
let private limit = TimeSpan.FromMinutes 3.0

/// Each test starts a runner process and loads it: they run alone, one after the other, after the
/// parallel tests.
[<Tests>]
let tests =
    testSequenced
    <| testList "Process.Fault" [
        // ---- clients that go away ----

        testTaskWithin limit "clients that close mid-frame or without reading their answer are let go, and the others are served" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                let probe = ProcessProbe.Of sandbox.Socket
                use control = new Client(sandbox.Socket)
                let! stop = control.PrepareAsync(stopConf, "stop")
                let! slow = control.PrepareAsync([ "slow", """{"ms": 200}""" ], "slow")
                let! baseline = probe.SettledSockets()
                let rounds = 25

                for round in 1..rounds do
                    let id = uint32 (10 * round)
                    let frame = encode (HttpReqCallReq(httpRequest stop id))

                    let leaving =
                        [ frame[..3] // the header only
                          frame[.. 3 + (frame.Length - 4) / 2] // half the body
                          frame // a whole call whose answer is never read
                          encode (HttpReqCallReq(httpRequest slow (id + 1u))) ] // still running when the client goes

                    for bytes in leaving do
                        use client = new RawConnection(sandbox.Socket)
                        let! sent = client.SendAsync bytes
                        Expect.isTrue sent "the bytes were sent"

                    // The others are served meanwhile.
                    let! answer = control.RequestAsync(httpRequest stop (id + 2u), unset)
                    same (denied (id + 2u)) answer

                note $"{4 * rounds} clients left; right after, the runner held {probe.Sockets - baseline} of their connections"
                let! released = within (TimeSpan.FromSeconds 15.0) (fun () -> probe.Sockets <= baseline)
                Expect.isTrue released $"the runner still holds {probe.Sockets - baseline} connections of clients that left; {runner.Describe()}"
                note $"after release: {probe.Describe()}"

                use fresh = new Client(sandbox.Socket)
                let! answer = fresh.RequestAsync(httpRequest stop 7u, unset)
                same (denied 7u) answer
                Expect.isFalse (runner.Output |> List.exists (fun l -> l.Contains("A connection failed unexpectedly", StringComparison.Ordinal))) "the runner logged a failed connection"
            }

        // ---- a writer that trickles ----

        // Each trickled frame is held short of its last byte until the other calls are answered, so
        // that they are served while 16 frames are partway in. A runner that gave a waiting frame a
        // thread would need 16 threads more to serve them: the thread count says so, where the
        // timing alone would not (the pool grows, and the calls still come through, only slowly).
        testTaskWithin limit "frames trickled one byte every 100 ms hold no thread: 64 calls on other connections complete meanwhile"
        <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                let probe = ProcessProbe.Of sandbox.Socket
                use setup = new Client(sandbox.Socket)
                let! token = setup.PrepareAsync(stopConf, "stop")
                let threadsBefore = probe.Threads
                let tricklers = 16
                let length = (encode (HttpReqCallReq(minimal token 1000u))).Length
                let othersAnswered = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

                let trickle (n: int) =
                    task {
                        use client = new RawConnection(sandbox.Socket)
                        let id = uint32 (1000 + n)
                        let frame = encode (HttpReqCallReq(minimal token id))

                        for i in 0 .. frame.Length - 1 do
                            if i = frame.Length - 1 then
                                do! othersAnswered.Task

                            let! sent = client.SendAsync(ReadOnlyMemory(frame, i, 1))

                            if not sent then
                                failwith $"trickler {n}: the runner closed the connection after {i} bytes"

                            do! Task.Delay 100

                        let! answer = client.ReadAsync patience
                        return id, answer, Stopwatch.GetTimestamp()
                    }

                let started = Stopwatch.GetTimestamp()
                let trickling = [| for n in 1..tricklers -> trickle n |]
                do! Task.Delay 500 // every frame is partway in
                let threadsTrickling = probe.Threads

                let call (n: int) =
                    task {
                        use client = new Client(sandbox.Socket)
                        let id = uint32 n
                        let! answer = client.RequestAsync(httpRequest token id, unset)
                        same (denied id) answer
                        return Stopwatch.GetTimestamp()
                    }

                let! finished, threadsServing =
                    task {
                        try
                            let! finished = Task.WhenAll [ for n in 1..64 -> call n ]
                            return finished, probe.Threads
                        finally
                            othersAnswered.TrySetResult() |> ignore
                    }

                let! trickled = Task.WhenAll trickling

                for id, answer, _ in trickled do
                    same (denied id) (message answer)

                let seconds (t: int64) = float (t - started) / float Stopwatch.Frequency
                let othersDone = Array.max finished
                let firstTrickled = trickled |> Array.map (fun (_, _, at) -> at) |> Array.min

                note
                    $"{tricklers} frames of {length} bytes trickled, the first answered at %.1f{seconds firstTrickled} s; the 64 other calls were all answered at %.2f{seconds othersDone} s; runner threads: {threadsBefore} before, {threadsTrickling} while trickling, {threadsServing} once the other calls were answered"

                // The tricklers wait for the other calls before their last byte, so compare with an
                // ungated trickle: the calls must be done before one could have been complete.
                Expect.isLessThan
                    (seconds othersDone)
                    (0.1 * float (length - 1))
                    $"the 64 other calls were answered before a trickled frame could be complete ({length} bytes at one per 100 ms)"

                Expect.isLessThan
                    (threadsServing - threadsBefore)
                    (tricklers / 2)
                    $"threads the runner added to serve 64 calls while {tricklers} frames waited ({threadsBefore} before, {threadsServing} after): a thread per waiting frame"
            }

        // ---- many connections ----

        testTaskWithin limit "10,000 idle connections open at once: a new connection is still served" <| fun () ->
            task {
                let wanted = 10_000
                let own = openFilesLimit "self"
                Expect.isTrue (own >= int64 wanted + 1000L) $"ulimit -n is {own}: this test needs at least {wanted + 1000}"
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                let probe = ProcessProbe.Of sandbox.Socket
                let theirs = openFilesLimit (string probe.Pid)
                Expect.isTrue (theirs >= int64 wanted + 1000L) $"the runner's open-file limit is {theirs}: it needs at least {wanted + 1000}"
                use setup = new Client(sandbox.Socket)
                let! token = setup.PrepareAsync(stopConf, "stop")
                let! baseline = probe.SettledSockets()
                let rssBefore = probe.RssMiB
                let idle = ResizeArray<Socket>(wanted)

                try
                    let clock = Stopwatch.StartNew()

                    for _ in 1..wanted do
                        let s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                        idle.Add s
                        s.Connect(UnixDomainSocketEndPoint sandbox.Socket)

                    let! accepted = within (TimeSpan.FromSeconds 60.0) (fun () -> probe.Sockets >= baseline + wanted)
                    Expect.isTrue accepted $"the runner holds {probe.Sockets - baseline} of the {wanted} connections; {runner.Describe()}"
                    let opened = clock.Elapsed
                    let rssOpen = probe.RssMiB
                    let served = Stopwatch.StartNew()

                    do!
                        task {
                            use fresh = new Client(sandbox.Socket)
                            let! answer = fresh.RequestAsync(httpRequest token 1u, unset)
                            same (denied 1u) answer
                            let! again = fresh.PrepareAsync(stopConf, "stop")
                            same token again
                        }

                    note
                        $"{wanted} idle connections open in %.1f{opened.TotalSeconds} s; runner RSS %.1f{rssBefore} -> %.1f{rssOpen} MiB (%.1f{(rssOpen - rssBefore) * 1024.0 / float wanted} KiB per idle connection), {probe.Describe()}; a new connection was served in {served.ElapsedMilliseconds} ms"
                finally
                    for s in idle do
                        s.Dispose()

                let! released = within (TimeSpan.FromSeconds 60.0) (fun () -> probe.Sockets <= baseline)
                Expect.isTrue released $"the runner still holds {probe.Sockets - baseline} connections after they all closed"
                note $"after they closed: {probe.Describe()}"
            }

        // ---- frame size ----

        testTaskWithin limit "a frame of 16,777,215 body bytes is read whole and answered, and the connection goes on" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                let probe = ProcessProbe.Of sandbox.Socket
                use setup = new Client(sandbox.Socket)
                let! token = setup.PrepareAsync(stopConf, "stop")
                let frame = callOfSize token 16u Frame.MaxBodyLength
                let rssBefore = probe.RssMiB
                use client = new RawConnection(sandbox.Socket)
                let sending = client.SendAsync frame
                let! answer = client.ReadAsync(TimeSpan.FromSeconds 60.0)
                let! sent = sending
                Expect.isTrue sent "the frame was sent whole"
                same (denied 16u) (message answer)
                let! _ = client.SendAsync(encode (HttpReqCallReq(httpRequest token 17u)))
                let! next = client.ReadAsync patience
                same (denied 17u) (message next)
                note $"a {frame.Length - 4}-byte body answered; runner RSS %.1f{rssBefore} -> %.1f{probe.RssMiB} MiB"
            }

        testTaskWithin limit "over a MaxFrameBytes of 1 MiB a 16 MiB frame is BAD_REQUEST and a close, and the runner's memory stays within the bound" <| fun () ->
            task {
                let bound = 1_048_576
                use sandbox = new Sandbox()
                use runner = Runner.Ready(sandbox.Socket, [ "Runner__MaxFrameBytes", string bound ])
                let probe = ProcessProbe.Of sandbox.Socket
                use setup = new Client(sandbox.Socket)
                let! token = setup.PrepareAsync(stopConf, "stop")

                // The bound is inclusive: a body of exactly 1 MiB is served (which also warms the pools).
                do!
                    task {
                        use client = new RawConnection(sandbox.Socket)
                        let! _ = client.SendAsync(callOfSize token 1u bound)
                        let! answer = client.ReadAsync patience
                        same (denied 1u) (message answer)
                    }

                let! _ = probe.SettledSockets()
                let rssBefore = probe.RssMiB

                let rejected (frame: byte[]) =
                    task {
                        use client = new RawConnection(sandbox.Socket)
                        // The runner reads the header only, answers and closes: the rest cannot be sent.
                        let sending = client.SendAsync frame
                        let! answer = client.ReadAsync patience
                        same (ErrResp Err.Code.BAD_REQUEST) (message answer)
                        let! after = client.ReadAsync patience
                        Expect.equal after Closed "after"
                        let! _ = sending
                        ()
                    }

                do! rejected (callOfSize token 2u (bound + 1))
                let huge = callOfSize token 3u Frame.MaxBodyLength

                for _ in 1..5 do
                    do! rejected huge

                let! _ = probe.SettledSockets()
                let grown = probe.RssMiB - rssBefore
                note $"6 frames over the {bound}-byte bound, 5 of them {Frame.MaxBodyLength} bytes: runner RSS grew %.1f{grown} MiB ({probe.Describe()})"
                Expect.isTrue (grown <= mib bound + 4.0) $"RSS grew %.1f{grown} MiB while refusing frames over a bound of %.1f{mib bound} MiB"
            }

        // ---- the conf cache ----

        testTaskWithin limit "100,000 PrepareConf with distinct keys keep a cache of capacity 1000 bounded: the oldest tokens are gone, recent ones work" <| fun () ->
            task {
                let total = 100_000
                let early = 10_000
                use sandbox = new Sandbox()
                use runner = Runner.Ready(sandbox.Socket, [ "Runner__ConfCacheCapacity", "1000" ])
                let probe = ProcessProbe.Of sandbox.Socket
                let tokens = Array.zeroCreate<uint32> total
                let batch = 250
                let connections = 4

                let conf (i: int) =
                    encode (
                        PrepareConfReq
                            { Conf = [| TextEntry.Set("stop", $"{{\"status\": 403, \"body\": \"route {i}\"}}") |]
                              Key = $"route-{i}" }
                    )

                // APISIX sends one at a time; written back to back in batches, they take far less time.
                let prepare (first: int) (last: int) (n: int) =
                    task {
                        use client = new RawConnection(sandbox.Socket)
                        let mutable start = first + n * batch

                        while start < last do
                            let stop = min last (start + batch)
                            let! _ = client.SendAsync(Array.concat [ for i in start .. stop - 1 -> conf i ])

                            for i in start .. stop - 1 do
                                let! received = client.ReadAsync patience

                                match message received with
                                | PrepareConfResp r -> tokens[i] <- r.ConfToken
                                | other -> failwith $"PrepareConf {i} was answered {other}"

                            start <- start + connections * batch
                    }

                let clock = Stopwatch.StartNew()
                let! _ = Task.WhenAll [ for n in 0 .. connections - 1 -> prepare 0 early n ]
                let rssEarly = probe.RssMiB
                // The connections run side by side, so their last batches finish in any order: the last
                // 100 keys go after all of them, to be the most recently used whatever the timing.
                let recent = total - 100
                let! _ = Task.WhenAll [ for n in 0 .. connections - 1 -> prepare early recent n ]
                do! prepare recent total 0
                let elapsed = clock.Elapsed
                let rssEnd = probe.RssMiB

                note
                    $"{total} PrepareConf in %.1f{elapsed.TotalSeconds} s (%.0f{float total / elapsed.TotalSeconds}/s); runner RSS %.1f{rssEarly} MiB after {early}, %.1f{rssEnd} MiB after {total}"

                Expect.equal (Array.distinct tokens |> Array.length) total "Array.distinct tokens |> Array.length"
                use client = new Client(sandbox.Socket)

                for i in 0..99 do
                    let! answer = client.RequestAsync(httpRequest tokens[i] (uint32 i), unset)
                    same (ErrResp Err.Code.CONF_TOKEN_NOT_FOUND) answer

                for i in recent .. total - 1 do
                    let! answer = client.RequestAsync(httpRequest tokens[i] (uint32 i), unset)

                    same
                        (HttpReqCallResp
                            { Id = uint32 i
                              Action = HttpReqCall.Stop { Status = 403us; Headers = [||]; Body = Encoding.UTF8.GetBytes $"route {i}" } })
                        answer

                // 90,000 more configurations kept would take far more than this.
                Expect.isTrue (rssEnd <= rssEarly + 32.0) $"RSS grew from %.1f{rssEarly} to %.1f{rssEnd} MiB over 90,000 PrepareConf into a cache of 1000"
            }

        testTaskWithin limit "with APISIX_CONF_EXPIRE_TIME=1 a token idle past its lifetime expires, and its key prepares a new one" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready(sandbox.Socket, [ "APISIX_CONF_EXPIRE_TIME", "1" ])
                use client = new Client(sandbox.Socket)
                let! token = client.PrepareAsync(stopConf, "route")
                let! answer = client.RequestAsync(httpRequest token 1u, unset)
                same (denied 1u) answer
                // Past 1.2 times the expire time after its last use, with several sweeps in between.
                do! Task.Delay 3000
                let! answer = client.RequestAsync(httpRequest token 2u, unset)
                same (ErrResp Err.Code.CONF_TOKEN_NOT_FOUND) answer
                let! fresh = client.PrepareAsync(stopConf, "route")
                Expect.notEqual fresh token "fresh"
                let! answer = client.RequestAsync(httpRequest fresh 3u, unset)
                same (denied 3u) answer
            }

        // ---- security ----

        testTaskWithin limit "a configuration over 1 MiB or nested deeper than 64 levels is refused at PrepareConf, and the log says why" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                use client = new Client(sandbox.Socket)
                let big = "{\"body\": \"" + String('a', 2 * 1_048_576) + "\"}"
                let deep = "{\"headers\": " + String('[', 100) + String(']', 100) + "}"
                let! answer = client.PrepareRawAsync([ "stop", big ], "big")
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                let! answer = client.PrepareRawAsync([ "stop", deep ], "deep")
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                // Within the bounds the same plugin takes its configuration.
                let! token = client.PrepareAsync([ "stop", "{\"status\": 403, \"body\": \"" + String('a', 100_000) + "\"}" ], "fine")
                let! answer = client.RequestAsync(httpRequest token 1u, unset)

                match answer with
                | HttpReqCallResp { Id = 1u; Action = HttpReqCall.Stop s } -> Expect.equal s.Body.Length (100_000) "s.Body.Length"
                | other -> failtest $"answered {other}"

                runner.Signal Signal.SIGTERM
                let! _ = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
                let output = runner.Output

                let says (text: string) = output |> List.exists (fun l -> l.Contains(text, StringComparison.Ordinal))

                Expect.isTrue
                    (says $"(key big): plugin 'stop' rejected its configuration: the configuration is {big.Length} bytes, over the limit of 1048576")
                    $"the log says why the big configuration was refused; {runner.Describe()}"

                Expect.isTrue
                    (says "(key deep): plugin 'stop' rejected its configuration: the configuration nests objects and arrays deeper than 64 levels")
                    $"the log says why the deep configuration was refused; {runner.Describe()}"
            }

        testTaskWithin limit "a ReDoS pattern in response-rewrite does not stall the runner: calls on other connections are answered meanwhile" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready(sandbox.Socket, program = sampleRunnerDll.Value)
                use setup = new Client(sandbox.Socket)

                let! redos =
                    setup.PrepareAsync([ "response-rewrite", """{"status": 202, "filters": [{"regex": "(a+)+$", "scope": "global", "replace": "x"}]}""" ], "redos")

                let! say = setup.PrepareAsync([ "say", """{"body": "hi"}""" ], "say")
                // Without a match timeout this takes about 2^40 steps.
                let upstream = Encoding.UTF8.GetBytes(String('a', 40) + "!")
                use stop = new CancellationTokenSource()

                let attacker (n: int) =
                    task {
                        use client = new Client(sandbox.Socket)
                        let mutable calls = 0

                        while not stop.IsCancellationRequested do
                            let id = uint32 (n * 1000 + calls)

                            let call: HttpRespCall.Req =
                                { Id = id
                                  Status = 200us
                                  Headers = [| TextEntry.Set("content-type", "text/plain") |]
                                  ConfToken = redos }

                            match! client.CallAsync(HttpRespCallReq call, (fun _ -> ValueSome upstream)) with
                            // The pattern gave up: the status is set, the body left as it was.
                            | HttpRespCallResp r when r.Id = id && r.Status = 202us && r.Body.Length = 0 -> calls <- calls + 1
                            | other -> failwith $"ReDoS call {id} was answered {other}"

                        return calls
                    }

                use client = new Client(sandbox.Socket)
                let! _ = client.RequestAsync(httpRequest say 0u, unset) // warm
                let attackers = [| for n in 1..4 -> attacker n |]
                do! Task.Delay 300
                let latencies = ResizeArray<float>()

                for id in 1u .. 20u do
                    let clock = Stopwatch.StartNew()
                    let! answer = client.RequestAsync(httpRequest say id, unset)
                    latencies.Add clock.Elapsed.TotalMilliseconds

                    match answer with
                    | HttpReqCallResp { Id = i; Action = HttpReqCall.Stop s } when i = id -> same "hi"B s.Body
                    | other -> failtest $"call {id} was answered {other}"

                stop.Cancel()
                let! calls = Task.WhenAll attackers

                note
                    $"{Array.sum calls} ReDoS calls on 4 connections answered meanwhile; 20 other calls took at most %.0f{Seq.max latencies} ms (median %.0f{Seq.sort latencies |> Seq.item 10} ms)"

                Expect.isTrue (calls |> Array.forall (fun c -> c >= 1)) "every ReDoS call was answered"
                // A liveness bound, generous for a loaded 2-core machine: without the match timeout the
                // ReDoS calls themselves never end, and fail above.
                Expect.isTrue (Seq.max latencies < 5000.0) $"a call took %.0f{Seq.max latencies} ms while the ReDoS calls ran"
                Expect.exists runner.Output (fun l -> l.Contains("took longer than", StringComparison.Ordinal)) "the runner logged the pattern's timeout"
            }

        testTaskWithin limit "values from the wire reach the log escaped: no line break, terminal escape or other control character" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                use client = new Client(sandbox.Socket)
                let forged = "\nfail: Apisix.Runner[1] forged entry"
                let evil = "evil" + forged + "\u001b[31mred\u001b[0m\u0007\u0000\u007f\u0085\u2028\u202e"
                let! answer = client.PrepareRawAsync([ evil, "{}" ], "key" + forged + "\u001b]0;title\u0007")
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                // The parser's message quotes the configuration.
                let! answer = client.PrepareRawAsync([ "stop", "\u001b[2J" + forged ], "parser")
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                runner.Signal Signal.SIGTERM
                let! _ = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
                let output = runner.Output

                // Shown escaped when a check fails: the raw lines are what is under test.
                let shown = Log.escape (String.Join("\n", output))
                Expect.isFalse (output |> List.exists (Seq.exists unsafeInLog)) $"a line holds a raw control character; the output: {shown}"
                Expect.isFalse (output |> List.exists (fun l -> l.Contains("forged entry", StringComparison.Ordinal) && not (l.Contains("PrepareConf rejected", StringComparison.Ordinal)))) $"a line is forged; the output: {shown}"
                // One entry per rejected configuration, and no more.
                Expect.equal (output |> List.filter (fun l -> l.StartsWith("fail: Apisix.Runner[1]", StringComparison.Ordinal)) |> List.length) 2 $"the log entries; the output: {shown}"

                Expect.exists
                    output
                    (fun l ->
                        l.Contains(
                            @"(key key\nfail: Apisix.Runner[1] forged entry\u001b]0;title\u0007): unknown plugin 'evil\nfail: Apisix.Runner[1] forged entry\u001b[31mred\u001b[0m\u0007\u0000\u007f\u0085\u2028\u202e'",
                            StringComparison.Ordinal
                        ))
                    $"the escaped key and plugin name in the log; the output: {shown}"
            }

        testTaskWithin limit "Authorization and Cookie values never reach the output, not even at Debug level" <| fun () ->
            task {
                use sandbox = new Sandbox()
                use runner = Runner.Ready(sandbox.Socket, [ "Logging__LogLevel__Default", "Debug" ])
                use client = new Client(sandbox.Socket)
                let authorization = "Bearer sekrit-authorization-7f3a"
                let cookie = "session=sekrit-cookie-91c2"

                let headers =
                    [| TextEntry.Set("host", "example.com")
                       TextEntry.Set("authorization", authorization)
                       TextEntry.Set("proxy-authorization", authorization)
                       TextEntry.Set("cookie", cookie) |]

                let! throwing = client.PrepareAsync([ "throw", "" ], "throw")
                let! stop = client.PrepareAsync(stopConf, "stop")
                let! mirror = client.PrepareAsync([ "mirror", "" ], "mirror")
                let! resp = client.PrepareAsync([ "resp", "{}" ], "resp")
                let call token id = client.RequestAsync({ httpRequest token id with Headers = headers }, unset)
                let! answer = call throwing 1u
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                let! answer = call stop 2u
                same (denied 2u) answer
                let! answer = call mirror 3u
                Expect.isTrue ((match answer with HttpReqCallResp r -> r.Id = 3u | _ -> false)) $"answered {answer}"
                let! answer = call 999_999u 4u
                same (ErrResp Err.Code.CONF_TOKEN_NOT_FOUND) answer

                let upstream: HttpRespCall.Req =
                    { Id = 5u
                      Status = 200us
                      Headers = [| TextEntry.Set("set-cookie", cookie); TextEntry.Set("www-authenticate", authorization) |]
                      ConfToken = resp }

                let! answer = client.CallAsync(HttpRespCallReq upstream, (fun _ -> ValueSome "body"B))
                Expect.isTrue ((match answer with HttpRespCallResp r -> r.Id = 5u | _ -> false)) $"answered {answer}"

                // A frame that does not decode, carrying the secrets.
                do!
                    task {
                        use garbage = new RawConnection(sandbox.Socket)
                        let! _ = garbage.SendAsync(frameOf 2uy (Array.append [| 0xFFuy; 0xFFuy; 0xFFuy; 0x7Fuy |] (Encoding.UTF8.GetBytes(authorization + cookie))))
                        let! answer = garbage.ReadAsync patience
                        same (ErrResp Err.Code.BAD_REQUEST) (message answer)
                    }

                runner.Signal Signal.SIGTERM
                let! _ = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
                let output = String.Join("\n", runner.Output)
                // Debug was on, and the calls were logged.
                Expect.stringContains output "dbug: " "the output"
                Expect.stringContains output "Call 2 with token" "the output"
                Expect.stringContains output "Plugin throw failed in call 1" "the output"
                Expect.isFalse (output.Contains "sekrit") "a secret value reached the output"
            }
    ]
