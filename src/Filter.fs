namespace Apisix.Runner

open System
open System.Collections.Generic
open System.Net
open System.Runtime.InteropServices
open System.Text
open System.Threading
open System.Threading.Tasks

/// What a filter decides: let the chain go on, or stop it here.
/// In the request phase, Stop answers the client with the response built so far, without the
/// upstream; in the response phase it only ends the chain (the changes made still go out).
[<RequireQualifiedAccess>]
type Decision =
    | Continue
    | Stop

/// Asks APISIX for something on the connection of the current call (ExtraInfo).
type internal IExtraInfoSource =
    abstract Fetch: info: ExtraInfo.Info * cancellationToken: CancellationToken -> ValueTask<byte[] voption>

/// Changes to a multi-valued set of names (headers, arguments), kept in the order first made.
/// Names compare without ASCII case. One per request or response, cleared between calls.
[<Sealed>]
type internal Changes() =
    let items = List<TextEntry>()

    member _.Clear() = items.Clear()
    member _.Count = items.Count
    member _.Entries: ReadOnlySpan<TextEntry> = Span.op_Implicit (CollectionsMarshal.AsSpan items)

    member _.Contains(name: string) =
        let mutable found = false
        let mutable i = 0

        while not found && i < items.Count do
            found <- String.Equals(items[i].Name, name, StringComparison.OrdinalIgnoreCase)
            i <- i + 1

        found

    /// Removes the changes to `name`; only deletions when `onlyDeletions`.
    member private _.RemoveWhere(name: string, onlyDeletions: bool) =
        let mutable i = items.Count - 1

        while i >= 0 do
            let e = items[i]

            if (not onlyDeletions || e.Value.IsNone) && String.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase) then
                items.RemoveAt i

            i <- i - 1

    member c.Remove(name: string) = c.RemoveWhere(name, false)

    /// Replaces every value of `name` with one.
    member c.Set(name: string, value: string) =
        if c.Contains name then c.Remove name
        items.Add(TextEntry.Set(name, value))

    /// Adds a value to `name` (a deletion of it is undone); original values are kept only when already copied in.
    member c.Add(name: string, value: string) =
        c.RemoveWhere(name, true)
        items.Add(TextEntry.Set(name, value))

    member c.Delete(name: string) =
        if c.Contains name then c.Remove name
        items.Add(TextEntry.Delete name)

    /// The values now given to `name`, deletions giving none.
    member _.Values(name: string) : string[] =
        let values = List<string>()

        for e in items do
            if String.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase) && e.Value.IsSome then
                values.Add e.Value.Value

        values.ToArray()

    /// The first value now given to `name`: none when it is deleted.
    member _.First(name: string) : string voption =
        let mutable result = ValueNone
        let mutable i = 0

        while result.IsNone && i < items.Count do
            let e = items[i]

            if String.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase) then
                result <- ValueSome e.Value

            i <- i + 1

        match result with
        | ValueSome v -> v
        | ValueNone -> ValueNone

/// Reading APISIX's entries in place.
module internal OriginalEntries =
    /// Every value of `name` (ASCII case ignored), in order; entries without a value give none.
    let values (entries: TextEntries) (name: string) : string[] =
        let values = List<string>()
        let mutable i = entries.IndexOf name

        while i >= 0 do
            match entries.Value i with
            | ValueSome v -> values.Add v
            | ValueNone -> ()

            i <- entries.IndexOf(name, i + 1)

        values.ToArray()

