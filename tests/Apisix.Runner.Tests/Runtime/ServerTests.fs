/// An in-process RunnerServer over a real unix socket, with this project's codec playing APISIX:
/// answers of both phases, ExtraInfo, errors, deadlines, the conf cache, load, disconnects, stopping.
module Apisix.Runner.Tests.Runtime.ServerTests

open System
open System.IO
open System.Net.Sockets
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient
open Apisix.Runner.Tests.Support.ManualClock

let private utf8 (s: string) = Encoding.UTF8.GetBytes s
let private orUnset = ValueOption.defaultValue "(unset)"

/// What APISIX answers to ExtraInfo in these tests: one variable is set, `unset` is not.
let private apisix =
    function
    | ExtraInfo.Var "remote_addr" -> ValueSome(utf8 "10.0.0.1")
    | ExtraInfo.Var _ -> ValueNone
    | ExtraInfo.ReqBody -> ValueSome(utf8 "hello")
    | ExtraInfo.RespBody -> ValueSome(utf8 "upstream body")

let private asyncFilter (f: Request -> Response -> Task<Decision>) : Filter = fun req resp -> ValueTask<Decision>(f req resp)

// ---- plugins made for these tests, each doing one observable thing ----

let private stopPlugin =
    Plugin.ofFilter "stop" (respond 403 [ "x-why", "denied"; "set-cookie", "a=1"; "set-cookie", "b=2" ] "go away")

/// Stops with status 0, which APISIX would read as "no status".
let private halt =
    Plugin.ofFilter "halt" (fun _ resp ->
        resp.Status <- 0
        stop)

let private rewrite =
    Plugin.ofFilter "rewrite" (fun req resp ->
        req.SetPath "/new"
        req.SetHeader("x-new", "v")
        req.DeleteHeader "x-drop"
        req.AddArg("a", "3")
        req.DeleteArg "b"
        resp.SetHeader("x-resp", "r")
        req.SetBody "payload"
        proceed)

/// Reads everything a filter can read without ExtraInfo, and changes nothing.
let private reader =
    Plugin.ofFilter "reader" (fun req resp ->
        ignore (req.Path, req.Header "host", req.Arg "a", req.ArgValues "a", req.SrcIp, resp.Header "host", resp.Status)
        proceed)

let private step =
    Plugin.ofFilter "step" (fun req _ ->
        req.SetPath "/v2"
        req.SetHeader("x-step", "1")
        req.SetArg("a", "9")
        proceed)

/// Copies what it sees into a header, to show what a plugin later in the chain sees.
let private mirror =
    Plugin.ofFilter "mirror" (fun req _ ->
        req.SetHeader("x-seen", sprintf "%s %s %s" req.Path (orUnset (req.Header "x-step")) (String.Join(",", req.ArgValues "a")))
        proceed)

/// Reads a variable, an unset variable and the body, each twice, into headers.
let private vars =
    Plugin.ofFilter
        "vars"
        (asyncFilter (fun req _ ->
            task {
                for _ in 1..2 do
                    let! addr = req.Var "remote_addr"
                    let! unsetVar = req.Var "unset"
                    let! body = req.Body()
                    req.SetHeader("x-addr", orUnset addr)
                    req.SetHeader("x-unset", orUnset unsetVar)
                    req.SetHeader("x-body", body |> ValueOption.map Encoding.UTF8.GetString |> orUnset)

                return Decision.Continue
            }))

/// What `vars` reads, in the order it reads it.
let private varsReads = [ ExtraInfo.Var "remote_addr"; ExtraInfo.Var "unset"; ExtraInfo.ReqBody ]

/// The same reads, declared up front.
let private prefetched =
    { (Plugin.prefetch varsReads vars) with
        Name = "prefetched" }

