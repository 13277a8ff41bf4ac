namespace Apisix.Runner

open System
open System.Collections.Generic
open System.Net
open System.Text
open System.Threading
open System.Threading.Tasks

/// Which kind of call APISIX made.
type CallPhase =
    /// HTTPReqCall: a request on its way upstream (ext-plugin-pre-req, ext-plugin-post-req).
    | Request = 0
    /// HTTPRespCall: the upstream's answer on its way to the client (ext-plugin-post-resp).
    | Response = 1

/// What APISIX sent for the call in progress, by phase; Idle between calls.
[<Struct; NoEquality; NoComparison>]
type internal CallView =
    | Idle
    | RequestCall of request: HttpReqCallView
    | ResponseCall of response: HttpRespCallView

/// Asks APISIX for something on the connection of the current call (ExtraInfo). Answers none when
/// the value is absent, and also when the connection broke: the session then knows, and sends no answer.
/// What is asked is a schema tag (Schema.Info) and, for a variable, its name: no value is made per ask.
type internal IExtraInfoSource =
    abstract Fetch: tag: byte * varName: string -> ValueTask<byte[] voption>

/// A body asked of APISIX at most once per call (the request's, or the upstream's).
[<Sealed>]
type internal FetchedBody(tag: byte) =
    let mutable value: Fetched<byte[]> = NotAsked

    let relay =
        Relay<byte[] voption, FetchedBody, byte[] voption>(fun body raw ->
            body.Set raw
            raw)

    member _.Reset() = value <- NotAsked

    /// The body APISIX gave, or its absence.
    member _.Set(body: byte[] voption) =
        value <-
            match body with
            | ValueSome b -> Present b
            | ValueNone -> Absent

    /// The body, asked of `source` the first time.
    member b.Get(source: IExtraInfoSource) : ValueTask<byte[] voption> =
        match value with
        | Present body -> ValueTask<byte[] voption>(ValueSome body)
        | Absent -> ValueTask<byte[] voption>(ValueNone)
        | NotAsked -> relay.Await(source.Fetch(tag, null), b)

module internal CallViews =
    let outside () =
        invalidOp "the request and response of a call are valid only while its filters run"

    let noRequestLine (what: string) =
        invalidOp $"{what} is not available in the response phase: APISIX sends no request line or headers with HTTPRespCall (read nginx variables with GetVarAsync)"

    let noUpstream (what: string) =
        invalidOp $"{what} is available only in the response phase (ext-plugin-post-resp)"

    /// A relay to C#'s view of a value that may be absent: null when absent.
    let orNull () =
        Relay<'T voption, unit, 'T>(fun () value -> ValueOption.toObj value)

    let text (raw: byte[] voption) =
        match raw with
        | ValueSome bytes -> ValueSome(Encoding.UTF8.GetString bytes)
        | ValueNone -> ValueNone

