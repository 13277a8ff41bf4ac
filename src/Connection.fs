namespace Apisix.Runner

open System
open System.Buffers
open System.Collections.Generic
open System.Globalization
open System.IO
open System.Net.Sockets
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging

/// The connection can no longer carry calls: APISIX closed it or broke the protocol mid-call.
exception internal ConnectionBroken of reason: string

/// What every connection shares: the prepared configurations, the plugins, settings, log.
type internal RunnerContext =
    { Cache: ConfCache
      Plugins: IReadOnlyDictionary<string, Plugin>
      Options: RunnerOptions
      Logger: ILogger }

/// Log messages, defined once so that nothing is formatted unless the level is on. Every value
/// that comes from the wire (keys, plugin names, reasons, exception messages) goes through
/// `escape` at the call site: nothing APISIX sends can start a log line or drive a terminal.
/// Header values are never logged, at any level.
module internal Log =
    /// A character that must not reach a log line raw: C0 and C1 controls (line breaks, ESC of
    /// terminal sequences, NUL, DEL), Unicode line and paragraph separators, bidirectional overrides.
    let private unsafe (c: char) =
        Char.IsControl c
        || c = '\u2028'
        || c = '\u2029'
        || (c >= '\u202A' && c <= '\u202E')
        || (c >= '\u2066' && c <= '\u2069')

    /// The most characters of one value a log line shows: a frame can carry megabytes of it.
    [<Literal>]
    let MaxValueLength = 1024

    /// A value as it may appear in a log line: each unsafe character written as an escape (`\n`,
    /// `\r`, `\t`, otherwise `\u001b` and the like), and cut after MaxValueLength characters
    /// with the count of the rest. The value itself when it needs neither.
    let escape (value: string) : string =
        if isNull value then
            value
        else
            let shown = min value.Length MaxValueLength
            let mutable first = 0

            while first < shown && not (unsafe value[first]) do
                first <- first + 1

            if first = value.Length then
                value
            else
                let sb = StringBuilder(shown + 32)
                sb.Append(value, 0, first) |> ignore

                for i in first .. shown - 1 do
                    match value[i] with
                    | '\n' -> sb.Append "\\n" |> ignore
                    | '\r' -> sb.Append "\\r" |> ignore
                    | '\t' -> sb.Append "\\t" |> ignore
                    | c when unsafe c -> sb.Append("\\u").Append((int c).ToString("x4", CultureInfo.InvariantCulture)) |> ignore
                    | c -> sb.Append c |> ignore

                if shown < value.Length then
                    sb.Append("... (").Append(value.Length - shown).Append(" more characters)") |> ignore

                sb.ToString()

    /// The most problems of one rejected configuration a log line lists: one frame can name
    /// thousands of unknown plugins.
    [<Literal>]
    let MaxProblems = 10

    /// The problems of a rejected configuration, escaped, in one line.
    let problems (all: string list) : string =
        let shown = all |> List.truncate MaxProblems |> List.map escape
        let rest = all.Length - shown.Length
        let text = String.Join("; ", shown)
        if rest > 0 then text + "; and " + string rest + " more" else text

    /// An exception as the log shows it: the original's type, message (escaped: it may echo what
    /// APISIX sent), inner exceptions and stack traces, laid out as .NET does.
    [<Sealed>]
    type EscapedException(original: exn) =
        inherit Exception(escape original.Message)

        /// The exception that was thrown.
        member _.Original = original

        override _.StackTrace = original.StackTrace

        override _.ToString() =
            let sb = StringBuilder()

            let rec write (e: exn) =
                sb.Append(e.GetType().FullName).Append(": ").Append(escape e.Message) |> ignore

                match e.InnerException with
                | null -> ()
                | inner ->
                    sb.Append " ---> " |> ignore
                    write inner
                    sb.AppendLine().Append "   --- End of inner exception stack trace ---" |> ignore

                match e.StackTrace with
                | null -> ()
                | trace -> sb.AppendLine().Append trace |> ignore

            write original
            sb.ToString()

    /// An exception for the log, its message escaped.
    let escaped (ex: exn) : exn = EscapedException ex :> exn

    let confRejected =
        LoggerMessage.Define<string, string>(LogLevel.Error, EventId(1, "ConfRejected"), "PrepareConf rejected, the route answers 503 until fixed (key {Key}): {Problems}")

    let pluginFailed =
        LoggerMessage.Define<string, uint32>(LogLevel.Error, EventId(2, "PluginFailed"), "Plugin {Plugin} failed in call {CallId}; answered SERVICE_UNAVAILABLE")

    let callTimedOut =
        LoggerMessage.Define<uint32, string, TimeSpan>(LogLevel.Error, EventId(3, "CallTimedOut"), "Call {CallId} did not finish in plugin {Plugin} within {Deadline}; answered SERVICE_UNAVAILABLE and closed the connection")

    let badFrame =
        LoggerMessage.Define<string>(LogLevel.Warning, EventId(4, "BadFrame"), "Answered BAD_REQUEST and closed the connection: {Reason}")

    let answerFailed =
        LoggerMessage.Define<uint32, string>(LogLevel.Error, EventId(5, "AnswerFailed"), "The answer to call {CallId} could not be encoded: {Reason}")

    let tokenNotFound =
        LoggerMessage.Define<uint32>(LogLevel.Information, EventId(6, "TokenNotFound"), "Conf token {Token} is unknown or expired; APISIX will prepare it again")

    let connectionLost =
        LoggerMessage.Define<string>(LogLevel.Information, EventId(7, "ConnectionLost"), "Connection dropped mid-call: {Reason}")

    let connectionFailed =
        LoggerMessage.Define(LogLevel.Error, EventId(9, "ConnectionFailed"), "A connection failed unexpectedly; it was closed")

    let call =
        LoggerMessage.Define<uint32, uint32, string>(LogLevel.Debug, EventId(8, "Call"), "Call {CallId} with token {Token}: {Answer}")