/// Response phase: reports the upstream status, content type and cookies, answers 201 with the body upper-cased.
let private upper =
    Plugin.createResponse "upper" Ok (fun _ ->
        asyncFilter (fun _ resp ->
            task {
                let! body = resp.UpstreamBody()
                let cookies = resp.UpstreamHeaders.ToArray() |> Array.filter (fun e -> e.Name = "set-cookie")
                resp.SetHeader("x-upstream", sprintf "%d %s %d" resp.UpstreamStatus (orUnset (resp.Header "Content-Type")) cookies.Length)
                resp.Status <- 201
                resp.SetBody((body |> ValueOption.map Encoding.UTF8.GetString |> orUnset).ToUpperInvariant())
                return Decision.Continue
            }))

/// Response phase: reads everything and changes nothing.
let private peek =
    Plugin.createResponse "peek" Ok (fun _ ->
        asyncFilter (fun _ resp ->
            task {
                let! _ = resp.UpstreamBody()
                ignore (resp.Status, resp.Header "content-type")
                return Decision.Continue
            }))

/// Response phase: adds one header and removes another.
let private tagger =
    Plugin.createResponse "tagger" Ok (fun _ ->
        fun _ resp ->
            resp.SetHeader("x-added", "1")
            resp.DeleteHeader "x-drop"
            proceed)

let private throwing =
    Plugin.ofFilter "throw" (fun _ _ -> raise (InvalidOperationException "plugin failure on purpose"))

/// Never completes and ignores cancellation.
let private hang =
    Plugin.ofFilter "hang" (fun _ _ -> ValueTask<Decision>(TaskCompletionSource<Decision>().Task))

let private picky =
    Plugin.create "picky" (fun json -> if json = "ok" then Ok() else Error "\"ok\" is the only configuration I take") (fun () -> pass)

/// Waits, honouring the call's cancellation, after counting itself in at `entered`.
let private slow (entered: SemaphoreSlim) (delay: TimeSpan) =
    Plugin.ofFilter
        "slow"
        (asyncFilter (fun req _ ->
            task {
                entered.Release() |> ignore
                do! Task.Delay(delay, req.CancellationToken)
                return Decision.Continue
            }))

/// Signals `entered`, then waits for the test to open `gate`: a plugin that is busy exactly as long as the test says.
let private gated (entered: TaskCompletionSource) (gate: Task) =
    Plugin.ofFilter
        "gated"
        (asyncFilter (fun _ _ ->
            task {
                entered.TrySetResult() |> ignore
                do! gate
                return Decision.Continue
            }))

let private all = [ stopPlugin; halt; rewrite; reader; step; mirror; vars; prefetched; upper; peek; tagger; throwing; picky ]

/// The conf of a route running these plugins, each without configuration, in this order.
let private route (names: string list) = [ for n in names -> n, "" ]

/// A client on `server` with a token for the route `names`.
let private connectTo (server: TestServer) (names: string list) =
    task {
        let client = server.Connect()
        let! token = client.PrepareAsync(route names, String.Join("+", names))
        return client, token
    }

let private noAction id =
    HttpReqCallResp { Id = id; Action = HttpReqCall.NoAction }

// ---- request phase ----

