namespace Apisix.Runner

open System
open System.Collections.Generic
open System.Net
open System.Text
open System.Threading
open System.Threading.Tasks

/// A request as APISIX would send it, with the nginx variables and body APISIX would give when
/// asked. Built fluently: `TestRequest().WithPath("/x").WithHeader("host", "a")`.
[<Sealed; AllowNullLiteral>]
type TestRequest() =
    member val Id = 1u with get, set
    member val Method = Method.GET with get, set
    member val Path = "/" with get, set
    member val SrcIp = IPAddress.Loopback with get, set
    member val Headers = List<TextEntry>()
    member val Args = List<TextEntry>()
    /// nginx variables by name; a name not here reads as unset.
    member val Vars = Dictionary<string, string>(StringComparer.Ordinal)
    /// The request body; null when the request has none.
    member val Body: byte[] = null with get, set

    member r.WithMethod(m: Method) =
        r.Method <- m
        r

    member r.WithPath(path: string) =
        r.Path <- path
        r

    member r.WithSrcIp(ip: IPAddress) =
        r.SrcIp <- ip
        r

    /// Adds a header value (names go in lower case, as nginx gives them).
    member r.WithHeader(name: string, value: string) =
        r.Headers.Add(TextEntry.Set(name.ToLowerInvariant(), value))
        r

    /// Adds an argument value; a null value is an argument given without `=`.
    member r.WithArg(name: string, value: string) =
        r.Args.Add { Name = name; Value = value }
        r

    member r.WithVar(name: string, value: string) =
        r.Vars[name] <- value
        r

    member r.WithBody(body: string) =
        r.Body <- Encoding.UTF8.GetBytes body
        r

    member internal r.ToMessage(token: uint32) : HttpReqCall.Req =
        { Id = r.Id
          SrcIp = r.SrcIp.GetAddressBytes()
          Method = r.Method
          Path = r.Path
          Args = r.Args.ToArray()
          Headers = r.Headers.ToArray()
          ConfToken = token }

/// An upstream answer as APISIX would pass it to the response phase.
[<Sealed; AllowNullLiteral>]
type TestUpstream() =
    member val Id = 1u with get, set
    member val Status = 200us with get, set
    member val Headers = List<TextEntry>()
    member val Vars = Dictionary<string, string>(StringComparer.Ordinal)
    /// The upstream body; null when there is none.
    member val Body: byte[] = null with get, set

    member u.WithStatus(status: uint16) =
        u.Status <- status
        u

    member u.WithHeader(name: string, value: string) =
        u.Headers.Add(TextEntry.Set(name.ToLowerInvariant(), value))
        u

    member u.WithVar(name: string, value: string) =
        u.Vars[name] <- value
        u

    member u.WithBody(body: string) =
        u.Body <- Encoding.UTF8.GetBytes body
        u

/// What a test run gives: the answer exactly as APISIX would read it off the wire, and the
/// ExtraInfo requests the chain made, in order.
type TestResult<'Answer> =
    { Answer: 'Answer
      ExtraInfo: ExtraInfo.Info list }

/// Reading the decoded answers of a test run: lookups in TextEntry arrays (names compared
/// without case, entries without a value being deletions) and bodies as text.
module TestAnswer =
    let private named (name: string) (e: TextEntry) = EntryName.equals e.Name name

    /// The first value given to `name`; null when no entry with a value names it.
    let first (name: string) (entries: TextEntry[]) : string =
        match entries |> Array.tryFind (fun e -> named name e && e.HasValue) with
        | Some e -> e.Value
        | None -> null

    /// Every value given to `name`, in order; empty when none.
    let values (name: string) (entries: TextEntry[]) : string[] =
        entries |> Array.filter (fun e -> named name e && e.HasValue) |> Array.map (fun e -> e.Value)

    /// Whether an entry without a value (a deletion, in a Rewrite) names `name`.
    let deletes (name: string) (entries: TextEntry[]) : bool =
        entries |> Array.exists (fun e -> named name e && not e.HasValue)

    /// A body as UTF-8 text; empty when there is none.
    let text (body: byte[]) : string =
        if isNull body then "" else Encoding.UTF8.GetString body

    /// Whether a response-phase answer leaves the upstream's status, headers and body as they are.
    let isUnchanged (answer: HttpRespCall.Resp) : bool =
        answer.Status = 0us && Array.isEmpty answer.Headers && Array.isEmpty answer.Body

    /// The kind of a request-phase answer, for assertion messages: `no action`, `Stop` or `Rewrite`.
    let describe (action: HttpReqCall.Action) : string =
        match action with
        | HttpReqCall.NoAction -> "no action"
        | HttpReqCall.Stop _ -> "Stop"
        | HttpReqCall.Rewrite _ -> "Rewrite"

