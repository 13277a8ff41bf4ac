namespace Apisix.Runner

open System
open System.Diagnostics
open System.Text
open System.Threading.Tasks

/// What a filter decides.
[<RequireQualifiedAccess>]
type Decision =
    /// Go on with the rest of the chain. What the filter changed goes out with the answer.
    | Continue
    /// Stop the chain here. In the request phase the client gets the response built so far, without
    /// the upstream; in the response phase the changes made so far go out.
    | Stop
    /// This filter does not apply: the rest of its composition (`>=>`) is skipped and `choose`
    /// tries its next filter. Between plugins it means Continue.
    | Skip

/// A unit of plugin behaviour: given the request and the response so far, decide. Asynchronous so
/// that a filter can ask APISIX for variables or bodies, or await its own IO, without blocking;
/// a filter that completes synchronously costs no allocation.
type Filter = Request -> Response -> ValueTask<Decision>

/// A filter made from a two-argument delegate: one object, called with both arguments at once.
/// The combinators build their filters with it because F# may compile a lambda that returns a
/// lambda (once inlined elsewhere) as a chain of one-argument closures, and every call through
/// such a filter would allocate a partial application.
[<Sealed>]
type internal FilterOf(run: Func<Request, Response, ValueTask<Decision>>) =
    inherit OptimizedClosures.FSharpFunc<Request, Response, ValueTask<Decision>>()
    override _.Invoke(req: Request, resp: Response) = run.Invoke(req, resp)
    override _.Invoke(req: Request) = fun resp -> run.Invoke(req, resp)

    /// The filter of `run`.
    static member Make(run: Func<Request, Response, ValueTask<Decision>>) : Filter = unbox<Filter> (box (FilterOf run))