/// The request a filter sees: what APISIX sent, with the changes made so far in the chain applied.
/// Reading marks nothing as changed; only the Set/Add/Delete methods do, and only what changed is
/// sent back. In the response phase APISIX sends no request line or headers: there the request
/// offers the call id, nginx variables and the request body, and the request-line members throw.
/// Valid only during the call.
[<Sealed; AllowNullLiteral>]
type Request internal () =
    let headers = Changes()
    let args = Changes()
    let vars = Dictionary<string, string voption>(StringComparer.Ordinal)
    let mutable view = Idle
    let mutable id = 0u
    let mutable path: Change<string> = Kept
    let mutable body: Change<ReadOnlyMemory<byte>> = Kept
    let originalBody = FetchedBody Schema.Info.ReqBody

    let varRelay =
        Relay<byte[] voption, string, string voption>(fun name raw ->
            let v = CallViews.text raw
            vars[name] <- v
            v)

    let varOrNull = CallViews.orNull ()
    let bodyOrNull = CallViews.orNull ()
    let mutable source = Unchecked.defaultof<IExtraInfoSource>
    let mutable cancellation = CancellationToken.None
    let mutable plugin = ""

    member private _.Line(what: string) : HttpReqCallView =
        match view with
        | RequestCall v -> v
        | ResponseCall _ -> CallViews.noRequestLine what
        | Idle -> CallViews.outside ()

    member internal _.Reset(v: CallView, callId: uint32, src: IExtraInfoSource, ct: CancellationToken) =
        view <- v
        id <- callId
        source <- src
        cancellation <- ct
        path <- Kept
        body <- Kept
        originalBody.Reset()
        plugin <- ""
        headers.Clear()
        args.Clear()
        vars.Clear()

    /// The plugin whose filter runs now, for the log when the call fails; empty before the first.
    member internal _.Plugin
        with get () = plugin
        and set (name: string) = plugin <- name

    /// The call id APISIX gave this call.
    member _.Id = id

    /// Which kind of call this is.
    member _.Phase =
        match view with
        | ResponseCall _ -> CallPhase.Response
        | _ -> CallPhase.Request

    /// Signals the call's deadline, or that the runner is giving up on the call.
    member _.CancellationToken = cancellation

    /// The request method (request phase).
    member r.Method = r.Line(nameof r.Method).Method

    /// The client address (request phase); null when APISIX sent none.
    member r.SrcIp: IPAddress =
        let raw = r.Line(nameof r.SrcIp).SrcIp
        if raw.Length = 4 || raw.Length = 16 then IPAddress(raw) else null

    /// The path the upstream will get (without the query string), rewrites included (request phase).
    member r.Path =
        match path with
        | Replaced p -> p
        | Kept -> r.Line(nameof r.Path).Path

    /// The headers as APISIX sent them, before any change (names in lower case, one entry per value; request phase).
    member r.OriginalHeaders = r.Line(nameof r.OriginalHeaders).Headers

    /// The arguments as APISIX sent them, before any change (one entry per value; request phase).
    member r.OriginalArgs = r.Line(nameof r.OriginalArgs).Args

    /// The first value of a header (names compared without ASCII case), changes included; null when absent or deleted.
    member r.GetHeader(name: string) : string =
        if headers.Contains name then headers.First name else r.OriginalHeaders.Find name

    /// The first value of a query argument, changes included; null when absent, deleted or given without `=`.
    member r.GetArg(name: string) : string =
        if args.Contains name then args.First name else r.OriginalArgs.Find name

    /// Every value of a header, in order, changes included; empty when absent or deleted.
    member r.HeaderValues(name: string) : string[] =
        if headers.Contains name then headers.Values name else r.OriginalHeaders.Values name

    /// Every value of a query argument, changes included.
    member r.ArgValues(name: string) : string[] =
        if args.Contains name then args.Values name else r.OriginalArgs.Values name

    /// Sends the request upstream to another path.
    member _.SetPath(value: string) =
        ArgumentNullException.ThrowIfNull value
        path <- Replaced value

    /// Sets a request header (APISIX keeps one value per header). A `host` header also changes the upstream host.
    member _.SetHeader(name: string, value: string) =
        ArgumentNullException.ThrowIfNull value
        headers.Set(name, value)

    member _.DeleteHeader(name: string) = headers.Delete name

    /// Replaces every value of a query argument with one.
    member _.SetArg(name: string, value: string) =
        ArgumentNullException.ThrowIfNull value
        args.Set(name, value)

    /// Adds a value to a query argument, keeping the values it has.
    member r.AddArg(name: string, value: string) =
        ArgumentNullException.ThrowIfNull value

        if not (args.Contains name) then
            for v in r.ArgValues name do
                args.Add(name, v)

        args.Add(name, value)

    member _.DeleteArg(name: string) = args.Delete name

    /// Replaces the body sent upstream (APISIX applies only a non-empty body).
    member _.SetBody(value: ReadOnlyMemory<byte>) = body <- Replaced value

    member r.SetBody(value: string) = r.SetBody(ReadOnlyMemory(Encoding.UTF8.GetBytes value))

    /// An nginx variable (such as `remote_addr`), asked of APISIX once per call; none when unset.
    member internal _.FetchVar(name: string) : ValueTask<string voption> =
        match vars.TryGetValue name with
        | true, v -> ValueTask<string voption>(v)
        | _ -> varRelay.Await(source.Fetch(Schema.Info.Var, name), name)

    /// An nginx variable (such as `remote_addr`), asked of APISIX on first read and kept for the
    /// rest of the call; null when unset.
    member r.GetVarAsync(name: string) : ValueTask<string> = varOrNull.Await(r.FetchVar name, ())

    /// The request body: the one set in this chain, or APISIX's, asked once per call; none when there is none.
    member internal _.FetchBody() : ValueTask<byte[] voption> =
        match body with
        | Replaced b -> ValueTask<byte[] voption>(ValueSome(b.ToArray()))
        | Kept -> originalBody.Get source

    /// The request body: the one set earlier in the chain, else APISIX's, asked on first read and
    /// kept for the rest of the call; null when the request has none.
    member r.GetBodyAsync() : ValueTask<byte[]> = bodyOrNull.Await(r.FetchBody(), ())

    member internal _.Prefetched(info: ExtraInfo.Info, value: byte[] voption) =
        match info with
        | ExtraInfo.Var name -> vars[name] <- CallViews.text value
        | ExtraInfo.ReqBody -> originalBody.Set value
        | ExtraInfo.RespBody -> ()

    member internal _.PathChange =
        match path with
        | Replaced p -> p
        | Kept -> null

    member internal _.HeaderChanges = headers.Entries
    member internal _.ArgChanges = args.Entries

    member internal _.BodyChange =
        match body with
        | Replaced b -> b.Span
        | Kept -> ReadOnlySpan.Empty

    /// Whether a filter changed anything that a Rewrite carries (response headers aside).
    member internal _.Changed =
        let newBody =
            match body with
            | Replaced b -> not b.IsEmpty
            | Kept -> false

        path.IsReplaced || headers.Count > 0 || args.Count > 0 || newBody

