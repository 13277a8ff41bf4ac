/// The memory budget: claims taken at once or in line (replies before frames, each in order), bytes
/// given back moving the line on, claims given up, the way out of calls that hold bytes and wait
/// for replies, closing, trimming after a burst; and in a server, large ExtraInfo replies waiting
/// for the budget while calls hold large frames.
module Apisix.Runner.Tests.Runtime.MemoryBudgetTests

open System
open System.Diagnostics
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging.Abstractions
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient

let private budgetOf (limit: int64) = MemoryBudget(limit, NullLogger.Instance)

let private granted (t: Task<bool>) = t.IsCompletedSuccessfully && t.Result
let private givenUp (t: Task<bool>) = t.IsCompletedSuccessfully && not t.Result

/// A continuation of the grant runs asynchronously; the task is complete when the grant is made.
let private waiting (t: Task<bool>) = not t.IsCompleted

let private frame (b: MemoryBudget) (bytes: int64) = b.TakeAsync(bytes, Claim.Frame, 0L, CancellationToken.None)

let private reply (b: MemoryBudget) (bytes: int64) (held: int64) = b.TakeAsync(bytes, Claim.Reply, held, CancellationToken.None)

/// A call that stops with the length of the request body APISIX gave it, in a header.
let private bodyLength =
    Plugin.ofFilter "body-length" (fun req resp ->
        ValueTask<Decision>(
            task {
                let! body = req.Body()
                resp.Status <- 200
                resp.SetHeader("x-length", string (body |> ValueOption.map Array.length |> ValueOption.defaultValue -1))
                return Decision.Stop
            }
        ))

