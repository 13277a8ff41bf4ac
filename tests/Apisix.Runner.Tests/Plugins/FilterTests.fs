module Apisix.Runner.Tests.FilterTests

open System
open System.Collections.Generic
open System.Text
open System.Threading
open System.Threading.Tasks
open Xunit
open Apisix.Runner
open Apisix.Runner.Filter

/// Plays APISIX's side of ExtraInfo in memory: answers from `answer` and records every ask.
/// Answers complete later, as a socket round trip does, so filters take their asynchronous path.
type private FakeSource(answer: ExtraInfo.Info -> byte[] voption) =
    let asked = List<ExtraInfo.Info>()
    member _.Asked = List.ofSeq asked

    interface IExtraInfoSource with
        member _.Fetch(info, _) =
            asked.Add info

            ValueTask<byte[] voption>(
                task {
                    do! Task.Yield()
                    return answer info
                }
            )

let private utf8 (s: string) = Encoding.UTF8.GetBytes s

/// The FlatBuffers body of a message, as the connection hands it to the views.
let private bodyOf (encode: FlatBufferBuilder -> 'T -> Result<ReadOnlyMemory<byte>, EncodeError>) (message: 'T) =
    use b = new FlatBufferBuilder()

    match encode b message with
    | Ok frame -> ReadOnlyMemory(frame.Slice(Frame.HeaderLength).ToArray())
    | Error e -> failwith (e.Describe())

let private valueOf =
    function
    | Ok v -> v
    | Error(e: DecodeError) -> failwith (e.Describe())

/// APISIX's request: `?a=1&a=2&flag`, a repeated header, nginx variable `remote_addr` and a body.
let private original: HttpReqCall.Req =
    { Id = 7u
      SrcIp = [| 10uy; 0uy; 0uy; 1uy |]
      Method = Method.POST
      Path = "/orig"
      Args = [| TextEntry.Set("a", "1"); TextEntry.Set("a", "2"); TextEntry.Delete "flag" |]
      Headers = [| TextEntry.Set("host", "example.com"); TextEntry.Set("x-multi", "1"); TextEntry.Set("x-multi", "2") |]
      ConfToken = 1u }

let private answers =
    function
    | ExtraInfo.Var "remote_addr" -> ValueSome(utf8 "10.0.0.1")
    | ExtraInfo.ReqBody -> ValueSome(utf8 "request body")
    | ExtraInfo.RespBody -> ValueSome(utf8 "upstream body")
    | ExtraInfo.Var _ -> ValueNone

/// A request-phase call on `original`: the request, the response a Stop would send, and the fake APISIX.
let private requestCall () =
    let source = FakeSource answers
    let req = Request()
    req.Reset(valueOf (HttpReqCallView.Read(bodyOf Encode.httpReqCallReq original)), original.Id, source, CancellationToken.None)
    let resp = Response()
    resp.Reset(Unchecked.defaultof<_>, source, CancellationToken.None)
    req, resp, source

/// A response-phase call on an upstream 502 with two set-cookie values.
let private responseCall () =
    let upstream: HttpRespCall.Req =
        { Id = 9u
          Status = 502us
          Headers = [| TextEntry.Set("content-type", "text/plain"); TextEntry.Set("set-cookie", "a=1"); TextEntry.Set("set-cookie", "b=2") |]
          ConfToken = 1u }

    let source = FakeSource answers
    let req = Request()
    req.Reset(Unchecked.defaultof<_>, upstream.Id, source, CancellationToken.None)
    let resp = Response()
    resp.Reset(valueOf (HttpRespCallView.Read(bodyOf Encode.httpRespCallReq upstream)), source, CancellationToken.None)
    req, resp, source

let private run (filter: Filter) (req: Request) (resp: Response) = (filter req resp).AsTask().Result