/// The response a filter builds. In the request phase it is the answer a Stop sends (its headers
/// also go out with a Rewrite as response headers). In the response phase it starts as the
/// upstream's answer; what filters change is sent back. Valid only during the call.
[<Sealed; AllowNullLiteral>]
type Response internal () =
    let headers = Changes()
    let answerHeaders = List<TextEntry>()
    let mutable view = Idle
    let mutable status = 0us
    let mutable body: Change<ReadOnlyMemory<byte>> = Kept
    let upstreamBody = FetchedBody Schema.Info.RespBody
    let upstreamOrNull = CallViews.orNull ()
    let mutable source = Unchecked.defaultof<IExtraInfoSource>

    member private _.Upstream(what: string) : HttpRespCallView =
        match view with
        | ResponseCall v -> v
        | RequestCall _ -> CallViews.noUpstream what
        | Idle -> CallViews.outside ()

    /// The upstream's headers when in the response phase; none in the request phase.
    member private _.UpstreamEntries =
        match view with
        | ResponseCall v -> v.Headers
        | RequestCall _ -> TextEntries.Empty
        | Idle -> CallViews.outside ()

    member internal _.Reset(v: CallView, src: IExtraInfoSource) =
        view <- v
        source <- src
        status <- 0us
        body <- Kept
        upstreamBody.Reset()
        headers.Clear()

    /// The upstream's status (response phase).
    member r.UpstreamStatus: int = int (r.Upstream(nameof r.UpstreamStatus).Status)

    /// The upstream's headers as APISIX sent them (response phase).
    member r.UpstreamHeaders = r.Upstream(nameof r.UpstreamHeaders).Headers

    /// The status to answer with: the one set in this chain, else the upstream's (0 when neither).
    /// Set it to a three-digit HTTP status, or to 0 to take back a status set earlier in the chain.
    member _.Status
        with get (): int =
            if status <> 0us then
                int status
            else
                match view with
                | ResponseCall v -> int v.Status
                | _ -> 0
        and set (value: int) =
            if value <> 0 && (value < 100 || value > 999) then
                raise (ArgumentOutOfRangeException(nameof value, value, "an HTTP status has three digits (0 takes a set status back)"))

            status <- uint16 value

    /// The first value of a header: as set in this chain, else the upstream's; null when absent or deleted.
    member r.GetHeader(name: string) : string =
        if headers.Contains name then headers.First name else r.UpstreamEntries.Find name

    /// Every value of a header, in order: as set in this chain, else the upstream's; empty when absent or deleted.
    member r.HeaderValues(name: string) : string[] =
        if headers.Contains name then headers.Values name else r.UpstreamEntries.Values name

    /// Sets a header, replacing every value it had.
    member _.SetHeader(name: string, value: string) =
        ArgumentNullException.ThrowIfNull value
        headers.Set(name, value)

    /// Adds a value to a header (the first value set for a name replaces, later ones add).
    member _.AddHeader(name: string, value: string) =
        ArgumentNullException.ThrowIfNull value
        headers.Add(name, value)

    /// Removes a header from the answer.
    member _.DeleteHeader(name: string) = headers.Delete name

    /// The body set in this chain; null when none was.
    member _.GetBody() : Nullable<ReadOnlyMemory<byte>> =
        match body with
        | Replaced b -> Nullable b
        | Kept -> Nullable()

    /// Sets the body to answer with (APISIX applies only a non-empty body).
    member _.SetBody(value: ReadOnlyMemory<byte>) = body <- Replaced value

    member r.SetBody(value: string) = r.SetBody(ReadOnlyMemory(Encoding.UTF8.GetBytes value))

    /// The upstream's body (response phase), asked of APISIX once per call; none when there is none.
    member internal _.FetchUpstreamBody() : ValueTask<byte[] voption> =
        match view with
        | ResponseCall _ -> upstreamBody.Get source
        | RequestCall _ -> ValueTask<byte[] voption>(ValueNone)
        | Idle -> CallViews.outside ()

    /// The upstream's body (response phase), asked of APISIX on first read and kept for the rest of
    /// the call; null when there is none (always in the request phase).
    member r.GetUpstreamBodyAsync() : ValueTask<byte[]> = upstreamOrNull.Await(r.FetchUpstreamBody(), ())

    member internal _.Prefetched(value: byte[] voption) = upstreamBody.Set value

    member internal _.StatusChange = status
    member internal _.HeaderChanges = headers.Entries

    member internal _.BodyChange =
        match body with
        | Replaced b -> b.Span
        | Kept -> ReadOnlySpan.Empty

    /// The headers of a response-phase answer. APISIX takes headers that are present as the whole
    /// set, so when any changed, the upstream's go too with the changes applied. A new body makes
    /// the upstream's content-length wrong, so then the set goes without it. None when neither changed.
    member internal r.AnswerHeaders: ReadOnlySpan<TextEntry> =
        let newBody =
            match body with
            | Replaced b -> not b.IsEmpty
            | Kept -> false

        if headers.Count = 0 && not newBody then
            ReadOnlySpan.Empty
        else
            answerHeaders.Clear()
            let up = r.UpstreamEntries

            for i in 0 .. up.Count - 1 do
                let name = up.Name i
                let stale = newBody && EntryName.equals name "content-length"

                if not stale && not (headers.Contains name) then
                    answerHeaders.Add { Name = name; Value = up.Value i }

            for e in headers.Entries do
                if e.HasValue then answerHeaders.Add e

            Span.op_Implicit (Runtime.InteropServices.CollectionsMarshal.AsSpan answerHeaders)