/// Building and composing filters, in the manner of Giraffe's handlers: `>=>` runs filters in
/// sequence until one stops or skips, `choose` takes the first that applies, `guard` skips the
/// rest of a composition unless a condition holds, `around` runs code around the rest.
[<AutoOpen>]
module Filters =
    /// Go on: the completed answer, cached.
    [<CompiledName("Proceed")>]
    let proceed = ValueTask<Decision>(Decision.Continue)

    /// Stop the chain: the completed answer, cached.
    [<CompiledName("Halt")>]
    let stop = ValueTask<Decision>(Decision.Stop)

    /// Not for this request: the completed answer, cached.
    [<CompiledName("Skipped")>]
    let skip = ValueTask<Decision>(Decision.Skip)

    /// The filter that changes nothing and goes on.
    [<CompiledName("Pass")>]
    let pass: Filter = FilterOf.Make(fun _ _ -> proceed)

    /// A filter from a delegate, for C# and other .NET languages.
    [<CompiledName("OfFunc")>]
    let ofFunc (run: Func<Request, Response, ValueTask<Decision>>) : Filter = FilterOf.Make run

    /// A filter that does its work synchronously.
    [<CompiledName("OfSync")>]
    let ofSync (f: Request -> Response -> Decision) : Filter =
        FilterOf.Make(fun req resp -> ValueTask<Decision>(f req resp))

    /// A filter written with `task { }`.
    [<CompiledName("OfTask")>]
    let ofTask (f: Request -> Response -> Task<Decision>) : Filter =
        FilterOf.Make(fun req resp -> ValueTask<Decision>(f req resp))

    /// A filter written with `async { }`.
    [<CompiledName("OfAsync")>]
    let ofAsync (f: Request -> Response -> Async<Decision>) : Filter =
        FilterOf.Make(fun req resp -> ValueTask<Decision>(Async.StartImmediateAsTask(f req resp)))

    /// `decided`, or what `next` decides when `decided` is `trigger`: how every combinator hands on.
    /// A decision already made hands on without allocating.
    let internal handOn (trigger: Decision) (next: Filter) (decided: ValueTask<Decision>) (req: Request) (resp: Response) =
        if decided.IsCompletedSuccessfully then
            if decided.Result = trigger then next req resp else decided
        else
            ValueTask<Decision>(
                task {
                    let! d = decided
                    if d = trigger then return! next req resp else return d
                }
            )

    /// Runs `first`, then `second` when `first` decided Continue. Synchronous filters compose
    /// without allocating.
    [<CompiledName("Compose")>]
    let compose (first: Filter) (second: Filter) : Filter =
        FilterOf.Make(fun req resp -> handOn Decision.Continue second (first req resp) req resp)

    /// `first >=> second`: `second` runs when `first` decided Continue.
    let (>=>) (first: Filter) (second: Filter) : Filter = compose first second

    /// Runs the filters in order while each decides Continue. A list, not a seq: F# passes a
    /// collection of functions as a seq by wrapping each one in a curried closure, which would
    /// allocate on every call.
    [<CompiledName("Sequence")>]
    let sequence (filters: Filter list) : Filter =
        match filters with
        | [] -> pass
        | first :: rest -> List.fold compose first rest

    /// Tries the filters in order and gives the first decision that is not Skip; Skip when all skip.
    [<CompiledName("Choose")>]
    let choose (filters: Filter list) : Filter =
        let rec first (remaining: Filter list) : Filter =
            match remaining with
            | [] -> FilterOf.Make(fun _ _ -> skip)
            | f :: rest ->
                let others = first rest

                FilterOf.Make(fun req resp -> handOn Decision.Skip others (f req resp) req resp)

        first filters

    /// Goes on when `predicate` holds for the request, skips the rest of the composition otherwise.
    [<CompiledName("Guard")>]
    let guard (predicate: Request -> bool) : Filter =
        FilterOf.Make(fun req resp -> if predicate req then proceed else skip)

    /// `guard` with a predicate that may ask APISIX (nginx variables, the body) or await its own IO.
    [<CompiledName("GuardAsync")>]
    let guardAsync (predicate: Request -> ValueTask<bool>) : Filter =
        FilterOf.Make(fun req resp ->
            let holds = predicate req

            if holds.IsCompletedSuccessfully then
                if holds.Result then proceed else skip
            else
                ValueTask<Decision>(
                    task {
                        let! ok = holds
                        return if ok then Decision.Continue else Decision.Skip
                    }
                )
        )

    /// Runs `filter` only for requests that satisfy `predicate`; goes on otherwise.
    [<CompiledName("OnlyIf")>]
    let onlyIf (predicate: Request -> bool) (filter: Filter) : Filter =
        FilterOf.Make(fun req resp -> if predicate req then filter req resp else proceed)

    /// Runs `onTrue` or `onFalse` by `predicate`.
    [<CompiledName("Branch")>]
    let branch (predicate: Request -> bool) (onTrue: Filter) (onFalse: Filter) : Filter =
        FilterOf.Make(fun req resp -> if predicate req then onTrue req resp else onFalse req resp)

    /// Wraps `inner` (the rest of a composition) in `wrapper`, which gets it as its first argument
    /// and decides when, whether and how to run it: `around timed (a >=> b)`, or
    /// `a >=> b |> around recover`. For timing, catching and cleaning up around filters.
    [<CompiledName("Around")>]
    let around (wrapper: Filter -> Request -> Response -> ValueTask<Decision>) (inner: Filter) : Filter =
        wrapper inner

    /// Answers at once with this status, headers and body.
    [<CompiledName("Respond")>]
    let respond (status: int) (headers: (string * string) list) (body: string) : Filter =
        let content = ReadOnlyMemory(Encoding.UTF8.GetBytes body)

        FilterOf.Make(fun _ resp ->
            resp.Status <- status

            for name, value in headers do
                resp.AddHeader(name, value)

            if not content.IsEmpty then resp.SetBody content
            stop)

    /// Sets a request header and goes on.
    [<CompiledName("SetHeader")>]
    let setHeader (name: string) (value: string) : Filter =
        FilterOf.Make(fun req resp ->
            req.SetHeader(name, value)
            proceed
        )

    /// Sets a response header (sent with the eventual response) and goes on.
    [<CompiledName("SetResponseHeader")>]
    let setResponseHeader (name: string) (value: string) : Filter =
        FilterOf.Make(fun req resp ->
            resp.SetHeader(name, value)
            proceed
        )

    /// Rewrites the upstream path and goes on.
    [<CompiledName("SetPath")>]
    let setPath (path: string) : Filter =
        FilterOf.Make(fun req resp ->
            req.SetPath path
            proceed
        )

    /// Measures `inner` and hands the elapsed time and decision to `report` (for logs or metrics).
    [<CompiledName("Timed")>]
    let timed (report: Request -> TimeSpan -> Decision -> unit) (inner: Filter) : Filter =
        FilterOf.Make(fun req resp ->
            let started = Stopwatch.GetTimestamp()
            let d = inner req resp

            if d.IsCompletedSuccessfully then
                report req (Stopwatch.GetElapsedTime started) d.Result
                d
            else
                ValueTask<Decision>(
                    task {
                        let! decided = d
                        report req (Stopwatch.GetElapsedTime started) decided
                        return decided
                    }
                )
        )

    /// The F# view of a request: values as options instead of nulls.
    type Request with
        /// The first value of a header, changes included; none when absent or deleted.
        member r.Header(name: string) = ValueOption.ofObj (r.GetHeader name)

        /// The first value of a query argument, changes included; none when absent, deleted or given without `=`.
        member r.Arg(name: string) = ValueOption.ofObj (r.GetArg name)

        /// An nginx variable (such as `remote_addr`), asked of APISIX once per call; none when unset.
        member r.Var(name: string) : ValueTask<string voption> = r.FetchVar name

        /// The request body: the one set in this chain, or APISIX's, asked once per call; none when there is none.
        member r.Body() : ValueTask<byte[] voption> = r.FetchBody()

    /// The F# view of a response: values as options instead of nulls.
    type Response with
        /// The first value of a header: as set in this chain, else the upstream's; none when absent or deleted.
        member r.Header(name: string) = ValueOption.ofObj (r.GetHeader name)

        /// The body set in this chain, if any.
        member r.Body =
            let b = r.GetBody()
            if b.HasValue then ValueSome b.Value else ValueNone

        /// The upstream's body (response phase), asked of APISIX once per call; none when there is none.
        member r.UpstreamBody() : ValueTask<byte[] voption> = r.FetchUpstreamBody()

    /// The F# view of entries: values as options instead of nulls.
    type TextEntries with
        /// The first value of `name`; none when absent or without a value.
        member e.TryFind(name: string) = ValueOption.ofObj (e.Find name)