let private requestPhase =
    [
        testCaseTask "a Stop answers with its status, every header value and the body" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "stop" ]
                use client = client
                let! answer = client.RequestAsync(httpRequest token 11u, unset)

                same
                    (HttpReqCallResp
                        { Id = 11u
                          Action =
                            HttpReqCall.Stop
                                { Status = 403us
                                  Headers = [| TextEntry.Set("x-why", "denied"); TextEntry.Set("set-cookie", "a=1"); TextEntry.Set("set-cookie", "b=2") |]
                                  Body = utf8 "go away" } })
                    answer
            }

        testCaseTask "a Stop with status 0 goes out as 200" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "halt" ]
                use client = client
                let! answer = client.RequestAsync(httpRequest token 12u, unset)
                same (HttpReqCallResp { Id = 12u; Action = HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] } }) answer
            }

        testCaseTask "a Rewrite holds exactly what changed" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "rewrite" ]
                use client = client

                let request =
                    { httpRequest token 13u with
                        Args = [| TextEntry.Set("a", "1"); TextEntry.Set("a", "2"); TextEntry.Set("b", "x"); TextEntry.Set("c", "kept") |]
                        Headers = [| TextEntry.Set("host", "example.com"); TextEntry.Set("x-drop", "1"); TextEntry.Set("x-keep", "1") |] }

                let! answer = client.RequestAsync(request, unset)

                same
                    (HttpReqCallResp
                        { Id = 13u
                          Action =
                            HttpReqCall.Rewrite
                                { Path = "/new"
                                  Headers = [| TextEntry.Set("x-new", "v"); TextEntry.Delete "x-drop" |]
                                  Args = [| TextEntry.Set("a", "1"); TextEntry.Set("a", "2"); TextEntry.Set("a", "3"); TextEntry.Delete "b" |]
                                  RespHeaders = [| TextEntry.Set("x-resp", "r") |]
                                  Body = utf8 "payload" } })
                    answer
            }

        testCaseTask "a chain that only reads answers with no action" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "reader"; "reader" ]
                use client = client
                let! answer = client.RequestAsync({ httpRequest token 14u with Args = [| TextEntry.Set("a", "1") |] }, unset)
                same (noAction 14u) answer
            }

        testCaseTask "plugins run in the route's order and a later one sees earlier rewrites" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, forward = connectTo server [ "step"; "mirror" ]
                use client = client
                let! backward = client.PrepareAsync(route [ "mirror"; "step" ], "backward")
                let request token = { httpRequest token 15u with Args = [| TextEntry.Set("a", "1") |] }

                let rewriteOf =
                    function
                    | HttpReqCallResp { Action = HttpReqCall.Rewrite r } -> r
                    | other -> failwithf "expected a Rewrite, got %A" other

                let! seenAfter = client.RequestAsync(request forward, unset)
                let! seenBefore = client.RequestAsync(request backward, unset)
                let after, before = rewriteOf seenAfter, rewriteOf seenBefore
                // Both plugins' changes go out together, once each.
                same [| TextEntry.Set("x-step", "1"); TextEntry.Set("x-seen", "/v2 1 9") |] after.Headers
                same [| TextEntry.Set("a", "9") |] after.Args
                same "/v2" after.Path
                same [| TextEntry.Set("x-seen", "/orig (unset) 1"); TextEntry.Set("x-step", "1") |] before.Headers
            }
    ]

// ---- ExtraInfo ----

let private extraInfo =
    [
        testCaseTask "variables and the body are asked for on demand, once each per call" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "vars" ]
                use client = client

                for id in [ 21u; 22u ] do
                    let! answer = client.RequestAsync(httpRequest token id, apisix)
                    // Each value was read twice, and is asked again in the next call: the cache is per call.
                    same varsReads client.Asked

                    match answer with
                    | HttpReqCallResp { Id = answerId; Action = HttpReqCall.Rewrite r } ->
                        same id answerId
                        same [| TextEntry.Set("x-addr", "10.0.0.1"); TextEntry.Set("x-unset", "(unset)"); TextEntry.Set("x-body", "hello") |] r.Headers
                    | other -> failwithf "expected a Rewrite, got %A" other
            }

        testCaseTask "declared reads arrive as ExtraInfo requests back to back before any reply, and suffice" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "prefetched" ]
                use client = client
                client.Send(HttpReqCallReq(httpRequest token 23u))

                // Read every request before answering any: the runner must not wait for a reply in between.
                let asked = Collections.Generic.List<ExtraInfo.Info>()

                for _ in varsReads do
                    match! client.NextAsync() with
                    | ExtraInfoReq info -> asked.Add info
                    | other -> failwithf "expected an ExtraInfo request, got %A" other

                same varsReads (List.ofSeq asked)

                for info in asked do
                    client.Send(ExtraInfoResp { Result = apisix info })

                // The chain reads each value twice and asks nothing more: the next frame is the answer.
                match! client.NextAsync() with
                | HttpReqCallResp { Id = 23u; Action = HttpReqCall.Rewrite r } ->
                    same [| TextEntry.Set("x-addr", "10.0.0.1"); TextEntry.Set("x-unset", "(unset)"); TextEntry.Set("x-body", "hello") |] r.Headers
                | other -> failwithf "expected the Rewrite of call 23, got %A" other
            }
    ]

