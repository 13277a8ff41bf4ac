/// Faults a runner process meets: clients that leave mid-frame or without reading their answer, a
/// writer that trickles, 10,000 idle connections, frames at and over the size limit, a flood of
/// configurations, expiry. And security: configurations bounded in size and depth, a ReDoS
/// pattern, log lines that the wire cannot break, secrets that never reach the log.
module Apisix.Runner.Tests.FaultTests

open System
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Text
open System.Text.Json
open System.Text.Json.Serialization.Metadata
open System.Threading
open System.Threading.Tasks
open Xunit
open Xunit.Abstractions
open Apisix.Runner
open Apisix.Runner.Filter
open Apisix.Runner.Tests.ApisixClient
open Apisix.Runner.Tests.RunnerProcess
open Apisix.Runner.Tests.FuzzTests

/// The TestHost's `stop` route these tests use, and its answer.
let private stopConf = [ "stop", """{"status": 403, "body": "no"}""" ]

let private denied (id: uint32) =
    HttpReqCallResp
        { Id = id
          Action = HttpReqCall.Stop { Status = 403us; Headers = [||]; Body = "no"B } }

/// The message in a raw read; fails the test on anything else.
let private message (received: Received) =
    match received with
    | Got(t, body) ->
        match Decode.runnerMessage t (ReadOnlySpan body) with
        | Ok m -> m
        | Error e -> failwith $"undecodable frame from the runner: {e.Describe()}"
    | other -> failwith $"expected a frame from the runner, got {other}"

/// The smallest call: no address, headers or arguments.
let private minimal (token: uint32) (id: uint32) : HttpReqCall.Req =
    { Id = id
      SrcIp = [||]
      Method = Method.GET
      Path = "/"
      Args = [||]
      Headers = [||]
      ConfToken = token }

/// A call whose frame body is exactly `size` bytes: the last thing encoded is the value of an
/// `x-big` header, so its length sets the body's to the byte.
let private sized (token: uint32) (id: uint32) (size: int) =
    let build fill =
        encode (
            HttpReqCallReq
                { httpRequest token id with
                    Headers = [| TextEntry.Set("host", "example.com"); TextEntry.Set("x-big", String('a', fill)) |] }
        )

    let frame = build (size - ((build 0).Length - 4))

    if frame.Length - 4 <> size then
        failwithf "built a body of %d bytes, not %d" (frame.Length - 4) size

    frame

let private mib (bytes: int) = float bytes / 1048576.0

/// The soft limit on open files of a process ("self" or a pid).
let private openFilesLimit (pid: string) =
    let line = File.ReadLines $"/proc/{pid}/limits" |> Seq.find (fun l -> l.StartsWith("Max open files", StringComparison.Ordinal))

    match line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3] with
    | "unlimited" -> Int64.MaxValue
    | soft -> int64 soft

