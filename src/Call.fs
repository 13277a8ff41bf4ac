namespace Apisix.Runner

open System.Threading
open System.Threading.Tasks

/// Which kind of call APISIX made: a request to filter (HTTPReqCall) or an upstream answer (HTTPRespCall).
type CallPhase =
    | RequestPhase
    | ResponsePhase

/// Runs one call's chain over reusable request and response objects and encodes the answer as
/// APISIX applies it. Shared by the socket connection and the in-process test kit, so that
/// plugins are tested on exactly the path they run on. One per connection; calls run one at a time.
[<Sealed>]
type internal CallRunner() =
    let request = Request()
    let response = Response()
    let mutable current = 0

    member _.Request = request
    member _.Response = response

    /// The plugin whose filter ran last: the one to blame for a failure.
    member _.CurrentPlugin(filters: struct (string * Filter)[]) =
        if filters.Length = 0 then
            "(prefetch)"
        else
            let struct (name, _) = filters[min current (filters.Length - 1)]
            name

    /// Sets up a request-phase call: the request as APISIX sent it, an empty answer.
    member _.StartRequest(view: HttpReqCallView, source: IExtraInfoSource, ct: CancellationToken) =
        request.Reset(view, view.Id, source, ct)
        response.Reset(Unchecked.defaultof<_>, source, ct)

    /// Sets up a response-phase call: the upstream's answer, no request line or headers.
    member _.StartResponse(view: HttpRespCallView, source: IExtraInfoSource, ct: CancellationToken) =
        request.Reset(Unchecked.defaultof<_>, view.Id, source, ct)
        response.Reset(view, source, ct)

    /// Hands a prefetched value to the object that serves it.
    member _.Prefetched(info: ExtraInfo.Info, value: byte[] voption) =
        match info with
        | ExtraInfo.RespBody -> response.Prefetched value
        | _ -> request.Prefetched(info, value)

    /// Runs the filters in order until one stops; synchronous filters run without allocating.
    member c.RunChain(filters: struct (string * Filter)[]) : ValueTask<Decision> =
        current <- 0
        let mutable i = 0
        let mutable result = Filter.next

        while i < filters.Length do
            current <- i
            let struct (_, filter) = filters[i]
            let d = filter request response

            if d.IsCompletedSuccessfully then
                match d.Result with
                | Decision.Stop ->
                    result <- d
                    i <- filters.Length
                | Decision.Continue -> i <- i + 1
            else
                result <- ValueTask<Decision>(c.RunRest(d, filters, i))
                i <- filters.Length

        result

    member private _.RunRest(pending: ValueTask<Decision>, filters: struct (string * Filter)[], start: int) : Task<Decision> =
        task {
            let! first = pending
            let mutable decision = first
            let mutable i = start + 1

            while decision = Decision.Continue && i < filters.Length do
                current <- i
                let struct (_, filter) = filters[i]
                let! d = filter request response
                decision <- d
                i <- i + 1

            return decision
        }

    /// The answer frame: a Stop (status 200 unless set), a Rewrite of only what changed, no action
    /// when nothing did, or in the response phase the changed status and body, and the whole
    /// header set when any header changed.
    member _.Encode(builder: FlatBufferBuilder, phase: CallPhase, id: uint32, decision: Decision) =
        match phase, decision with
        | RequestPhase, Decision.Stop ->
            let status = if response.StatusChange = 0us then 200us else response.StatusChange
            Encode.httpReqCallStop (builder, id, status, response.HeaderChanges, response.BodyChange)
        | RequestPhase, Decision.Continue when request.Changed || response.HeaderChanges.Length > 0 ->
            Encode.httpReqCallRewrite (
                builder,
                id,
                request.PathChange,
                request.HeaderChanges,
                request.ArgChanges,
                response.HeaderChanges,
                request.BodyChange
            )
        | RequestPhase, Decision.Continue -> Encode.httpReqCallContinue (builder, id)
        | ResponsePhase, _ ->
            Encode.httpRespCallAnswer (builder, id, response.StatusChange, response.AnswerHeaders, response.BodyChange)

    /// A word for the debug log, without reflection-based formatting.
    static member Describe(phase: CallPhase, decision: Decision) =
        match phase, decision with
        | RequestPhase, Decision.Stop -> "stop"
        | RequestPhase, Decision.Continue -> "continue"
        | ResponsePhase, _ -> "response"