/// The request a filter sees: what APISIX sent, with the changes made so far in the chain applied.
/// Reading marks nothing as changed; only the Set/Add/Delete methods do, and only what changed is
/// sent back. In the response phase APISIX sends no request line or headers: there the request
/// offers the call id, nginx variables and the request body. Valid only during the call.
[<Sealed; AllowNullLiteral>]
type Request internal () =
    let headers = Changes()
    let args = Changes()
    let vars = Dictionary<string, string voption>(StringComparer.Ordinal)
    let mutable view = Unchecked.defaultof<HttpReqCallView>
    let mutable id = 0u
    let mutable path: string = null
    let mutable pathChanged = false
    let mutable newBody = ReadOnlyMemory<byte>.Empty
    let mutable bodyChanged = false
    let mutable originalBody: byte[] voption voption = ValueNone
    let mutable source: IExtraInfoSource = Unchecked.defaultof<_>
    let mutable cancellation = CancellationToken.None

    member internal _.Reset(v: HttpReqCallView, callId: uint32, src: IExtraInfoSource, ct: CancellationToken) =
        view <- v
        id <- callId
        source <- src
        cancellation <- ct
        path <- null
        pathChanged <- false
        newBody <- ReadOnlyMemory<byte>.Empty
        bodyChanged <- false
        originalBody <- ValueNone
        headers.Clear()
        args.Clear()
        vars.Clear()

    /// The call id APISIX gave this call.
    member _.Id = id

    /// Signals the call's deadline, or that the runner is giving up on the call.
    member _.CancellationToken = cancellation

    member _.Method = view.Method

    /// The client address.
    member _.SrcIp =
        let raw = view.SrcIp
        if raw.Length = 4 || raw.Length = 16 then IPAddress(raw) else IPAddress.None

    /// The path the upstream will get (without the query string), rewrites included.
    member _.Path =
        if isNull path then
            path <- if view.Buffer.IsEmpty then "" else view.Path

        path

    /// The headers as APISIX sent them, before any change (names in lower case, one entry per value).
    member _.OriginalHeaders = view.Headers

    /// The arguments as APISIX sent them, before any change (one entry per value).
    member _.OriginalArgs = view.Args

    /// The first value of a header (ASCII case ignored), changes included; none when absent.
    member _.Header(name: string) : string voption =
        if headers.Contains name then headers.First name else view.Headers.TryFind name

    /// The first value of a query argument, changes included; none when absent or given without `=`.
    member _.Arg(name: string) : string voption =
        if args.Contains name then args.First name else view.Args.TryFind name

    /// Every value of a header (ASCII case ignored), in order, changes included; empty when absent or deleted.
    member _.HeaderValues(name: string) : string[] =
        if headers.Contains name then headers.Values name else OriginalEntries.values view.Headers name

    /// Every value of a query argument, changes included.
    member _.ArgValues(name: string) : string[] =
        if args.Contains name then args.Values name else OriginalEntries.values view.Args name

    /// Sends the request upstream to another path.
    member _.SetPath(value: string) =
        path <- value
        pathChanged <- true

    /// Sets a request header (APISIX keeps one value per header). A `host` header also changes the upstream host.
    member _.SetHeader(name: string, value: string) = headers.Set(name, value)

    member _.DeleteHeader(name: string) = headers.Delete name

    /// Replaces every value of a query argument with one.
    member _.SetArg(name: string, value: string) = args.Set(name, value)

    /// Adds a value to a query argument, keeping the values it has.
    member r.AddArg(name: string, value: string) =
        if not (args.Contains name) then
            for v in r.ArgValues name do
                args.Add(name, v)

        args.Add(name, value)

    member _.DeleteArg(name: string) = args.Delete name

    /// Replaces the body sent upstream (APISIX applies only a non-empty body).
    member _.SetBody(body: ReadOnlyMemory<byte>) =
        newBody <- body
        bodyChanged <- true

    member r.SetBody(body: string) = r.SetBody(ReadOnlyMemory(Encoding.UTF8.GetBytes body))

    /// An nginx variable (such as `remote_addr`), asked of APISIX once per call; none when unset.
    member _.Var(name: string) : ValueTask<string voption> =
        match vars.TryGetValue name with
        | true, v -> ValueTask<string voption>(v)
        | _ ->
            ValueTask<string voption>(
                task {
                    let! raw = source.Fetch(ExtraInfo.Var name, cancellation)
                    let v = raw |> ValueOption.map Encoding.UTF8.GetString
                    vars[name] <- v
                    return v
                }
            )

    /// The request body: the one set in this chain, or APISIX's, asked once per call; none when there is none.
    member _.Body() : ValueTask<byte[] voption> =
        if bodyChanged then
            ValueTask<byte[] voption>(ValueSome(newBody.ToArray()))
        else
            match originalBody with
            | ValueSome b -> ValueTask<byte[] voption>(b)
            | ValueNone ->
                ValueTask<byte[] voption>(
                    task {
                        let! raw = source.Fetch(ExtraInfo.ReqBody, cancellation)
                        originalBody <- ValueSome raw
                        return raw
                    }
                )

    member internal _.Prefetched(info: ExtraInfo.Info, value: byte[] voption) =
        match info with
        | ExtraInfo.Var name -> vars[name] <- value |> ValueOption.map Encoding.UTF8.GetString
        | ExtraInfo.ReqBody -> originalBody <- ValueSome value
        | ExtraInfo.RespBody -> ()

    member internal _.PathChange = if pathChanged then ValueSome path else ValueNone
    member internal _.HeaderChanges = headers.Entries
    member internal _.ArgChanges = args.Entries
    member internal _.BodyChange = if bodyChanged then newBody.Span else ReadOnlySpan.Empty

    /// Whether a filter changed anything that a Rewrite carries (response headers aside).
    member internal _.Changed = pathChanged || headers.Count > 0 || args.Count > 0 || (bodyChanged && not newBody.IsEmpty)