[<Collection("runner processes")>]
type FaultTests(log: ITestOutputHelper) =

    // ---- clients that go away ----

    [<Fact>]
    member _.``clients that close mid-frame or without reading their answer are let go, and the others are served``() =
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
                    Assert.True(sent, "the bytes were sent")

                // The others are served meanwhile.
                let! answer = control.RequestAsync(httpRequest stop (id + 2u), unset)
                same (denied (id + 2u)) answer

            log.WriteLine $"{4 * rounds} clients left; right after, the runner held {probe.Sockets - baseline} of their connections"
            let! released = within (TimeSpan.FromSeconds 15.0) (fun () -> probe.Sockets <= baseline)
            Assert.True(released, $"the runner still holds {probe.Sockets - baseline} connections of clients that left; {runner.Describe()}")
            log.WriteLine $"after release: {probe.Describe()}"

            use fresh = new Client(sandbox.Socket)
            let! answer = fresh.RequestAsync(httpRequest stop 7u, unset)
            same (denied 7u) answer
            Assert.DoesNotContain(runner.Output, fun l -> l.Contains("A connection failed unexpectedly", StringComparison.Ordinal))
        }

    // ---- a writer that trickles ----

    [<Fact>]
    member _.``frames trickled one byte every 100 ms hold no thread: 64 calls on other connections complete meanwhile``() =
        task {
            use sandbox = new Sandbox()
            use runner = Runner.Ready sandbox.Socket
            let probe = ProcessProbe.Of sandbox.Socket
            use setup = new Client(sandbox.Socket)
            let! token = setup.PrepareAsync(stopConf, "stop")
            let threadsBefore = probe.Threads
            let tricklers = 16
            let length = (encode (HttpReqCallReq(minimal token 1000u))).Length

            let trickle (n: int) =
                task {
                    use client = new RawConnection(sandbox.Socket)
                    let id = uint32 (1000 + n)
                    let frame = encode (HttpReqCallReq(minimal token id))

                    for i in 0 .. frame.Length - 1 do
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

            let! finished = Task.WhenAll [ for n in 1..64 -> call n ]
            let! trickled = Task.WhenAll trickling

            for id, answer, _ in trickled do
                same (denied id) (message answer)

            let seconds (t: int64) = float (t - started) / float Stopwatch.Frequency
            let othersDone = Array.max finished
            let firstTrickled = trickled |> Array.map (fun (_, _, at) -> at) |> Array.min

            log.WriteLine
                $"{tricklers} frames of {length} bytes trickled, the first answered at %.1f{seconds firstTrickled} s; the 64 other calls were all answered at %.2f{seconds othersDone} s; runner threads: {threadsBefore} before, {threadsTrickling} while trickling"

            Assert.True(othersDone < firstTrickled, "the 64 other calls were answered while the frames were still trickling")
        }

    // ---- many connections ----

    [<Fact>]
    member _.``10,000 idle connections open at once: a new connection is still served``() =
        task {
            let wanted = 10_000
            let own = openFilesLimit "self"
            Assert.True(own >= int64 wanted + 1000L, $"ulimit -n is {own}: this test needs at least {wanted + 1000}")
            use sandbox = new Sandbox()
            use runner = Runner.Ready sandbox.Socket
            let probe = ProcessProbe.Of sandbox.Socket
            let theirs = openFilesLimit (string probe.Pid)
            Assert.True(theirs >= int64 wanted + 1000L, $"the runner's open-file limit is {theirs}: it needs at least {wanted + 1000}")
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
                Assert.True(accepted, $"the runner holds {probe.Sockets - baseline} of the {wanted} connections; {runner.Describe()}")
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

                log.WriteLine
                    $"{wanted} idle connections open in %.1f{opened.TotalSeconds} s; runner RSS %.1f{rssBefore} -> %.1f{rssOpen} MiB (%.1f{(rssOpen - rssBefore) * 1024.0 / float wanted} KiB per idle connection), {probe.Describe()}; a new connection was served in {served.ElapsedMilliseconds} ms"
            finally
                for s in idle do
                    s.Dispose()

            let! released = within (TimeSpan.FromSeconds 60.0) (fun () -> probe.Sockets <= baseline)
            Assert.True(released, $"the runner still holds {probe.Sockets - baseline} connections after they all closed")
            log.WriteLine $"after they closed: {probe.Describe()}"
        }

    // ---- frame size ----

    [<Fact>]
    member _.``a frame of 16,777,215 body bytes is read whole and answered, and the connection goes on``() =
        task {
            use sandbox = new Sandbox()
            use runner = Runner.Ready sandbox.Socket
            let probe = ProcessProbe.Of sandbox.Socket
            use setup = new Client(sandbox.Socket)
            let! token = setup.PrepareAsync(stopConf, "stop")
            let frame = sized token 16u Frame.MaxBodyLength
            let rssBefore = probe.RssMiB
            use client = new RawConnection(sandbox.Socket)
            let sending = client.SendAsync frame
            let! answer = client.ReadAsync(TimeSpan.FromSeconds 60.0)
            let! sent = sending
            Assert.True(sent, "the frame was sent whole")
            same (denied 16u) (message answer)
            let! _ = client.SendAsync(encode (HttpReqCallReq(httpRequest token 17u)))
            let! next = client.ReadAsync patience
            same (denied 17u) (message next)
            log.WriteLine $"a {frame.Length - 4}-byte body answered; runner RSS %.1f{rssBefore} -> %.1f{probe.RssMiB} MiB"
        }

    [<Fact>]
    member _.``over a MaxFrameBytes of 1 MiB a 16 MiB frame is BAD_REQUEST and a close, and the runner's memory stays within the bound``() =
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
                    let! _ = client.SendAsync(sized token 1u bound)
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
                    Assert.Equal(Closed, after)
                    let! _ = sending
                    ()
                }

            do! rejected (sized token 2u (bound + 1))
            let huge = sized token 3u Frame.MaxBodyLength

            for _ in 1..5 do
                do! rejected huge

            let! _ = probe.SettledSockets()
            let grown = probe.RssMiB - rssBefore
            log.WriteLine $"6 frames over the {bound}-byte bound, 5 of them {Frame.MaxBodyLength} bytes: runner RSS grew %.1f{grown} MiB ({probe.Describe()})"
            Assert.True(grown <= mib bound + 4.0, $"RSS grew %.1f{grown} MiB while refusing frames over a bound of %.1f{mib bound} MiB")
        }

    // ---- the conf cache ----

    [<Fact>]
    member _.``100,000 PrepareConf with distinct keys keep a cache of capacity 1000 bounded: the oldest tokens are gone, recent ones work``() =
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
                          Key = ValueSome $"route-{i}" }
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

            log.WriteLine
                $"{total} PrepareConf in %.1f{elapsed.TotalSeconds} s (%.0f{float total / elapsed.TotalSeconds}/s); runner RSS %.1f{rssEarly} MiB after {early}, %.1f{rssEnd} MiB after {total}"

            Assert.Equal(total, Array.distinct tokens |> Array.length)
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
            Assert.True(rssEnd <= rssEarly + 32.0, $"RSS grew from %.1f{rssEarly} to %.1f{rssEnd} MiB over 90,000 PrepareConf into a cache of 1000")
        }

    [<Fact>]
    member _.``with APISIX_CONF_EXPIRE_TIME=1 a token idle past its lifetime expires, and its key prepares a new one``() =
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
            Assert.NotEqual(token, fresh)
            let! answer = client.RequestAsync(httpRequest fresh 3u, unset)
            same (denied 3u) answer
        }

    // ---- security ----

    [<Fact>]
    member _.``a configuration over 1 MiB or nested deeper than 64 levels is refused at PrepareConf, and the log says why``() =
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
            | HttpReqCallResp { Id = 1u; Action = HttpReqCall.Stop s } -> Assert.Equal(100_000, s.Body.Length)
            | other -> Assert.Fail $"answered {other}"

            runner.Signal Signal.SIGTERM
            let! _ = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
            let output = runner.Output

            Assert.Contains(
                output,
                fun l ->
                    l.Contains(
                        $"(key big): plugin 'stop' rejected its configuration: the configuration is {big.Length} bytes, over the limit of 1048576",
                        StringComparison.Ordinal
                    )
            )

            Assert.Contains(
                output,
                fun l ->
                    l.Contains(
                        "(key deep): plugin 'stop' rejected its configuration: the configuration nests objects and arrays deeper than 64 levels",
                        StringComparison.Ordinal
                    )
            )
        }

    [<Fact>]
    member _.``a ReDoS pattern in response-rewrite does not stall the runner: calls on other connections are answered meanwhile``() =
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
                | other -> Assert.Fail $"call {id} was answered {other}"

            stop.Cancel()
            let! calls = Task.WhenAll attackers

            log.WriteLine
                $"{Array.sum calls} ReDoS calls on 4 connections answered meanwhile; 20 other calls took at most %.0f{Seq.max latencies} ms (median %.0f{Seq.sort latencies |> Seq.item 10} ms)"

            Assert.True(calls |> Array.forall (fun c -> c >= 1), "every ReDoS call was answered")
            // A liveness bound, generous for a loaded 2-core machine: without the match timeout the
            // ReDoS calls themselves never end, and fail above.
            Assert.True(Seq.max latencies < 5000.0, $"a call took %.0f{Seq.max latencies} ms while the ReDoS calls ran")
            Assert.Contains(runner.Output, fun l -> l.Contains("took longer than", StringComparison.Ordinal))
        }

    [<Fact>]
    member _.``values from the wire reach the log escaped: no line break, terminal escape or other control character``() =
        task {
            use sandbox = new Sandbox()
            use runner = Runner.Ready sandbox.Socket
            use client = new Client(sandbox.Socket)
            let forged = "\nfail: Apisix.Runner.RunnerServer[1]\r\n      forged entry"
            let evil = "evil" + forged + "\u001b[31mred\u001b[0m\u0007\u0000\u007f\u0085\u2028\u202e"
            let! answer = client.PrepareRawAsync([ evil, "{}" ], "key" + forged + "\u001b]0;title\u0007")
            same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
            // The parser's message quotes the configuration.
            let! answer = client.PrepareRawAsync([ "stop", "\u001b[2J" + forged ], "parser")
            same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
            runner.Signal Signal.SIGTERM
            let! _ = runner.WaitForExit(TimeSpan.FromSeconds 10.0)
            let output = runner.Output

            for line in output do
                log.WriteLine line

            Assert.DoesNotContain(output, fun l -> l |> Seq.exists unsafeInLog)
            Assert.DoesNotContain(output, fun l -> l.TrimStart().StartsWith("forged entry", StringComparison.Ordinal))
            // One entry per rejected configuration, and no more.
            Assert.Equal(2, output |> List.filter (fun l -> l.StartsWith("fail: Apisix.Runner.RunnerServer[1]", StringComparison.Ordinal)) |> List.length)

            Assert.Contains(
                output,
                fun l ->
                    l.Contains(
                        @"(key key\nfail: Apisix.Runner.RunnerServer[1]\r\n      forged entry\u001b]0;title\u0007): unknown plugin 'evil\nfail: Apisix.Runner.RunnerServer[1]\r\n      forged entry\u001b[31mred\u001b[0m\u0007\u0000\u007f\u0085\u2028\u202e'",
                        StringComparison.Ordinal
                    )
            )
        }

    [<Fact>]
    member _.``Authorization and Cookie values never reach the output, not even at Debug level``() =
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
            Assert.True((match answer with HttpReqCallResp r -> r.Id = 3u | _ -> false), $"answered {answer}")
            let! answer = call 999_999u 4u
            same (ErrResp Err.Code.CONF_TOKEN_NOT_FOUND) answer

            let upstream: HttpRespCall.Req =
                { Id = 5u
                  Status = 200us
                  Headers = [| TextEntry.Set("set-cookie", cookie); TextEntry.Set("www-authenticate", authorization) |]
                  ConfToken = resp }

            let! answer = client.CallAsync(HttpRespCallReq upstream, (fun _ -> ValueSome "body"B))
            Assert.True((match answer with HttpRespCallResp r -> r.Id = 5u | _ -> false), $"answered {answer}")

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
            Assert.Contains("dbug: ", output)
            Assert.Contains("Call 2 with token", output)
            Assert.Contains("Plugin throw failed in call 1", output)
            Assert.DoesNotContain("sekrit", output)
        }