// ---- response phase ----

let private upstream token id : HttpRespCall.Req =
    { Id = id
      Status = 502us
      Headers =
        [| TextEntry.Set("content-type", "text/plain")
           TextEntry.Set("set-cookie", "a=1")
           TextEntry.Set("set-cookie", "b=2")
           TextEntry.Set("x-drop", "1") |]
      ConfToken = token }

/// The response headers the client gets, applying an HTTPRespCall answer as PROTOCOL.md says APISIX
/// does: headers in the answer replace the upstream's (first value sets, later ones add; no value
/// removes), an answer without headers keeps the upstream's.
let private applyResponseHeaders (upstream: TextEntry[]) (answer: TextEntry[]) =
    if answer.Length = 0 then
        upstream
    else
        answer
        |> Array.fold
            (fun (acc: TextEntry list) e ->
                if e.HasValue then acc @ [ e ] else acc |> List.filter (fun x -> x.Name <> e.Name))
            []
        |> Array.ofList

let private responsePhase =
    [
        testCaseTask "response phase: the upstream answer is visible, its body comes through ExtraInfo, changes go out" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "upper" ]
                use client = client

                match! client.CallAsync(HttpRespCallReq(upstream token 31u), apisix) with
                | HttpRespCallResp r ->
                    same [ ExtraInfo.RespBody ] client.Asked
                    same 31u r.Id
                    same 201us r.Status
                    same (utf8 "UPSTREAM BODY") r.Body
                    Expect.contains r.Headers (TextEntry.Set("x-upstream", "502 text/plain 2")) "the answer's headers"
                | other -> failwithf "expected an HTTPRespCall answer, got %A" other
            }

        testCaseTask "response phase: nothing changed answers status 0, no headers and no body" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "peek" ]
                use client = client
                let! answer = client.CallAsync(HttpRespCallReq(upstream token 32u), apisix)
                same [ ExtraInfo.RespBody ] client.Asked
                same (HttpRespCallResp { Id = 32u; Status = 0us; Headers = [||]; Body = [||] }) answer
            }

        testCaseTask "response phase: changing one header keeps the other upstream headers" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, token = connectTo server [ "tagger" ]
                use client = client
                let call = upstream token 33u

                match! client.CallAsync(HttpRespCallReq call, apisix) with
                | HttpRespCallResp r ->
                    let delivered = applyResponseHeaders call.Headers r.Headers |> Array.sortBy _.Name

                    let expected =
                        [| TextEntry.Set("content-type", "text/plain")
                           TextEntry.Set("set-cookie", "a=1")
                           TextEntry.Set("set-cookie", "b=2")
                           TextEntry.Set("x-added", "1") |]

                    same expected delivered
                | other -> failwithf "expected an HTTPRespCall answer, got %A" other
            }

        testCaseTask "response phase: a new body drops the upstream content-length, a header change keeps it" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, bodyToken = connectTo server [ "upper" ]
                use client = client
                let! headerToken = client.PrepareAsync(route [ "tagger" ], "tagger-only")
                let sized token id =
                    { upstream token id with Headers = Array.append (upstream token id).Headers [| TextEntry.Set("content-length", "13") |] }

                match! client.CallAsync(HttpRespCallReq(sized bodyToken 34u), apisix) with
                | HttpRespCallResp r ->
                    Expect.isFalse (r.Headers |> Array.exists (fun e -> e.Name = "content-length")) "the answer keeps the upstream content-length"
                    Expect.contains r.Headers (TextEntry.Set("content-type", "text/plain")) "the answer's headers"
                | other -> failwithf "expected an HTTPRespCall answer, got %A" other

                match! client.CallAsync(HttpRespCallReq(sized headerToken 35u), apisix) with
                | HttpRespCallResp r -> Expect.contains r.Headers (TextEntry.Set("content-length", "13")) "the answer's headers"
                | other -> failwithf "expected an HTTPRespCall answer, got %A" other
            }
    ]

