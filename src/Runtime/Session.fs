namespace Apisix.Runner

open System
open System.Buffers
open System.Collections.Generic
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging

/// What every session shares: the prepared configurations, the plugins, settings, log, and the
/// memory budget.
type internal RunnerContext =
    { Cache: ConfCache
      Plugins: IReadOnlyDictionary<string, Plugin>
      Options: RunnerOptions
      Logger: ILogger
      Budget: MemoryBudget }

/// Whether a session can still carry calls.
[<Struct>]
type internal Link =
    | Open
    /// APISIX closed the connection or broke the protocol mid-call: no answer can go out.
    | Broken of reason: string

/// One APISIX connection's protocol, whatever moves its bytes: takes whole frames, serves one call
/// at a time (with its ExtraInfo exchanges on the same connection), sends the answers, until
/// APISIX closes the connection or the runner drains. A call whose chain completes synchronously
/// is answered in the same turn and arms nothing; a call that goes asynchronous gets a deadline,
/// which the server's coarse tick enforces (CheckDeadline). A frame or ExtraInfo reply larger
/// than 64 KiB is read only once the memory budget grants its whole size (the connection is read no
/// further meanwhile), into an array of its own that the call keeps, and the bytes go back to the
/// budget when the frame has been served.
[<Sealed>]
type internal Session(io: IConnectionIo, ctx: RunnerContext) =
    let input = FrameReader(ctx.Options.MaxFrameBytes)
    let budget = ctx.Budget
    let answers = new FrameBuilder(1024)
    let asks = new FrameBuilder(256)
    let batch = ArrayBufferWriter<byte>(256)
    let call = Call()
    let gate = new SemaphoreSlim(1, 1)
    let maxFrame = ctx.Options.MaxFrameBytes
    let timeoutTicks = int64 (ctx.Options.CallTimeout.TotalSeconds * float Stopwatch.Frequency)
    // The body of the frame being served: its view must outlive the input buffer, which ExtraInfo
    // replies move and grow. A copy of a request frame costs far less than the call around it; a
    // frame over 64 KiB is not copied: its array of its own is kept instead.
    let mutable callBody = Buffers.rent 4096
    // Bytes of the memory budget this connection holds: a large frame being received or served, the
    // large ExtraInfo replies and the grown answer of its call. Given back when the frame is served,
    // or when the session ends (after which a late claim is given back at once).
    let holding = obj ()
    let mutable held = 0L
    let mutable ended = false
    // Never armed: the server's tick cancels it when an asynchronous call passes its deadline.
    let cts = new CancellationTokenSource()
    let mutable link = Open
    // When the asynchronous call in progress must end (Stopwatch ticks); 0 when none is.
    let mutable deadline = 0L

    /// Records bytes granted or charged for this connection; false (and the bytes given back) once
    /// the session has ended: a plugin's ExtraInfo request may outlive its call's deadline.
    let hold (bytes: int64) =
        lock holding (fun () ->
            if ended then
                budget.Give bytes
                false
            else
                held <- held + bytes
                true)

    let giveBackHeld () =
        lock holding (fun () ->
            budget.Give held
            held <- 0L)

    /// Claims a large frame's whole size, waiting in line when it does not fit, then gives the frame
    /// its array; false when the claim was given up (the session or the server ends).
    let claim (kind: Claim) (cancel: CancellationToken) : ValueTask<bool> =
        let size = int64 input.Wanted

        let enlarge granted =
            if granted && hold size then
                input.Enlarge()
                true
            else
                false

        if budget.TryTake size then
            ValueTask<bool>(enlarge true)
        else
            ValueTask<bool>(
                task {
                    let! granted = budget.TakeAsync(size, kind, Volatile.Read &held, cancel)
                    return enlarge granted
                }
            )

    let keepBody (body: ReadOnlySequence<byte>) =
        if input.TakenLarge > 0 then
            body.First
        else
            let n = int body.Length

            if callBody.Length < n then
                Buffers.giveBack callBody
                callBody <- Buffers.rent n

            body.CopyTo(Span(callBody, 0, n))
            ReadOnlyMemory(callBody, 0, n)

    /// An answer that grew past what a builder keeps is counted until the frame is served.
    let countAnswer () =
        let grown = int64 answers.Capacity

        if grown > int64 Buffers.MaxPooled then
            budget.Charge grown
            hold grown |> ignore

    // A large body is not kept for the connection's whole life: memory per idle connection stays small.
    // The same for the builders once the frame is served (its answers are sent by then).
    let releaseBody () =
        if callBody.Length > 65536 then
            Buffers.giveBack callBody
            callBody <- Buffers.rent 4096

        answers.Trim()
        asks.Trim()

        if held > 0L then
            giveBackHeld ()

    let breakLink (reason: string) =
        if link = Open then link <- Broken reason

    let send (frame: Result<ReadOnlyMemory<byte>, EncodeError>) : ValueTask<bool> =
        match frame with
        | Ok bytes -> io.SendAsync bytes
        | Error _ -> ValueTask<bool>(false)

    let sendError (code: Err.Code) = send (Encode.errResp answers code)

    /// Answers BAD_REQUEST and ends the connection: after a frame it cannot read, the stream is lost.
    let reject (reason: string) : ValueTask<bool> =
        Log.badFrame.Invoke(ctx.Logger, Log.escape reason, null)
        let sent = sendError Err.Code.BAD_REQUEST

        if sent.IsCompleted then
            ValueTask<bool>(false)
        else
            ValueTask<bool>(
                task {
                    let! _ = sent
                    return false
                }
            )

    let countExchange (info: ExtraInfo.Info) =
        if Telemetry.extraInfo.Enabled then
            Telemetry.extraInfo.Add(1L, KeyValuePair("type", box (Telemetry.infoName info)))

    /// Reads the reply to an ExtraInfo request: the next frame, which must be an ExtraInfo one.
    /// Anything else breaks the link, and the reply reads as absent.
    let readReply () : Task<byte[] voption> =
        task {
            let mutable reply = ValueNone
            let mutable waiting = link = Open

            while waiting do
                match input.TryTake() with
                | Frame(FrameType.ExtraInfo, body, _) ->
                    match Decode.extraInfoResp body.FirstSpan with
                    | Ok resp -> reply <- resp.Result
                    | Error e -> breakLink $"undecodable ExtraInfo reply: {e.Describe()}"

                    // Its value is copied out: the claim stays with the call, for that copy.
                    budget.Dropped(int64 input.TakenLarge)

                    waiting <- false
                | Frame(other, _, _) ->
                    breakLink $"expected an ExtraInfo reply, got frame type {byte other}"
                    waiting <- false
                | TooLarge n ->
                    breakLink $"ExtraInfo reply of {n} bytes exceeds the frame limit"
                    waiting <- false
                | Incomplete ->
                    let! room = if input.Wanted > 0 then claim Claim.Reply cts.Token else ValueTask<bool>(true)

                    if not room then
                        breakLink "the call ended while its ExtraInfo reply waited for the memory budget"
                        waiting <- false
                    else
                        let! n = io.ReceiveAsync(input.Free())

                        if n = 0 then
                            breakLink "APISIX closed the connection during an ExtraInfo exchange"
                            waiting <- false
                        else
                            input.Received n

            return reply
        }

    /// One ExtraInfo exchange; concurrent asks of one call take turns.
    let ask (info: ExtraInfo.Info) : Task<byte[] voption> =
        task {
            do! gate.WaitAsync()

            try
                if link <> Open then
                    return ValueNone
                else
                    countExchange info
                    let! sent = send (Encode.extraInfoReq asks info)

                    if sent then
                        return! readReply ()
                    else
                        breakLink "APISIX closed the connection before an ExtraInfo request"
                        return ValueNone
            finally
                gate.Release() |> ignore
        }

    /// Asks for everything the chain declared, all requests written at once, replies read in order.
    let prefetch (infos: ExtraInfo.Info[]) : Task =
        task {
            batch.Clear()

            for info in infos do
                countExchange info

                match Encode.extraInfoReq asks info with
                | Ok frame -> batch.Write frame.Span
                | Error e -> invalidOp (e.Describe())

            let! sent = io.SendAsync batch.WrittenMemory

            if not sent then
                breakLink "APISIX closed the connection before the ExtraInfo requests"

            let mutable i = 0

            while i < infos.Length && link = Open do
                let! value = readReply ()
                call.Prefetched(infos[i], value)
                i <- i + 1
        }

    /// The prefetch, then the chain: what a call runs before its answer.
    let run (phase: ChainPhase) : ValueTask<Decision> =
        if phase.Prefetch.Length = 0 then
            phase.Run call.Request call.Response
        else
            ValueTask<Decision>(
                task {
                    do! prefetch phase.Prefetch

                    if link = Open then
                        return! phase.Run call.Request call.Response
                    else
                        return Decision.Continue
                }
            )

    let lost (reason: string) =
        Log.connectionLost.Invoke(ctx.Logger, Log.escape reason, null)

    /// Answers one call whose request and response are set up; false when the connection must end.
    let serve (phase: ChainPhase, token: uint32) : Task<bool> =
        task {
            let started = if Telemetry.duration.Enabled then Stopwatch.GetTimestamp() else 0L
            let activity = Telemetry.startCall call.Request
            let callPhase = call.Request.Phase

            try
                let running = run phase

                let! decision =
                    if running.IsCompleted then
                        running
                    else
                        Volatile.Write(&deadline, Stopwatch.GetTimestamp() + timeoutTicks)
                        ValueTask<Decision>(running.AsTask().WaitAsync cts.Token)

                Volatile.Write(&deadline, 0L)

                match link with
                | Broken reason ->
                    lost reason
                    Telemetry.endCall callPhase call.Plugin Outcome.Broken started activity
                    return false
                | Open ->
                    match call.Encode(answers, decision) with
                    | Ok frame ->
                        countAnswer ()
                        let outcome = call.Outcome decision

                        if ctx.Logger.IsEnabled LogLevel.Debug then
                            Log.call.Invoke(ctx.Logger, call.Request.Id, token, outcome.Name, null)

                        Telemetry.endCall callPhase call.Plugin outcome started activity
                        call.Finish()
                        return! io.SendAsync frame
                    | Error e ->
                        Log.answerFailed.Invoke(ctx.Logger, call.Request.Id, Log.escape (e.Describe()), null)
                        Telemetry.endCall callPhase call.Plugin Outcome.Error started activity
                        call.Finish()
                        return! sendError Err.Code.SERVICE_UNAVAILABLE
            with
            | :? OperationCanceledException when cts.IsCancellationRequested ->
                Log.callTimedOut.Invoke(ctx.Logger, call.Request.Id, Log.escape call.Plugin, ctx.Options.CallTimeout, null)
                Telemetry.endCall callPhase call.Plugin Outcome.Timeout started activity
                let! _ = sendError Err.Code.SERVICE_UNAVAILABLE
                return false
            | ex ->
                Volatile.Write(&deadline, 0L)

                match link with
                | Broken reason ->
                    lost reason
                    Telemetry.endCall callPhase call.Plugin Outcome.Broken started activity
                    return false
                | Open ->
                    Log.pluginFailed.Invoke(ctx.Logger, Log.escape call.Plugin, call.Request.Id, Log.escaped ex)
                    Telemetry.endCall callPhase call.Plugin Outcome.Error started activity
                    call.Finish()
                    return! sendError Err.Code.SERVICE_UNAVAILABLE
        }

    let prepare (body: ReadOnlyMemory<byte>) : ValueTask<bool> =
        match Decode.prepareConfReq body.Span with
        | Error e -> reject (e.Describe())
        | Ok req ->
            match ctx.Cache.Prepare(req.Key, fun () -> Chain.build ctx.Plugins req.Conf) with
            | Ok token ->
                Telemetry.prepared.Add(1L, KeyValuePair("result", box "accepted"))
                send (Encode.prepareConfResp answers { ConfToken = token })
            | Error problems ->
                Telemetry.prepared.Add(1L, KeyValuePair("result", box "rejected"))
                let key = if isNull req.Key then "(none)" else Log.escape req.Key
                Log.confRejected.Invoke(ctx.Logger, key, Log.problems problems, null)
                sendError Err.Code.SERVICE_UNAVAILABLE

    let lookup (token: uint32) : Chain voption =
        let mutable chain = Unchecked.defaultof<Chain>
        if ctx.Cache.TryGet(token, &chain) then ValueSome chain else ValueNone

    let tokenNotFound (token: uint32) =
        Log.tokenNotFound.Invoke(ctx.Logger, token, null)
        sendError Err.Code.CONF_TOKEN_NOT_FOUND

    /// Dispatches one frame from APISIX; false when the connection must end.
    member private s.Handle(frameType: FrameType, body: ReadOnlyMemory<byte>) : ValueTask<bool> =
        match frameType with
        | FrameType.PrepareConf -> prepare body
        | FrameType.HttpReqCall ->
            match HttpReqCallView.Read body with
            | Error e -> reject (e.Describe())
            | Ok view ->
                match lookup view.ConfToken with
                | ValueNone -> tokenNotFound view.ConfToken
                | ValueSome chain ->
                    call.StartRequest(view, s, cts.Token)
                    s.Answer(chain.Request, view.ConfToken)
        | FrameType.HttpRespCall ->
            match HttpRespCallView.Read body with
            | Error e -> reject (e.Describe())
            | Ok view ->
                match lookup view.ConfToken with
                | ValueNone -> tokenNotFound view.ConfToken
                | ValueSome chain ->
                    call.StartResponse(view, s, cts.Token)
                    s.Answer(chain.Response, view.ConfToken)
        | other -> reject $"frame type {byte other} is not a call APISIX starts"

    member private _.Answer(phase: ChainPhase, token: uint32) = ValueTask<bool>(serve (phase, token))

    /// Serves the connection until APISIX closes it, the stream breaks, or the runner drains.
    member s.RunAsync() : Task =
        task {
            try
                try
                    let mutable open' = true

                    while open' do
                        match input.TryTake() with
                        | Frame(frameType, body, _) ->
                            let kept = keepBody body
                            let! keep = s.Handle(frameType, kept)
                            releaseBody ()
                            open' <- keep
                        | TooLarge n ->
                            let! _ = reject $"frame body of {n} bytes exceeds the limit of {maxFrame}"
                            open' <- false
                        | Incomplete ->
                            // A large frame is read on only once the budget grants its whole size.
                            let! room = if input.Wanted > 0 then claim Claim.Frame cts.Token else ValueTask<bool>(true)

                            if room then
                                // Awaited here, in the session's one state machine, so waiting costs nothing.
                                let! n = io.ReceiveAsync(input.Free())
                                input.Received n
                                open' <- n > 0
                            else
                                open' <- false
                with ex ->
                    Log.connectionFailed.Invoke(ctx.Logger, Log.escaped ex)
            finally
                s.Dispose()
        }

    /// Cancels the asynchronous call in progress when it is past its deadline (Stopwatch ticks).
    member _.CheckDeadline(now: int64) =
        let d = Volatile.Read &deadline

        if d <> 0L && now > d then
            try
                cts.Cancel()
            with :? ObjectDisposedException ->
                ()

    member private _.Dispose() =
        try
            cts.Cancel()
        with :? ObjectDisposedException ->
            ()

        io.Close()
        input.Dispose()
        answers.Dispose()
        asks.Dispose()

        lock holding (fun () ->
            ended <- true
            budget.Give held
            held <- 0L)

        if not (isNull callBody) then
            Buffers.giveBack callBody
            callBody <- null

    interface IExtraInfoSource with
        member _.Fetch info =
            if link <> Open then
                ValueTask<byte[] voption>(ValueNone)
            else
                ValueTask<byte[] voption>(ask info)