// ---- configuration bounds, in process ----

[<CLIMutable>]
type BoundedConfig = { Body: string; Nested: JsonElement }

let private boundedInfo = PluginConfig.reflectionTypeInfo<BoundedConfig> ()

let private bindBounded (json: string) =
    PluginConfig.bind boundedInfo PluginConfig.accept json

/// `{"nested": [[…]]}` with `levels` of nesting in all, the outer object included.
let private nested (levels: int) =
    "{\"nested\": " + String('[', levels - 1) + String(']', levels - 1) + "}"

/// `{"body": "aaa…"}` of exactly `size` bytes.
let private ofSize (size: int) =
    "{\"body\": \"" + String('a', size - 12) + "\"}"

[<Fact>]
let ``a configuration of 1 MiB binds; one byte more is refused with its size and the limit`` () =
    match bindBounded (ofSize PluginConfig.MaxBytes) with
    | Ok c -> Assert.Equal(PluginConfig.MaxBytes - 12, c.Body.Length)
    | Error e -> Assert.Fail $"refused: {e}"

    match bindBounded (ofSize (PluginConfig.MaxBytes + 1)) with
    | Error [ problem ] -> Assert.Equal("the configuration is 1048577 bytes, over the limit of 1048576", problem)
    | other -> Assert.Fail $"expected one problem, got {other}"