/// A filter that records its name when it runs, then decides; synchronously or after a yield.
let private step (log: List<string>) (name: string) (decision: Decision) (async': bool) : Filter =
    fun _ _ ->
        if async' then
            ValueTask<Decision>(
                task {
                    do! Task.Yield()
                    log.Add name
                    return decision
                }
            )
        else
            log.Add name
            ValueTask<Decision>(decision)

let private both = [ false; true ]

// ---- combinators ----

[<Fact>]
let ``compose runs both filters in order, sync or async, and >=> is compose`` () =
    for firstAsync in both do
        for secondAsync in both do
            let log = List<string>()
            let req, resp, _ = requestCall ()
            let first = step log "first" Decision.Continue firstAsync
            let second = step log "second" Decision.Continue secondAsync
            Assert.Equal(Decision.Continue, run (compose first second) req resp)
            Assert.Equal(Decision.Continue, run (first >=> second) req resp)
            Assert.Equal<string list>([ "first"; "second"; "first"; "second" ], List.ofSeq log)

[<Fact>]
let ``Stop short-circuits compose whether the stopping filter is sync or async`` () =
    for firstAsync in both do
        let log = List<string>()
        let req, resp, _ = requestCall ()
        let decision = run (step log "first" Decision.Stop firstAsync >=> step log "second" Decision.Continue false) req resp
        Assert.Equal(Decision.Stop, decision)
        Assert.Equal<string list>([ "first" ], List.ofSeq log)

[<Fact>]
let ``sequence runs filters in order until one stops; an empty sequence goes on`` () =
    let log = List<string>()
    let req, resp, _ = requestCall ()

    let chain =
        sequence
            [ step log "a" Decision.Continue false
              step log "b" Decision.Continue true
              step log "c" Decision.Stop true
              step log "d" Decision.Continue false ]

    Assert.Equal(Decision.Stop, run chain req resp)
    Assert.Equal<string list>([ "a"; "b"; "c" ], List.ofSeq log)
    Assert.Equal(Decision.Continue, run (sequence []) req resp)

[<Fact>]
let ``onlyIf runs the filter only when the predicate holds`` () =
    let log = List<string>()
    let req, resp, _ = requestCall ()
    let isOrig (r: Request) = r.Path = "/orig"
    Assert.Equal(Decision.Stop, run (onlyIf isOrig (step log "yes" Decision.Stop false)) req resp)
    Assert.Equal(Decision.Continue, run (onlyIf (isOrig >> not) (step log "no" Decision.Stop false)) req resp)
    Assert.Equal<string list>([ "yes" ], List.ofSeq log)

[<Fact>]
let ``branch picks one of two filters by the predicate`` () =
    let log = List<string>()
    let req, resp, _ = requestCall ()
    let pick predicate = branch predicate (step log "true" Decision.Stop false) (step log "false" Decision.Continue true)
    Assert.Equal(Decision.Stop, run (pick (fun r -> r.Method = Method.POST)) req resp)
    Assert.Equal(Decision.Continue, run (pick (fun r -> r.Method = Method.GET)) req resp)
    Assert.Equal<string list>([ "true"; "false" ], List.ofSeq log)

[<Fact>]
let ``respond stops with its status, every header value and the body`` () =
    let req, resp, _ = requestCall ()
    let filter = respond 403us [ "x-why", "denied"; "set-cookie", "a=1"; "set-cookie", "b=2" ] "go away"
    Assert.Equal(Decision.Stop, run filter req resp)
    Assert.Equal(403us, resp.Status)

    Assert.Equal<TextEntry[]>(
        [| TextEntry.Set("x-why", "denied"); TextEntry.Set("set-cookie", "a=1"); TextEntry.Set("set-cookie", "b=2") |],
        resp.HeaderChanges.ToArray()
    )

    Assert.Equal("go away", Encoding.UTF8.GetString(resp.BodyChange))

[<Fact>]
let ``ofSync completes synchronously with the function's decision`` () =
    let req, resp, _ = requestCall ()
    let d = ofSync (fun _ _ -> Decision.Stop) req resp
    Assert.True(d.IsCompletedSuccessfully)
    Assert.Equal(Decision.Stop, d.Result)

// ---- request ----

[<Fact>]
let ``reading the request marks nothing as changed`` () =
    let req, resp, source = requestCall ()

    Assert.Equal("/orig", req.Path)
    Assert.Equal(ValueSome "example.com", req.Header "host")
    Assert.Equal(ValueSome "1", req.Arg "a")
    Assert.Equal<string[]>([| "1"; "2" |], req.ArgValues "a")
    Assert.Equal(ValueSome(utf8 "request body"), req.Body().AsTask().Result)
    Assert.Equal(ValueSome "10.0.0.1", req.Var("remote_addr").AsTask().Result)

    Assert.False(req.Changed)
    Assert.True(req.PathChange.IsNone)
    Assert.Equal(0, req.HeaderChanges.Length)
    Assert.Equal(0, req.ArgChanges.Length)
    Assert.True(req.BodyChange.IsEmpty)
    Assert.Equal(0, resp.HeaderChanges.Length)
    Assert.Equal<ExtraInfo.Info list>([ ExtraInfo.ReqBody; ExtraInfo.Var "remote_addr" ], source.Asked)

[<Fact>]
let ``request identity: id, method, client address and the original entries`` () =
    let req, _, _ = requestCall ()
    Assert.Equal(7u, req.Id)
    Assert.Equal(Method.POST, req.Method)
    Assert.Equal(Net.IPAddress.Parse "10.0.0.1", req.SrcIp)
    Assert.Equal<TextEntry[]>(original.Headers, req.OriginalHeaders.ToArray())
    Assert.Equal<TextEntry[]>(original.Args, req.OriginalArgs.ToArray())

[<Fact>]
let ``header names are case-insensitive for reads and changes`` () =
    let req, _, _ = requestCall ()
    Assert.Equal(ValueSome "example.com", req.Header "HOST")
    Assert.Equal(ValueSome "1", req.Header "X-Multi")
    req.SetHeader("X-New", "v")
    Assert.Equal(ValueSome "v", req.Header "x-new")
    req.SetHeader("x-NEW", "w")
    Assert.Equal<TextEntry[]>([| TextEntry.Set("x-NEW", "w") |], req.HeaderChanges.ToArray())

[<Fact>]
let ``SetHeader and DeleteHeader are seen by later reads and sent once each`` () =
    let req, _, _ = requestCall ()
    req.SetHeader("host", "other.example")
    req.DeleteHeader "x-multi"
    Assert.Equal(ValueSome "other.example", req.Header "host")
    Assert.Equal(ValueNone, req.Header "x-multi")
    Assert.True(req.Changed)

    Assert.Equal<TextEntry[]>(
        [| TextEntry.Set("host", "other.example"); TextEntry.Delete "x-multi" |],
        req.HeaderChanges.ToArray()
    )

    // Setting a deleted header again leaves only the new value to send.
    req.SetHeader("x-multi", "3")
    Assert.Equal(ValueSome "3", req.Header "x-multi")
    Assert.Equal<TextEntry[]>([| TextEntry.Set("host", "other.example"); TextEntry.Set("x-multi", "3") |], req.HeaderChanges.ToArray())

[<Fact>]
let ``SetArg replaces every value, AddArg keeps them, DeleteArg removes them`` () =
    let req, _, _ = requestCall ()
    req.AddArg("a", "3")
    Assert.Equal<string[]>([| "1"; "2"; "3" |], req.ArgValues "a")
    Assert.Equal(ValueSome "1", req.Arg "a")
    req.SetArg("b", "x")
    req.AddArg("b", "y")
    Assert.Equal<string[]>([| "x"; "y" |], req.ArgValues "b")
    req.DeleteArg "flag"
    Assert.Equal<string[]>([||], req.ArgValues "flag")

    // Exactly what APISIX needs to rebuild the query: repeated names are a multi-value argument.
    Assert.Equal<TextEntry[]>(
        [| TextEntry.Set("a", "1")
           TextEntry.Set("a", "2")
           TextEntry.Set("a", "3")
           TextEntry.Set("b", "x")
           TextEntry.Set("b", "y")
           TextEntry.Delete "flag" |],
        req.ArgChanges.ToArray()
    )

    req.SetArg("a", "9")
    Assert.Equal<string[]>([| "9" |], req.ArgValues "a")
    Assert.Equal(ValueSome "9", req.Arg "a")

[<Fact>]
let ``an argument without a value is present but has no value`` () =
    let req, _, _ = requestCall ()
    Assert.Equal(ValueNone, req.Arg "flag")
    Assert.Equal<string[]>([||], req.ArgValues "flag")
    let i = req.OriginalArgs.IndexOf "flag"
    Assert.True(i >= 0)
    Assert.Equal(ValueNone, req.OriginalArgs.Value i)
    Assert.Equal(-1, req.OriginalArgs.IndexOf "absent")

[<Fact>]
let ``a value added after a delete is what later reads see`` () =
    let req, resp, _ = requestCall ()
    req.DeleteArg "a"
    req.AddArg("a", "x")
    Assert.Equal<string[]>([| "x" |], req.ArgValues "a")
    // Arg must agree with ArgValues: a later plugin reading `a` sees the value the request will carry.
    Assert.Equal(ValueSome "x", req.Arg "a")
    resp.DeleteHeader "x-h"
    resp.AddHeader("x-h", "v")
    Assert.Equal(ValueSome "v", resp.Header "x-h")

[<Fact>]
let ``SetPath and SetBody are seen by later reads without asking APISIX`` () =
    let req, _, source = requestCall ()
    req.SetPath "/new"
    req.SetBody "replaced"
    Assert.Equal("/new", req.Path)
    Assert.Equal(ValueSome "/new", req.PathChange)
    Assert.Equal(ValueSome(utf8 "replaced"), req.Body().AsTask().Result)
    Assert.Equal("replaced", Encoding.UTF8.GetString(req.BodyChange))
    Assert.True(req.Changed)
    Assert.Empty(source.Asked)

[<Fact>]
let ``an empty body set is no change, since APISIX applies only a non-empty one`` () =
    let req, _, _ = requestCall ()
    req.SetBody ""
    Assert.False(req.Changed)

[<Fact>]
let ``a variable or the body read twice is asked of APISIX once; an unset variable is none`` () =
    let req, _, source = requestCall ()

    for _ in 1..2 do
        Assert.Equal(ValueSome "10.0.0.1", req.Var("remote_addr").AsTask().Result)
        Assert.Equal(ValueNone, req.Var("unset_var").AsTask().Result)
        Assert.Equal(ValueSome(utf8 "request body"), req.Body().AsTask().Result)

    Assert.Equal<ExtraInfo.Info list>([ ExtraInfo.Var "remote_addr"; ExtraInfo.Var "unset_var"; ExtraInfo.ReqBody ], source.Asked)

[<Fact>]
let ``a later filter sees the rewrites of earlier ones`` () =
    let req, resp, _ = requestCall ()
    let seen = List<string * string voption * string list * string voption>()

    let record: Filter =
        ofSync (fun r _ ->
            seen.Add((r.Path, r.Header "x-step", List.ofArray (r.ArgValues "a"), r.Header "host"))
            Decision.Continue)

    let rewrite: Filter =
        fun r _ ->
            task {
                do! Task.Yield()
                r.SetArg("a", "9")
                r.DeleteHeader "host"
                return Decision.Continue
            }
            |> ValueTask<Decision>

    let chain = sequence [ record; setPath "/v2"; setHeader "x-step" "1"; rewrite; record ]
    Assert.Equal(Decision.Continue, run chain req resp)

    Assert.Equal<_ list>(
        [ "/orig", ValueNone, [ "1"; "2" ], ValueSome "example.com"; "/v2", ValueSome "1", [ "9" ], ValueNone ],
        List.ofSeq seen
    )

// ---- response ----

[<Fact>]
let ``request phase: the response starts empty and holds what filters set`` () =
    let req, resp, source = requestCall ()
    Assert.Equal(0us, resp.Status)
    Assert.Equal(0us, resp.UpstreamStatus)
    Assert.Equal(ValueNone, resp.Header "host")
    Assert.True(resp.Body.IsNone)
    // There is no upstream yet: nothing to ask APISIX for.
    Assert.Equal(ValueNone, resp.UpstreamBody().AsTask().Result)
    resp.Status <- 201us
    resp.SetHeader("X-A", "1")
    resp.AddHeader("x-a", "2")
    resp.SetBody "made here"
    Assert.Equal(201us, resp.Status)
    Assert.Equal(ValueSome "1", resp.Header "x-a")
    Assert.Equal(ValueSome "made here", resp.Body |> ValueOption.map (fun b -> Encoding.UTF8.GetString b.Span))
    Assert.Equal<TextEntry[]>([| TextEntry.Set("X-A", "1"); TextEntry.Set("x-a", "2") |], resp.HeaderChanges.ToArray())
    Assert.False(req.Changed)
    Assert.Empty(source.Asked)

[<Fact>]
let ``response phase: the upstream answer is visible and reading it changes nothing`` () =
    let _, resp, source = responseCall ()
    Assert.Equal(502us, resp.UpstreamStatus)
    Assert.Equal(502us, resp.Status)
    Assert.Equal(ValueSome "text/plain", resp.Header "Content-Type")
    Assert.Equal(ValueSome "a=1", resp.Header "set-cookie")
    Assert.Equal(3, resp.UpstreamHeaders.Count)

    for _ in 1..2 do
        Assert.Equal(ValueSome(utf8 "upstream body"), resp.UpstreamBody().AsTask().Result)

    Assert.Equal<ExtraInfo.Info list>([ ExtraInfo.RespBody ], source.Asked)
    Assert.Equal(0us, resp.StatusChange)
    Assert.Equal(0, resp.HeaderChanges.Length)
    Assert.True(resp.BodyChange.IsEmpty)

[<Fact>]
let ``response phase: status, headers and body set are seen by later reads`` () =
    let req, resp, _ = responseCall ()
    resp.Status <- 200us
    resp.SetHeader("content-type", "application/json")
    resp.DeleteHeader "set-cookie"
    resp.SetBody "{}"
    Assert.Equal(200us, resp.Status)
    Assert.Equal(502us, resp.UpstreamStatus)
    Assert.Equal(ValueSome "application/json", resp.Header "content-type")
    Assert.Equal(ValueNone, resp.Header "set-cookie")
    Assert.Equal("{}", Encoding.UTF8.GetString(resp.BodyChange))
    Assert.Equal(9u, req.Id)