// ---- errors ----

/// Sends raw bytes on a fresh connection and expects BAD_REQUEST, then the connection closed.
let private expectRejected (server: TestServer) (bytes: byte[]) =
    task {
        use client = server.Connect()
        client.SendBytes bytes
        let! answer = client.NextAsync()
        same (ErrResp Err.Code.BAD_REQUEST) answer
        let! closed = client.IsClosedAsync()
        Expect.isTrue closed "the connection is closed after BAD_REQUEST"
    }

let private frameOf (frameType: byte) (body: byte[]) =
    Array.append [| frameType; byte (body.Length >>> 16); byte (body.Length >>> 8); byte body.Length |] body

let private errors =
    [
        testCaseTask "an unknown token is CONF_TOKEN_NOT_FOUND in both phases and the connection stays usable" <| fun () ->
            task {
                use server = new TestServer(all)
                use client = server.Connect()
                let! answer = client.RequestAsync(httpRequest 4242u 41u, unset)
                same (ErrResp Err.Code.CONF_TOKEN_NOT_FOUND) answer
                let! answer = client.CallAsync(HttpRespCallReq(upstream 4242u 42u), unset)
                same (ErrResp Err.Code.CONF_TOKEN_NOT_FOUND) answer
                let! token = client.PrepareAsync(route [ "halt" ], "after-miss")
                let! answer = client.RequestAsync(httpRequest token 43u, unset)
                same (HttpReqCallResp { Id = 43u; Action = HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] } }) answer
            }

        testCaseTask "PrepareConf with an unknown plugin or a rejected configuration is an error, logged by name" <| fun () ->
            task {
                use server = new TestServer(all)
                use client = server.Connect()
                let! unknown = client.PrepareRawAsync([ "halt", ""; "missing", "{}" ], "r1")
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) unknown
                let! rejected = client.PrepareRawAsync([ "picky", "nope" ], "r2")
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) rejected
                Expect.isTrue (server.Log.Has(LogLevel.Error, [ "missing" ])) "the log names the unknown plugin"
                Expect.isTrue (server.Log.Has(LogLevel.Error, [ "picky"; "\"ok\" is the only configuration I take" ])) "the log names the plugin and its parser's message"
                // A good configuration on the same connection still works, under the key that was refused.
                let! token = client.PrepareAsync([ "picky", "ok" ], "r2")
                let! answer = client.RequestAsync(httpRequest token 44u, unset)
                same (noAction 44u) answer
            }

        testCaseTask "an undecodable frame is BAD_REQUEST, then the connection closes" <| fun () ->
            task {
                use server = new TestServer(all, (fun o -> o.MaxFrameBytes <- 1024), TimeProvider.System)
                let garbage = [| 0xFFuy; 0xFFuy; 0xFFuy; 0x7Fuy; 1uy; 2uy; 3uy; 4uy |]

                for frameType in [ 1uy; 2uy; 4uy ] do
                    do! expectRejected server (frameOf frameType garbage)

                // A body longer than the limit is refused from its header alone.
                do! expectRejected server [| 2uy; 0uy; 0x08uy; 0uy |]
            }

        testCaseTask "a frame type APISIX never starts a call with is BAD_REQUEST, then the connection closes" <| fun () ->
            task {
                use server = new TestServer(all)
                use b = new FrameBuilder()

                let encoded (frame: Result<ReadOnlyMemory<byte>, EncodeError>) =
                    match frame with
                    | Ok f -> f.ToArray()
                    | Error e -> failwith (e.Describe())

                do! expectRejected server (encoded (Encode.errResp b Err.Code.BAD_REQUEST))
                // An ExtraInfo reply when no ExtraInfo request is pending.
                do! expectRejected server (encoded (Encode.extraInfoResp b { Result = ValueSome(utf8 "x") }))
                do! expectRejected server (frameOf 200uy [||])
            }

        testCaseTask "a plugin that throws is SERVICE_UNAVAILABLE, logged with its name and the call id, and the connection goes on" <| fun () ->
            task {
                use server = new TestServer(all)
                let! client, failing = connectTo server [ "reader"; "throw" ]
                use client = client
                let! fine = client.PrepareAsync(route [ "halt" ], "fine")
                let! answer = client.RequestAsync(httpRequest failing 45u, unset)
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                Expect.isTrue (server.Log.Has(LogLevel.Error, [ "throw"; "45" ])) "the log names the plugin and the call id"
                Expect.exists server.Log.Entries (fun e -> not (isNull e.Exception) && e.Exception.Message = "plugin failure on purpose") "the log has the plugin's exception"
                let! answer = client.RequestAsync(httpRequest fine 46u, unset)
                same (HttpReqCallResp { Id = 46u; Action = HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] } }) answer
            }

        testCaseTask "a plugin that never completes is answered SERVICE_UNAVAILABLE at the call deadline" <| fun () ->
            task {
                use server = new TestServer([ hang; halt ], (fun o -> o.CallTimeout <- TimeSpan.FromMilliseconds 300.0), TimeProvider.System)
                let! client, token = connectTo server [ "hang" ]
                use client = client
                let! answer = client.RequestAsync(httpRequest token 47u, unset)
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                Expect.isTrue (server.Log.Has(LogLevel.Error, [ "hang"; "47" ])) "the log names the plugin and the call id"
                // The runner goes on serving.
                let! other, halted = connectTo server [ "halt" ]
                use other = other
                let! answer = other.RequestAsync(httpRequest halted 48u, unset)
                same (HttpReqCallResp { Id = 48u; Action = HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] } }) answer
            }

        // The connection's previous call ran its chain to the second plugin: the blame must not stay there.
        testCaseTask "a call that misses its deadline in the prefetch blames the prefetch, not a plugin of the call before" <| fun () ->
            task {
                use server = new TestServer([ reader; halt; prefetched ], (fun o -> o.CallTimeout <- TimeSpan.FromMilliseconds 300.0), TimeProvider.System)
                use client = server.Connect()
                let! before = client.PrepareAsync(route [ "reader"; "halt" ], "reader+halt")
                let! fetching = client.PrepareAsync(route [ "prefetched"; "halt" ], "prefetched+halt")
                let! answer = client.RequestAsync(httpRequest before 62u, unset)
                same (HttpReqCallResp { Id = 62u; Action = HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] } }) answer
                // APISIX reads the ExtraInfo requests and never answers them.
                client.Send(HttpReqCallReq(httpRequest fetching 63u))

                for _ in varsReads do
                    match! client.NextAsync() with
                    | ExtraInfoReq _ -> ()
                    | other -> failtest $"expected the prefetch's ExtraInfo requests, got {other}"

                let! answer = client.NextAsync()
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                let timedOut = server.Log.Entries |> List.filter (fun e -> e.Message.Contains "did not finish")
                Expect.hasLength timedOut 1 "one call timed out"
                Expect.stringContains timedOut.Head.Message "Call 63" "the entry names the call"
                Expect.stringContains timedOut.Head.Message "(prefetch)" "the entry blames the prefetch"
                Expect.isFalse (timedOut.Head.Message.Contains "halt") "no plugin of this route ran, and none of the call before is blamed"
            }

        testCaseTask "a busy plugin on one connection does not hold up calls on another" <| fun () ->
            task {
                let entered = TaskCompletionSource()
                let gate = TaskCompletionSource()
                use server = new TestServer([ gated entered gate.Task; halt ])
                let! busy, slowToken = connectTo server [ "gated" ]
                use busy = busy
                let! quick, quickToken = connectTo server [ "halt" ]
                use quick = quick
                let pending = busy.RequestAsync(httpRequest slowToken 51u, unset)
                do! entered.Task.WaitAsync patience

                for id in 52u .. 61u do
                    let! answer = quick.RequestAsync(httpRequest quickToken id, unset)
                    same (HttpReqCallResp { Id = id; Action = HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] } }) answer

                Expect.isFalse pending.IsCompleted "the gated call cannot have finished before its gate opened"
                gate.SetResult()
                let! answer = pending
                same (noAction 51u) answer
            }
    ]