[<Fact>]
let ``the size limit counts UTF-8 bytes, not characters`` () =
    let json = "{\"body\": \"" + String('é', 600_000) + "\"}"
    Assert.True(json.Length < PluginConfig.MaxBytes)

    match bindBounded json with
    | Error [ problem ] -> Assert.Equal("the configuration is 1200012 bytes, over the limit of 1048576", problem)
    | other -> Assert.Fail $"expected one problem, got {other}"

[<Fact>]
let ``nesting of 64 levels binds; 65 is refused with the limit`` () =
    match bindBounded (nested 64) with
    | Ok c -> Assert.Equal(JsonValueKind.Array, c.Nested.ValueKind)
    | Error e -> Assert.Fail $"refused: {e}"

    match bindBounded (nested 65) with
    | Error [ problem ] -> Assert.Equal("the configuration nests objects and arrays deeper than 64 levels", problem)
    | other -> Assert.Fail $"expected one problem, got {other}"

[<Fact>]
let ``the depth limit holds whatever the plugin's serializer options allow, and brackets in strings are not nesting`` () =
    let options = JsonSerializerOptions(MaxDepth = 1000, PropertyNameCaseInsensitive = true, TypeInfoResolver = DefaultJsonTypeInfoResolver())
    let info = options.GetTypeInfo typeof<BoundedConfig> :?> JsonTypeInfo<BoundedConfig>

    for levels in [ 65; 500 ] do
        match PluginConfig.bind info PluginConfig.accept (nested levels) with
        | Error [ problem ] -> Assert.Equal("the configuration nests objects and arrays deeper than 64 levels", problem)
        | other -> Assert.Fail $"{levels} levels: expected one problem, got {other}"

    match PluginConfig.bind info PluginConfig.accept ("{\"body\": \"" + String('[', 5000) + String('{', 5000) + "\"}") with
    | Ok c -> Assert.Equal(10_000, c.Body.Length)
    | Error e -> Assert.Fail $"refused: {e}"