/// One APISIX connection: reads frames, serves one call at a time (with its ExtraInfo exchanges
/// on the same connection), writes the answers, until APISIX closes it or the runner stops.
[<Sealed>]
type internal Connection(socket: Socket, ctx: RunnerContext) =
    let input = FrameReader(ctx.Options.MaxFrameBytes)
    let answers = new FlatBufferBuilder(1024)
    let asks = new FlatBufferBuilder(256)
    let batch = ArrayBufferWriter<byte>(256)
    let call = CallRunner()
    let gate = new SemaphoreSlim(1, 1)
    let maxFrame = ctx.Options.MaxFrameBytes
    // The body of the frame being served: its view must outlive the input buffer, which ExtraInfo
    // replies move and grow. A copy of a request frame costs far less than the call around it.
    let mutable callBody = ArrayPool<byte>.Shared.Rent 4096
    let mutable cts = new CancellationTokenSource()
    // Cancels the wait for the next call when the runner stops. A cancelled receive that has
    // already taken bytes completes with them, so no call that arrived is lost.
    let idleStop = new CancellationTokenSource()

    [<VolatileField>]
    let mutable stopping = false

    let keepBody (body: ReadOnlySequence<byte>) =
        let n = int body.Length

        if callBody.Length < n then
            ArrayPool<byte>.Shared.Return callBody
            callBody <- ArrayPool<byte>.Shared.Rent n

        body.CopyTo(Span(callBody, 0, n))
        ReadOnlyMemory(callBody, 0, n)

    // A large body is not kept for the connection's whole life: memory per idle connection stays small.
    let releaseBody () =
        if callBody.Length > 65536 then
            ArrayPool<byte>.Shared.Return callBody
            callBody <- ArrayPool<byte>.Shared.Rent 4096

    let decodeReply (body: ReadOnlySequence<byte>) = Decode.extraInfoResp body.FirstSpan

    let freshDeadline () =
        if not (cts.TryReset()) then
            cts.Dispose()
            cts <- new CancellationTokenSource()

        cts.CancelAfter ctx.Options.CallTimeout
        cts.Token

    /// Sends one encoded frame; false when the peer is gone.
    member private _.Send(frame: ReadOnlyMemory<byte>) : ValueTask<bool> =
        let sent = socket.SendAsync(frame, SocketFlags.None)

        if sent.IsCompletedSuccessfully then
            ValueTask<bool>(true)
        else
            ValueTask<bool>(
                task {
                    try
                        let! _ = sent
                        return true
                    with
                    | :? SocketException
                    | :? ObjectDisposedException -> return false
                }
            )

    member private c.SendError(code: Err.Code) =
        match Encode.errResp answers code with
        | Ok frame -> c.Send frame
        | Error _ -> ValueTask<bool>(false)

    /// Answers BAD_REQUEST and ends the connection: after a frame it cannot read, the stream is lost.
    member private c.Reject(reason: string) : Task<bool> =
        task {
            Log.badFrame.Invoke(ctx.Logger, Log.escape reason, null)
            let! _ = c.SendError Err.Code.BAD_REQUEST
            return false
        }

    /// Reads the reply to an ExtraInfo request: the next frame, which must be an ExtraInfo one.
    member private _.ReadReply(ct: CancellationToken) : Task<byte[] voption> =
        task {
            let mutable reply = ValueNone
            let mutable waiting = true

            while waiting do
                match input.TryTake() with
                | Frame(FrameType.ExtraInfo, body, _) ->
                    match decodeReply body with
                    | Ok resp ->
                        reply <- resp.Result
                        waiting <- false
                    | Error e -> raise (ConnectionBroken $"undecodable ExtraInfo reply: {e.Describe()}")
                | Frame(other, _, _) -> raise (ConnectionBroken $"expected an ExtraInfo reply, got frame type {byte other}")
                | TooLarge n -> raise (ConnectionBroken $"ExtraInfo reply of {n} bytes exceeds the frame limit")
                | Incomplete ->
                    let! n = socket.ReceiveAsync(input.Free(), SocketFlags.None, ct)

                    if n = 0 then
                        raise (ConnectionBroken "APISIX closed the connection during an ExtraInfo exchange")

                    input.Received n

            return reply
        }

    /// One ExtraInfo exchange; concurrent asks of one call take turns.
    member private c.Ask(info: ExtraInfo.Info, ct: CancellationToken) : Task<byte[] voption> =
        task {
            do! gate.WaitAsync ct

            try
                match Encode.extraInfoReq asks info with
                | Error e -> return raise (InvalidOperationException(e.Describe()))
                | Ok frame ->
                    let! sent = c.Send frame

                    if not sent then
                        raise (ConnectionBroken "APISIX closed the connection before an ExtraInfo request")

                    return! c.ReadReply ct
            finally
                gate.Release() |> ignore
        }

    /// Asks for everything the chain declared, all requests written at once, replies read in order.
    member private c.Prefetch(infos: ExtraInfo.Info[], ct: CancellationToken) : Task =
        task {
            batch.Clear()

            for info in infos do
                match Encode.extraInfoReq asks info with
                | Ok frame -> batch.Write frame.Span
                | Error e -> raise (InvalidOperationException(e.Describe()))

            let! sent = c.Send batch.WrittenMemory

            if not sent then
                raise (ConnectionBroken "APISIX closed the connection before the ExtraInfo requests")

            for info in infos do
                let! value = c.ReadReply ct
                call.Prefetched(info, value)
        }

    /// Serves one call whose request and response objects are set up; false when the connection must end.
    member private c.Serve(phase: CallPhase, id: uint32, token: uint32, filters: struct (string * Filter)[], prefetch: ExtraInfo.Info[], ct: CancellationToken) : Task<bool> =
        task {
            try
                if prefetch.Length > 0 then
                    do! c.Prefetch(prefetch, ct)

                let running = call.RunChain filters
                let! decision = if running.IsCompleted then running else ValueTask<Decision>(running.AsTask().WaitAsync ct)

                match call.Encode(answers, phase, id, decision) with
                | Ok frame ->
                    if ctx.Logger.IsEnabled LogLevel.Debug then
                        Log.call.Invoke(ctx.Logger, id, token, CallRunner.Describe(phase, decision), null)

                    return! c.Send frame
                | Error e ->
                    Log.answerFailed.Invoke(ctx.Logger, id, Log.escape (e.Describe()), null)
                    return! c.SendError Err.Code.SERVICE_UNAVAILABLE
            with
            | ConnectionBroken reason ->
                Log.connectionLost.Invoke(ctx.Logger, Log.escape reason, null)
                return false
            | :? OperationCanceledException when ct.IsCancellationRequested ->
                Log.callTimedOut.Invoke(ctx.Logger, id, Log.escape (call.CurrentPlugin filters), ctx.Options.CallTimeout, null)
                let! _ = c.SendError Err.Code.SERVICE_UNAVAILABLE
                return false
            | ex ->
                Log.pluginFailed.Invoke(ctx.Logger, Log.escape (call.CurrentPlugin filters), id, Log.escaped ex)
                return! c.SendError Err.Code.SERVICE_UNAVAILABLE
        }

    member private c.Prepare(body: ReadOnlyMemory<byte>) : Task<bool> =
        match Decode.prepareConfReq body.Span with
        | Error e -> c.Reject(e.Describe())
        | Ok req ->
            let prepared = ctx.Cache.Prepare(req.Key, fun () -> Chain.build ctx.Plugins req.Conf)

            let answer =
                match prepared with
                | Ok token -> Encode.prepareConfResp answers { ConfToken = token }
                | Error problems ->
                    let key = req.Key |> ValueOption.map Log.escape |> ValueOption.defaultValue "(none)"
                    Log.confRejected.Invoke(ctx.Logger, key, Log.problems problems, null)

                    Encode.errResp answers Err.Code.SERVICE_UNAVAILABLE

            match answer with
            | Ok frame -> c.Send(frame).AsTask()
            | Error _ -> Task.FromResult false

    member private c.Lookup(token: uint32) : Chain voption =
        let mutable chain = Unchecked.defaultof<Chain>
        if ctx.Cache.TryGet(token, &chain) then ValueSome chain else ValueNone

    member private c.TokenNotFound(token: uint32) =
        Log.tokenNotFound.Invoke(ctx.Logger, token, null)
        c.SendError(Err.Code.CONF_TOKEN_NOT_FOUND).AsTask()

    /// Dispatches one frame from APISIX; false when the connection must end.
    member private c.Handle(frameType: FrameType, body: ReadOnlyMemory<byte>) : Task<bool> =
        match frameType with
        | FrameType.PrepareConf -> c.Prepare body
        | FrameType.HttpReqCall ->
            match HttpReqCallView.Read body with
            | Error e -> c.Reject(e.Describe())
            | Ok view ->
                match c.Lookup view.ConfToken with
                | ValueNone -> c.TokenNotFound view.ConfToken
                | ValueSome chain ->
                    let ct = freshDeadline ()
                    call.StartRequest(view, c, ct)
                    c.Serve(RequestPhase, view.Id, view.ConfToken, chain.RequestFilters, chain.RequestPrefetch, ct)
        | FrameType.HttpRespCall ->
            match HttpRespCallView.Read body with
            | Error e -> c.Reject(e.Describe())
            | Ok view ->
                match c.Lookup view.ConfToken with
                | ValueNone -> c.TokenNotFound view.ConfToken
                | ValueSome chain ->
                    let ct = freshDeadline ()
                    call.StartResponse(view, c, ct)
                    c.Serve(ResponsePhase, view.Id, view.ConfToken, chain.ResponseFilters, chain.ResponsePrefetch, ct)
        | other -> c.Reject $"frame type {byte other} is not a call APISIX starts"

    /// Serves the connection until APISIX closes it, the stream breaks, or the runner stops.
    member c.RunAsync() : Task =
        task {
            try
                try
                    let mutable open' = true

                    while open' do
                        match input.TryTake() with
                        | Frame(frameType, body, _) ->
                            let kept = keepBody body
                            let! keep = c.Handle(frameType, kept)
                            releaseBody ()
                            open' <- keep
                        | TooLarge n ->
                            let! _ = c.Reject $"frame body of {n} bytes exceeds the limit of {maxFrame}"
                            open' <- false
                        | Incomplete when stopping && input.Buffered = 0 && socket.Available = 0 -> open' <- false
                        | Incomplete ->
                            // Awaited here, in the connection's one state machine, so waiting costs nothing.
                            try
                                let token = if stopping then CancellationToken.None else idleStop.Token
                                let! n = socket.ReceiveAsync(input.Free(), SocketFlags.None, token)
                                input.Received n
                                open' <- n > 0
                            with :? OperationCanceledException ->
                                open' <- input.Buffered > 0 || socket.Available > 0
                with
                | :? SocketException
                | :? ObjectDisposedException -> ()
                | ex -> Log.connectionFailed.Invoke(ctx.Logger, Log.escaped ex)
            finally
                c.Dispose()
        }

    /// Stop taking new calls: the call in progress and any already received are still answered;
    /// a connection waiting with nothing received ends now.
    member _.Drain() =
        stopping <- true
        idleStop.Cancel()

    /// Ends the connection now, cancelling the call in progress.
    member c.Abort() =
        try
            cts.Cancel()
        with :? ObjectDisposedException ->
            ()

        socket.Dispose()

    member private _.Dispose() =
        try
            cts.Cancel()
        with :? ObjectDisposedException ->
            ()

        socket.Dispose()
        input.Dispose()
        answers.Dispose()
        asks.Dispose()

        if not (isNull callBody) then
            ArrayPool<byte>.Shared.Return callBody
            callBody <- null

    interface IExtraInfoSource with
        member c.Fetch(info, ct) = ValueTask<byte[] voption>(c.Ask(info, ct))