// ---- conf cache ----

let private confCache =
    [
        testCaseTask "a token lives at least APISIX's expire time, then expires; its key prepared again works" <| fun () ->
            task {
                let clock = ManualClock()
                use server = new TestServer([ halt ], (fun o -> o.ConfExpireTime <- TimeSpan.FromSeconds 10.0), clock)
                use client = server.Connect()
                let conf = route [ "halt" ]
                let! token = client.PrepareAsync(conf, "route-1")
                let! again = client.PrepareAsync(conf, "route-1")
                same token again
                let! other = client.PrepareAsync(conf, "route-2")
                Expect.notEqual other token "other"
                let stopped id = HttpReqCallResp { Id = id; Action = HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] } }

                clock.Advance(TimeSpan.FromSeconds 10.0)
                let! answer = client.RequestAsync(httpRequest token 71u, unset)
                same (stopped 71u) answer

                // Past 1.2 times the expire time since that last use.
                clock.Advance(TimeSpan.FromSeconds 12.5)
                let! answer = client.RequestAsync(httpRequest token 72u, unset)
                same (ErrResp Err.Code.CONF_TOKEN_NOT_FOUND) answer

                let! fresh = client.PrepareAsync(conf, "route-1")
                Expect.notEqual fresh token "fresh"
                let! answer = client.RequestAsync(httpRequest fresh 73u, unset)
                same (stopped 73u) answer
            }
    ]