[<Fact>]
let ``every plugin's configuration is bounded, whatever parser it brings`` () =
    let raw = Plugin.create "raw" (fun (json: string) -> Ok json.Length) (fun _ -> pass)

    match Plugin.prepare raw (String('x', PluginConfig.MaxBytes + 1)) with
    | Error problem -> Assert.Equal("the configuration is 1048577 bytes, over the limit of 1048576", problem)
    | Ok _ -> Assert.Fail "an oversized configuration was taken"

    match Plugin.prepare raw (String('[', 65)) with
    | Error problem -> Assert.Equal("the configuration nests objects and arrays deeper than 64 levels", problem)
    | Ok _ -> Assert.Fail "a configuration nested 65 levels deep was taken"

    // Not JSON, but within bounds: the plugin's own parser decides.
    for json in [ "ok"; String('x', PluginConfig.MaxBytes) ] do
        match Plugin.prepare raw json with
        | Ok _ -> ()
        | Error problem -> Assert.Fail $"a configuration of {json.Length} characters was refused: {problem}"

// ---- log escaping, in process ----

[<Theory>]
[<InlineData("plain text, ünïcødé 👋 \\n", "plain text, ünïcødé 👋 \\n")>]
[<InlineData("a\nb\rc\td", "a\\nb\\rc\\td")>]
[<InlineData("\u001b[31mred\u0007\u0000\u007f\u0085", "\\u001b[31mred\\u0007\\u0000\\u007f\\u0085")>]
[<InlineData("line\u2028para\u2029 \u202eevil\u2066", "line\\u2028para\\u2029 \\u202eevil\\u2066")>]
let ``Log.escape writes every control character as an escape and leaves the rest`` (value: string, expected: string) =
    Assert.Equal(expected, Log.escape value)

[<Fact>]
let ``Log.escape cuts a long value and says how much was left out; a clean short value is returned as is`` () =
    Assert.Equal(String('x', Log.MaxValueLength) + "... (3976 more characters)", Log.escape (String('x', 5000)))
    Assert.Equal(String('x', Log.MaxValueLength) + "... (1 more characters)", Log.escape (String('x', Log.MaxValueLength + 1)))
    let clean = String('x', Log.MaxValueLength)
    Assert.Same(clean, Log.escape clean)

[<Fact>]
let ``a rejected configuration is one log line that lists at most 10 problems, escaped`` () =
    let line = Log.problems [ for i in 1..3000 -> $"unknown plugin 'p{i}\n'" ]
    Assert.StartsWith(@"unknown plugin 'p1\n'; unknown plugin 'p2\n'; ", line)
    Assert.Contains(@"unknown plugin 'p10\n'; and 2990 more", line)
    Assert.DoesNotContain("p11", line)
    Assert.Equal("one; two", Log.problems [ "one"; "two" ])

[<Fact>]
let ``an exception message that echoes the request is escaped in the log, with its stack trace kept`` () =
    task {
        let echo =
            Plugin.ofFilter "echo" (fun req _ -> raise (InvalidOperationException("no such host: " + (req.Header "host" |> ValueOption.defaultValue ""))))

        use server = new TestServer([ echo ])
        use client = server.Connect()
        let! token = client.PrepareAsync([ "echo", "" ], "echo")
        let host = "x\nfail: forged[0]\r\n\u001b[31mred"
        let! answer = client.RequestAsync({ httpRequest token 5u with Headers = [| TextEntry.Set("host", host) |] }, unset)
        same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
        let entry = server.Log.Entries |> List.find (fun e -> not (isNull e.Exception))
        let escaped = @"no such host: x\nfail: forged[0]\r\n\u001b[31mred"
        Assert.Equal(escaped, entry.Exception.Message)
        let shown = entry.Exception.ToString()
        Assert.StartsWith("System.InvalidOperationException: " + escaped, shown)
        Assert.Contains(" at ", shown) // the stack trace is kept
        Assert.DoesNotContain(shown, fun c -> unsafeInLog c && c <> '\n')
        Assert.DoesNotContain(shown.Split '\n', fun l -> l.StartsWith("fail: forged", StringComparison.Ordinal))
        Assert.DoesNotContain(entry.Message, fun c -> unsafeInLog c)
    }
