namespace Apisix.Runner

open System.Threading

/// How a call ended, as metrics and traces name it.
[<RequireQualifiedAccess>]
type internal Outcome =
    /// Request phase: the request goes on unchanged.
    | Pass
    /// Request phase: the request goes on, rewritten.
    | Rewrite
    /// Request phase: APISIX answers the client without the upstream.
    | Stop
    /// Response phase: the answer went back (changed or not).
    | Respond
    /// A plugin threw, or the answer could not be encoded: SERVICE_UNAVAILABLE.
    | Error
    /// The call missed its deadline: SERVICE_UNAVAILABLE, and the connection closes.
    | Timeout
    /// APISIX closed the connection or broke the protocol mid-call: nothing was answered.
    | Broken

    member o.Name =
        match o with
        | Pass -> "pass"
        | Rewrite -> "rewrite"
        | Stop -> "stop"
        | Respond -> "respond"
        | Error -> "error"
        | Timeout -> "timeout"
        | Broken -> "broken"

/// One call's request and response, reused call after call on one connection, and the answer
/// encoded as APISIX applies it. Shared by the runtime's sessions and the test kit, so that
/// plugins are tested on exactly the path they run on. Calls run one at a time.
[<Sealed>]
type internal Call() =
    let request = Request()
    let response = Response()

    member _.Request = request
    member _.Response = response

    /// The plugin running now, for the log when the call fails; `(prefetch)` before the first.
    member _.Plugin = if request.Plugin = "" then "(prefetch)" else request.Plugin

    /// Sets up a request-phase call: the request as APISIX sent it, an empty answer.
    member _.StartRequest(view: HttpReqCallView, source: IExtraInfoSource, ct: CancellationToken) =
        request.Reset(RequestCall view, view.Id, source, ct)
        response.Reset(RequestCall view, source)

    /// Sets up a response-phase call: the upstream's answer, no request line or headers.
    member _.StartResponse(view: HttpRespCallView, source: IExtraInfoSource, ct: CancellationToken) =
        request.Reset(ResponseCall view, view.Id, source, ct)
        response.Reset(ResponseCall view, source)

    /// Ends the call: its request and response refuse reads until the next one starts.
    member _.Finish() =
        request.Reset(Idle, 0u, Unchecked.defaultof<_>, CancellationToken.None)
        response.Reset(Idle, Unchecked.defaultof<_>)

    /// Hands a prefetched value to the object that serves it.
    member _.Prefetched(info: ExtraInfo.Info, value: byte[] voption) =
        match info with
        | ExtraInfo.RespBody -> response.Prefetched value
        | _ -> request.Prefetched(info, value)

    /// How a call that decided `decision` ends, when its answer goes out.
    member _.Outcome(decision: Decision) =
        match request.Phase, decision with
        | CallPhase.Request, Decision.Stop -> Outcome.Stop
        | CallPhase.Request, _ when request.Changed || response.HeaderChanges.Length > 0 -> Outcome.Rewrite
        | CallPhase.Request, _ -> Outcome.Pass
        | _ -> Outcome.Respond

    /// The answer frame for the call's `outcome` (its Outcome): in the request phase a Stop (status
    /// 200 unless set), a Rewrite of only what changed, or no action when nothing did; in the
    /// response phase the changed status and body, and the whole header set when any header changed.
    member _.Encode(builder: FrameBuilder, outcome: Outcome) =
        match outcome with
        | Outcome.Stop ->
            let status = if response.StatusChange = 0us then 200us else response.StatusChange
            Write.httpReqCallStop (builder, request.Id, status, response.HeaderChanges, response.BodyChange)
        | Outcome.Rewrite ->
            Write.httpReqCallRewrite (
                builder,
                request.Id,
                request.PathChange,
                request.HeaderChanges,
                request.ArgChanges,
                response.HeaderChanges,
                request.BodyChange
            )
        | Outcome.Pass -> Write.httpReqCallContinue (builder, request.Id)
        | _ -> Write.httpRespCallResp (builder, request.Id, response.StatusChange, response.AnswerHeaders, response.BodyChange)