/// The response a filter builds. In the request phase it is the answer a Stop sends (its headers
/// also go out with a Rewrite as response headers). In the response phase it starts as the
/// upstream's answer; what filters change is sent back. Valid only during the call.
[<Sealed; AllowNullLiteral>]
type Response internal () =
    let headers = Changes()
    let answerHeaders = List<TextEntry>()
    let mutable status = 0us
    let mutable body = ReadOnlyMemory<byte>.Empty
    let mutable bodyChanged = false
    let mutable upstream = Unchecked.defaultof<HttpRespCallView>
    let mutable upstreamBody: byte[] voption voption = ValueNone
    let mutable source: IExtraInfoSource = Unchecked.defaultof<_>
    let mutable cancellation = CancellationToken.None

    member internal _.Reset(up: HttpRespCallView, src: IExtraInfoSource, ct: CancellationToken) =
        upstream <- up
        source <- src
        cancellation <- ct
        status <- 0us
        body <- ReadOnlyMemory<byte>.Empty
        bodyChanged <- false
        upstreamBody <- ValueNone
        headers.Clear()

    /// The upstream's status (response phase); 0 in the request phase.
    member _.UpstreamStatus = upstream.Status

    /// The upstream's headers as APISIX sent them (response phase; empty in the request phase).
    member _.UpstreamHeaders = upstream.Headers

    /// The status to answer with: the one set in this chain, else the upstream's (0 when neither).
    member _.Status
        with get () = if status <> 0us then status else upstream.Status
        and set (value: uint16) = status <- value

    /// The first value of a header: as set in this chain, else the upstream's.
    member _.Header(name: string) : string voption =
        if headers.Contains name then headers.First name else upstream.Headers.TryFind name

    /// Every value of a header (ASCII case ignored), in order: as set in this chain, else the
    /// upstream's; empty when absent or deleted.
    member _.HeaderValues(name: string) : string[] =
        if headers.Contains name then headers.Values name else OriginalEntries.values upstream.Headers name

    /// Sets a header, replacing every value it had.
    member _.SetHeader(name: string, value: string) = headers.Set(name, value)

    /// Adds a value to a header (the first value set for a name replaces, later ones add).
    member _.AddHeader(name: string, value: string) = headers.Add(name, value)

    /// Removes a header from the answer.
    member _.DeleteHeader(name: string) = headers.Delete name

    /// The body to answer with, when one was set in this chain.
    member _.Body = if bodyChanged then ValueSome body else ValueNone

    /// Sets the body to answer with (APISIX applies only a non-empty body).
    member _.SetBody(value: ReadOnlyMemory<byte>) =
        body <- value
        bodyChanged <- true

    member r.SetBody(value: string) = r.SetBody(ReadOnlyMemory(Encoding.UTF8.GetBytes value))

    /// The upstream's body (response phase), asked of APISIX once per call; none when there is none.
    member _.UpstreamBody() : ValueTask<byte[] voption> =
        match upstreamBody with
        | ValueSome b -> ValueTask<byte[] voption>(b)
        | ValueNone when upstream.Buffer.IsEmpty -> ValueTask<byte[] voption>(ValueNone)
        | ValueNone ->
            ValueTask<byte[] voption>(
                task {
                    let! raw = source.Fetch(ExtraInfo.RespBody, cancellation)
                    upstreamBody <- ValueSome raw
                    return raw
                }
            )

    member internal _.Prefetched(value: byte[] voption) = upstreamBody <- ValueSome value
    member internal _.StatusChange = status
    member internal _.HeaderChanges = headers.Entries
    member internal _.BodyChange = if bodyChanged then body.Span else ReadOnlySpan.Empty

    /// The headers of a response-phase answer. APISIX takes headers that are present as the whole
    /// set, so when any changed, the upstream's go too with the changes applied. A new body makes
    /// the upstream's content-length wrong, so then the set goes without it. None when neither changed.
    member internal _.AnswerHeaders: ReadOnlySpan<TextEntry> =
        let newBody = bodyChanged && not body.IsEmpty

        if headers.Count = 0 && not newBody then
            ReadOnlySpan.Empty
        else
            answerHeaders.Clear()
            let up = upstream.Headers

            for i in 0 .. up.Count - 1 do
                let name = up.Name i

                let stale =
                    newBody && String.Equals(name, "content-length", StringComparison.OrdinalIgnoreCase)

                if not stale && not (headers.Contains name) then
                    answerHeaders.Add { Name = name; Value = up.Value i }

            for e in headers.Entries do
                if e.Value.IsSome then answerHeaders.Add e

            Span.op_Implicit (CollectionsMarshal.AsSpan answerHeaders)