/// Answers ExtraInfo from the test's tables, recording what was asked.
[<Sealed>]
type private TableSource(vars: Dictionary<string, string>, reqBody: byte[], respBody: byte[]) =
    let asked = List<ExtraInfo.Info>()
    member _.Asked = List.ofSeq asked

    interface IExtraInfoSource with
        member _.Fetch(tag, name) =
            let info = ExtraInfo.ofWire tag name
            asked.Add info

            let value =
                match info with
                | ExtraInfo.Var name ->
                    match vars.TryGetValue name with
                    | true, v -> ValueSome(Encoding.UTF8.GetBytes v)
                    | _ -> ValueNone
                | ExtraInfo.ReqBody -> if isNull reqBody then ValueNone else ValueSome reqBody
                | ExtraInfo.RespBody -> if isNull respBody then ValueNone else ValueSome respBody

            ValueTask<byte[] voption>(value)

/// Runs plugins in-process, on the same path as a socket call (encode, validate, chain, encode the
/// answer, decode it as APISIX would), without a socket or APISIX. Exceptions from plugins surface.
[<AbstractClass; Sealed>]
type PluginTestKit =
    /// Prepares a route configuration as PrepareConf would: each plugin with its JSON configuration, in order.
    static member Prepare(conf: (Plugin * string) seq) : Result<Chain, string list> =
        let conf = List.ofSeq conf
        let registry = Dictionary<string, Plugin>(StringComparer.Ordinal)

        for plugin, _ in conf do
            registry[plugin.Name] <- plugin

        Chain.build registry [| for plugin, json in conf -> TextEntry.Set(plugin.Name, json) |]

    /// The body of a frame that `write` encodes, copied out of the builder.
    static member private Body(write: FrameBuilder -> Result<ReadOnlyMemory<byte>, EncodeError>) =
        use builder = new FrameBuilder()

        match write builder with
        | Ok frame -> ReadOnlyMemory(frame.Slice(Frame.HeaderLength).ToArray())
        | Error e -> invalidOp (e.Describe())

    static member private Run(phase: ChainPhase, source: TableSource, start: Call -> unit, decode) =
        task {
            use builder = new FrameBuilder()
            let call = Call()
            start call

            for info in phase.Prefetch do
                let struct (tag, name) = ExtraInfo.toWire info
                let! value = (source :> IExtraInfoSource).Fetch(tag, name)
                call.Prefetched(info, value)

            let! decision = phase.Run call.Request call.Response

            match call.Encode(builder, call.Outcome decision) with
            | Error e -> return invalidOp (e.Describe())
            | Ok frame ->
                call.Finish()

                match decode (frame.Slice Frame.HeaderLength) with
                | Ok answer -> return { Answer = answer; ExtraInfo = source.Asked }
                | Error(e: DecodeError) -> return invalidOp (e.Describe())
        }

    /// Runs the request-phase chain on a request; the answer is the HTTPReqCall.Resp APISIX would get.
    static member RunRequestAsync(chain: Chain, request: TestRequest) : Task<TestResult<HttpReqCall.Resp>> =
        match HttpReqCallView.Read(PluginTestKit.Body(fun b -> Encode.httpReqCallReq b (request.ToMessage 1u))) with
        | Error e -> invalidOp (e.Describe())
        | Ok view ->
            let source = TableSource(request.Vars, request.Body, null)

            PluginTestKit.Run(
                chain.Request,
                source,
                (fun call -> call.StartRequest(view, source, CancellationToken.None)),
                fun (m: ReadOnlyMemory<byte>) -> Decode.httpReqCallResp m.Span
            )

    /// Runs the response-phase chain on an upstream answer; the answer is the HTTPRespCall.Resp APISIX would get.
    static member RunResponseAsync(chain: Chain, upstream: TestUpstream) : Task<TestResult<HttpRespCall.Resp>> =
        let message: HttpRespCall.Req =
            { Id = upstream.Id
              Status = upstream.Status
              Headers = upstream.Headers.ToArray()
              ConfToken = 1u }

        match HttpRespCallView.Read(PluginTestKit.Body(fun b -> Encode.httpRespCallReq b message)) with
        | Error e -> invalidOp (e.Describe())
        | Ok view ->
            let source = TableSource(upstream.Vars, null, upstream.Body)

            PluginTestKit.Run(
                chain.Response,
                source,
                (fun call -> call.StartResponse(view, source, CancellationToken.None)),
                fun (m: ReadOnlyMemory<byte>) -> Decode.httpRespCallResp m.Span
            )