[<Tests>]
let tests =
    testList "Runtime.MemoryBudget" [
        testCase "a claim that fits is taken at once, and given back" <| fun () ->
            let b = budgetOf 100L
            Expect.isTrue (b.TryTake 60L) "60 of 100"
            Expect.isTrue (b.TryTake 40L) "40 more"
            Expect.equal b.InUse 100L "in use"
            Expect.isFalse (b.TryTake 1L) "one byte over the limit"
            b.Give 100L
            Expect.equal b.InUse 0L "all given back"

        testCase "claims that do not fit wait in order of arrival, and bytes given back move the line on" <| fun () ->
            let b = budgetOf 100L
            Expect.isTrue (b.TryTake 60L) "60 of 100"
            let first = frame b 50L
            let second = frame b 30L
            Expect.isTrue (waiting first) "50 more do not fit"
            Expect.isTrue (waiting second) "30 would fit, but wait behind the 50: no claim is passed over for ever"
            Expect.isFalse (b.TryTake 10L) "nor does a claim at once while others wait"
            Expect.equal b.Waiting 2 "waiting"
            b.Give 60L
            Expect.isTrue (granted first) "the first, once 60 are given back"
            Expect.isTrue (granted second) "and the second behind it"
            Expect.equal b.InUse 80L "in use"

        testCase "replies go before frames: a call in progress finishes before another starts" <| fun () ->
            let b = budgetOf 100L
            Expect.isTrue (b.TryTake 100L) "all of it"
            let f = frame b 50L
            let r = reply b 50L 0L
            b.Give 50L
            Expect.isTrue (granted r) "the reply, although it came later"
            Expect.isTrue (waiting f) "the frame still waits"
            b.Give 50L
            Expect.isTrue (granted f) "then the frame"

        testCase "a claim larger than the limit is granted when nothing else is held" <| fun () ->
            let b = budgetOf 100L
            Expect.isTrue (b.TryTake 10L) "10"
            let big = frame b 150L
            Expect.isTrue (waiting big) "waits while 10 are held"
            b.Give 10L
            Expect.isTrue (granted big) "granted alone"
            Expect.equal b.InUse 150L "in use"

        // Two calls hold a frame each, the whole budget, and each asks for a reply as large: neither
        // can be granted within the limit, and neither frees anything while it waits. The head of the
        // line goes past the limit, by one claim, and the line moves on as calls end.
        testCase "calls that hold bytes and all wait for replies do not wait for ever: the first goes past the limit" <| fun () ->
            let b = budgetOf 100L
            Expect.isTrue (b.TryTake 50L) "call A's frame"
            Expect.isTrue (b.TryTake 50L) "call B's frame"
            let a = reply b 50L 50L
            Expect.isTrue (waiting a) "A waits while B could still free its bytes"
            let c = frame b 10L
            let r = reply b 50L 50L
            Expect.isTrue (granted a) "once B waits too, A's reply is granted past the limit"
            Expect.isTrue (waiting r) "B's reply waits for A"
            Expect.isTrue (waiting c) "and so does a new frame"
            Expect.equal b.InUse 150L "the limit plus one claim"
            b.Give 100L // call A ends
            Expect.isTrue (granted r) "B's reply, within the limit"
            Expect.isTrue (waiting c) "the frame waits for room"
            Expect.equal b.InUse 100L "in use"
            b.Give 100L // call B ends
            Expect.isTrue (granted c) "then the frame"
            Expect.equal b.InUse 10L "in use"

        testCase "a claim given up leaves the line, and the claims behind it move on" <| fun () ->
            let b = budgetOf 100L
            Expect.isTrue (b.TryTake 80L) "80"
            use cancel = new CancellationTokenSource()
            let big = b.TakeAsync(50L, Claim.Frame, 0L, cancel.Token)
            let small = frame b 10L
            Expect.isTrue (waiting small) "10 would fit, but wait behind the 50"
            cancel.Cancel()
            Expect.isTrue (givenUp big) "given up"
            Expect.isTrue (granted small) "the claim behind it"
            Expect.equal b.InUse 90L "in use"
            Expect.isTrue (givenUp (b.TakeAsync(50L, Claim.Frame, 0L, cancel.Token))) "a claim with a token cancelled already gives up at once"
            Expect.equal b.Waiting 0 "nothing waits"

        testCase "a reply given up no longer counts as waiting: the others are not granted past the limit for it" <| fun () ->
            let b = budgetOf 100L
            Expect.isTrue (b.TryTake 50L) "call A's frame"
            Expect.isTrue (b.TryTake 50L) "call B's frame"
            use cancel = new CancellationTokenSource()
            let a = b.TakeAsync(50L, Claim.Reply, 50L, cancel.Token)
            cancel.Cancel()
            Expect.isTrue (givenUp a) "A's reply given up (its call timed out)"
            let r = reply b 50L 50L
            Expect.isTrue (waiting r) "B's reply waits for A's bytes, which A's end gives back"
            b.Give 50L
            Expect.isTrue (granted r) "granted once A gave its frame back"

        testCase "answers are counted without waiting, and hold later claims back" <| fun () ->
            let b = budgetOf 100L
            b.Charge 100L
            let f = frame b 10L
            Expect.isTrue (waiting f) "a frame waits behind an answer's bytes"
            b.Charge 20L
            Expect.equal b.InUse 120L "an answer is never held back"
            b.Give 120L
            Expect.isTrue (granted f) "granted once the answers are sent"

        testCase "closing gives up every claim in line and every later one" <| fun () ->
            let b = budgetOf 100L
            Expect.isTrue (b.TryTake 100L) "all of it"
            let f = frame b 10L
            let r = reply b 10L 0L
            b.Close()
            Expect.isTrue (givenUp f) "the frame"
            Expect.isTrue (givenUp r) "the reply"
            Expect.isTrue (givenUp (frame b 1L)) "a later claim"
            Expect.isFalse (b.TryTake 1L) "a claim at once"
            Expect.equal b.Waiting 0 "nothing waits"

        testCase "after a burst, an idle budget trims once: not while it moves, not twice for one burst" <| fun () ->
            let b = budgetOf (1L <<< 30)
            let now = Stopwatch.GetTimestamp()
            let second = Stopwatch.Frequency
            Expect.isFalse (b.TrimIfIdle(now + 10L * second)) "nothing was given back"
            Expect.isTrue (b.TryTake(8L <<< 20)) "a large frame"
            b.Give(8L <<< 20)
            let given = Stopwatch.GetTimestamp()
            Expect.isFalse (b.TrimIfIdle given) "right after the bytes were given back"
            Expect.isTrue (b.TrimIfIdle(given + 2L * second)) "a second later"
            Expect.isFalse (b.TrimIfIdle(given + 3L * second)) "not again for the same burst"
            Expect.isTrue (b.TryTake(8L <<< 20)) "another large frame"
            b.Give(8L <<< 20)
            let again = Stopwatch.GetTimestamp()
            Expect.isFalse (b.TrimIfIdle(again + second + second / 2L)) "within 5 s of the last trim"
            Expect.isTrue (b.TrimIfIdle(given + 8L * second)) "5 s after the last"
            b.Close()
            Expect.isFalse (b.TrimIfIdle(given + 100L * second)) "never once closed"

        // Each call's frame is 1 MiB and its plugin asks for a 1 MiB body: a call holds its frame
        // while its reply waits. With room for two frames, two calls hold it all and both wait for
        // replies; without the way out above they would wait until their deadline.
        testCase "in a server, calls that hold large frames and wait for large ExtraInfo replies are all answered, and the bytes all given back" <| fun () ->
            let frameBytes = 1 <<< 20

            use server =
                new TestServer(
                    [ bodyLength ],
                    (fun o ->
                        o.MaxFrameBytes <- frameBytes
                        o.MaxBufferedBytes <- 2L * int64 (frameBytes + 4) + 1000L),
                    TimeProvider.System
                )

            let token =
                use setup = server.Connect()
                setup.PrepareAsync([ "body-length", "" ], "body").Result

            let body = Array.create (frameBytes - 64) 'b'B
            let header = String('h', frameBytes - 512)

            // Each client on a thread of its own: its sends block until the runner reads them.
            let call (n: int) =
                Task.Factory.StartNew(
                    (fun () ->
                        use client = server.Connect()
                        let id = uint32 n

                        let request =
                            { httpRequest token id with
                                Headers = [| TextEntry.Set("host", "example.com"); TextEntry.Set("x-big", header) |] }

                        let answer = client.RequestAsync(request, (fun _ -> ValueSome body)).Result

                        match answer with
                        | HttpReqCallResp { Id = i; Action = HttpReqCall.Stop s } when i = id ->
                            Expect.contains s.Headers (TextEntry.Set("x-length", string body.Length)) $"call {id} saw the whole body"
                        | other -> failtest $"call {id} was answered {other}"),
                    TaskCreationOptions.LongRunning
                )

            let calls = [| for n in 1..6 -> call n |]
            Expect.isTrue (Task.WaitAll(calls, TimeSpan.FromSeconds 30.0)) "every call answered within 30 s"
            let givenBack = (eventually (fun () -> server.Server.BufferedBytes = 0L)).Result
            Expect.isTrue givenBack $"every byte given back: {server.Server.BufferedBytes} held"
    ]