// ---- load and lifecycle ----

let private loadAndLifecycle =
    [
        testCaseTask "many connections at once, each with many calls, all get their own answers" <| fun () ->
            task {
                use server = new TestServer(all)
                use first = server.Connect()
                let! token = first.PrepareAsync(route [ "vars" ], "load")

                let connection (n: int) =
                    task {
                        use client = server.Connect()

                        for i in 1..30 do
                            let id = uint32 (n * 1000 + i)
                            // The variable's value names the call, so an answer given to the wrong call shows.
                            let answer =
                                function
                                | ExtraInfo.Var "remote_addr" -> ValueSome(utf8 (string id))
                                | info -> apisix info

                            match! client.RequestAsync(httpRequest token id, answer) with
                            | HttpReqCallResp { Id = answerId; Action = HttpReqCall.Rewrite r } when answerId = id ->
                                same (TextEntry.Set("x-addr", string id)) r.Headers[0]
                            | other -> failwithf "call %d was answered %A" id other
                    }

                let! _ = Task.WhenAll [ for n in 1..64 -> connection n ]
                ()
            }

        testCaseTask "a client that disconnects mid-call or mid-ExtraInfo is let go and the others are served" <| fun () ->
            task {
                let entered = TaskCompletionSource()
                let gate = TaskCompletionSource()
                use server = new TestServer([ gated entered gate.Task; vars; halt ])
                use first = server.Connect()
                let! gatedToken = first.PrepareAsync(route [ "gated" ], "gated")
                let! varsToken = first.PrepareAsync(route [ "vars" ], "vars")
                let! haltToken = first.PrepareAsync(route [ "halt" ], "halt")
                (first :> IDisposable).Dispose()

                // Mid-call: gone while the plugin works.
                let midCall = server.Connect()
                midCall.Send(HttpReqCallReq(httpRequest gatedToken 81u))
                do! entered.Task.WaitAsync patience
                (midCall :> IDisposable).Dispose()

                // Mid-ExtraInfo: gone instead of answering.
                let midInfo = server.Connect()
                midInfo.Send(HttpReqCallReq(httpRequest varsToken 82u))

                match! midInfo.NextAsync() with
                | ExtraInfoReq _ -> (midInfo :> IDisposable).Dispose()
                | other -> failwithf "expected an ExtraInfo request, got %A" other

                gate.SetResult()

                do!
                    task {
                        use other = server.Connect()
                        let! answer = other.RequestAsync(httpRequest haltToken 83u, unset)
                        same (HttpReqCallResp { Id = 83u; Action = HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] } }) answer
                    }

                let! released = eventually (fun () -> server.Server.ConnectionCount = 0)
                Expect.isTrue released ($"{server.Server.ConnectionCount} connections are still held")
            }

        testCaseTask "stopping answers every call already sent, then refuses connections and removes the socket" <| fun () ->
            task {
                use entered = new SemaphoreSlim(0)
                // A shutdown bound generous for a noisy machine: the bound itself is the process tests' concern.
                let slowPlugin = slow entered (TimeSpan.FromMilliseconds 300.0)
                use server = new TestServer([ slowPlugin ], (fun o -> o.ShutdownTimeout <- patience), TimeProvider.System)
                let clients = [ for _ in 1..4 -> server.Connect() ]
                let! tokens = Task.WhenAll [ for c in clients -> c.PrepareAsync(route [ "slow" ], "slow") ]
                let token = tokens[0]
                let calls = clients |> List.mapi (fun i c -> uint32 (90 + i), c)

                // Three calls are in the plugin when the stop begins; the last is only just sent.
                for id, c in List.take 3 calls do
                    c.Send(HttpReqCallReq(httpRequest token id))

                for _ in 1..3 do
                    let! inside = entered.WaitAsync patience
                    Expect.isTrue inside "the slow plugin was entered"

                let lastId, last = List.last calls
                last.Send(HttpReqCallReq(httpRequest token lastId))
                let stopping = server.StopAsync()

                for id, c in calls do
                    let! answer = c.NextAsync()
                    same (noAction id) answer

                do! stopping.WaitAsync patience
                Expect.isFalse (File.Exists server.SocketPath) "the socket file is removed"
                Expect.throwsC (fun () -> server.Connect() |> ignore) (function
                    | :? SocketException -> ()
                    | e -> failtest $"connecting after the stop threw {e.GetType().Name}, not a SocketException")

                for c in clients do
                    (c :> IDisposable).Dispose()
            }

        testCaseTask "stopping with idle keep-alive connections open completes without error" <| fun () ->
            task {
                use server = new TestServer([ halt ])
                // APISIX keeps up to 32 idle connections per worker open between calls.
                let! idle = Task.WhenAll [ for _ in 1..3 -> connectTo server [ "halt" ] ]
                do! server.StopAsync().WaitAsync patience
                Expect.isFalse (File.Exists server.SocketPath) "the socket file is removed"

                for client, _ in idle do
                    let! closed = client.IsClosedAsync()
                    Expect.isTrue closed "an idle connection is closed by the stop"
                    (client :> IDisposable).Dispose()
            }
    ]

[<Tests>]
let tests =
    testSequencedGroup "Runtime.Server"
    <| testList "Runtime.Server" [
        testList "request phase" requestPhase
        testList "ExtraInfo" extraInfo
        testList "response phase" responsePhase
        testList "errors" errors
        testList "conf cache" confCache
        testList "load and lifecycle" loadAndLifecycle
    ]