/// A unit of plugin behaviour: given the request and the response so far, decide. Asynchronous so
/// that a filter can ask APISIX for variables or bodies, or await its own IO, without blocking.
type Filter = Request -> Response -> ValueTask<Decision>

/// Building and composing filters.
module Filter =
    /// Go on: the completed answer, cached.
    let next = ValueTask<Decision>(Decision.Continue)

    /// Stop the chain: the completed answer, cached.
    let stop = ValueTask<Decision>(Decision.Stop)

    /// The filter that changes nothing.
    let pass: Filter = fun _ _ -> next

    /// A filter that does its work synchronously.
    let ofSync (f: Request -> Response -> Decision) : Filter =
        fun req resp -> ValueTask<Decision>(f req resp)

    /// Runs `first`, then `second` unless `first` stopped.
    let compose (first: Filter) (second: Filter) : Filter =
        fun req resp ->
            let d = first req resp

            if d.IsCompletedSuccessfully then
                match d.Result with
                | Decision.Stop -> d
                | Decision.Continue -> second req resp
            else
                ValueTask<Decision>(
                    task {
                        match! d with
                        | Decision.Stop -> return Decision.Stop
                        | Decision.Continue -> return! second req resp
                    }
                )

    /// Runs the filters in order until one stops.
    let sequence (filters: Filter seq) : Filter = Seq.fold compose pass filters

    /// Runs `filter` only for requests that satisfy `predicate`.
    let onlyIf (predicate: Request -> bool) (filter: Filter) : Filter =
        fun req resp -> if predicate req then filter req resp else next

    /// Runs `onTrue` or `onFalse` by `predicate`.
    let branch (predicate: Request -> bool) (onTrue: Filter) (onFalse: Filter) : Filter =
        fun req resp -> if predicate req then onTrue req resp else onFalse req resp

    /// Answers at once with this status, headers and body.
    let respond (status: uint16) (headers: (string * string) list) (body: string) : Filter =
        let content = ReadOnlyMemory(Encoding.UTF8.GetBytes body)

        fun _ resp ->
            resp.Status <- status

            for name, value in headers do
                resp.AddHeader(name, value)

            if not content.IsEmpty then resp.SetBody content
            stop

    /// Sets a request header and goes on.
    let setHeader (name: string) (value: string) : Filter =
        fun req _ ->
            req.SetHeader(name, value)
            next

    /// Sets a response header (sent with the eventual response) and goes on.
    let setResponseHeader (name: string) (value: string) : Filter =
        fun _ resp ->
            resp.SetHeader(name, value)
            next

    /// Rewrites the upstream path and goes on.
    let setPath (path: string) : Filter =
        fun req _ ->
            req.SetPath path
            next

    /// Composes two filters: the second runs unless the first stopped.
    let (>=>) first second = compose first second
