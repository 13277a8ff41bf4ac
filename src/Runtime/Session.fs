namespace Apisix.Runner

open System
open System.Buffers
open System.Collections.Generic
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open System.Threading.Tasks.Sources
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

/// What reading the next ExtraInfo reply gave: the reply, why the link broke, or nothing yet (a
/// receive or a claim on the budget is pending: `ReplyReader.OnReady` says when to read again).
[<Struct; NoEquality; NoComparison>]
type internal ReplyRead =
    | Got of value: byte[] voption
    | Broke of reason: string
    | Later

/// Reads a session's ExtraInfo replies, for its prefetch and for the plugins' own asks alike: the
/// next frame must be a reply; the connection is received from as needed, and a reply over 64 KiB
/// is read on only once the memory budget grants its whole size (its claim then stays with the
/// call, for the copy of its value).
[<Sealed>]
type internal ReplyReader(io: IConnectionIo, input: FrameReader, budget: MemoryBudget, claim: unit -> ValueTask<bool>) =
    [<Literal>]
    let Idle = 0

    [<Literal>]
    let OnReceive = 1

    [<Literal>]
    let OnClaim = 2

    let mutable pending = Idle
    let mutable receiving = ValueTask<int>()
    let mutable claiming = ValueTask<bool>()

    static let closed = "APISIX closed the connection during an ExtraInfo exchange"
    static let refused = "the call ended while its ExtraInfo reply waited for the memory budget"

    /// Counts an ExtraInfo request going out, by type.
    static member Asked(tag: byte) =
        if Telemetry.extraInfo.Enabled then
            Telemetry.extraInfo.Add(1L, KeyValuePair("type", box (Telemetry.infoName (ExtraInfo.ofWire tag null))))

    /// The next reply, or Later.
    member _.Next() : ReplyRead =
        let mutable result = Later
        let mutable reading = true

        match pending with
        | OnReceive ->
            pending <- Idle
            let n = receiving.GetAwaiter().GetResult()

            if n = 0 then
                result <- Broke closed
                reading <- false
            else
                input.Received n
        | OnClaim ->
            pending <- Idle

            if not (claiming.GetAwaiter().GetResult()) then
                result <- Broke refused
                reading <- false
        | _ -> ()

        while reading do
            match input.TryTake() with
            | Frame(FrameType.ExtraInfo, body, _) ->
                reading <- false

                result <-
                    match Decode.extraInfoResult body.FirstSpan with
                    | Ok value -> Got value
                    | Error e -> Broke $"undecodable ExtraInfo reply: {e.Describe()}"

                budget.Dropped(int64 input.TakenLarge)
            | Frame(other, _, _) ->
                reading <- false
                result <- Broke $"expected an ExtraInfo reply, got frame type {byte other}"
            | TooLarge n ->
                reading <- false
                result <- Broke $"ExtraInfo reply of {n} bytes exceeds the frame limit"
            | Incomplete when input.Wanted > 0 ->
                let room = claim ()

                if not room.IsCompleted then
                    reading <- false
                    claiming <- room
                    pending <- OnClaim
                elif not (room.GetAwaiter().GetResult()) then
                    reading <- false
                    result <- Broke refused
            | Incomplete ->
                let r = io.ReceiveAsync(input.Free())

                if not r.IsCompleted then
                    reading <- false
                    receiving <- r
                    pending <- OnReceive
                else
                    let n = r.GetAwaiter().GetResult()

                    if n = 0 then
                        reading <- false
                        result <- Broke closed
                    else
                        input.Received n

        result

    /// After Later: runs `resume` once the reader can go on; `resume` calls Next again.
    member _.OnReady(resume: Action) =
        if pending = OnReceive then
            receiving.GetAwaiter().UnsafeOnCompleted resume
        else
            claiming.GetAwaiter().UnsafeOnCompleted resume

/// The ExtraInfo exchanges a plugin starts while its chain runs (`Var`, `Body` not prefetched):
/// the request written, the reply read, the plugin's await completed, through one reusable source,
/// so that an exchange allocates nothing. Asks that overlap (reads awaited together) take turns,
/// the later ones through tasks. A closed or broken link answers none, and the session, knowing
/// the link broke, sends nothing more.
[<Sealed>]
type internal Exchanges(io: IConnectionIo, replies: ReplyReader, asks: FrameBuilder, isOpen: unit -> bool, breakLink: string -> unit) as this =
    let completion = Completion<byte[] voption>()
    let waiting = Queue<struct (byte * string * TaskCompletionSource<byte[] voption>)>()
    let mutable busy = false
    // Where the exchange in progress answers: null for the reusable source.
    let mutable target: TaskCompletionSource<byte[] voption> = null
    let mutable sending = ValueTask<bool>()
    let mutable onSent: Action = null
    let mutable onReady: Action = null

    do
        onSent <- Action(fun () -> this.Sent(sending.GetAwaiter().GetResult()))
        onReady <- Action(fun () -> this.Read())

    member private x.Start(tag: byte, name: string) =
        ReplyReader.Asked tag

        match Write.extraInfoReq (asks, tag, name) with
        | Error e -> x.Complete(ValueNone, e.Describe())
        | Ok frame ->
            let sent = io.SendAsync frame

            if sent.IsCompleted then
                x.Sent(sent.GetAwaiter().GetResult())
            else
                sending <- sent
                sent.GetAwaiter().UnsafeOnCompleted onSent

    member private x.Sent(ok: bool) =
        if ok then
            x.Read()
        else
            x.Complete(ValueNone, "APISIX closed the connection before an ExtraInfo request")

    member private x.Read() =
        match replies.Next() with
        | Got value -> x.Complete(value, null)
        | Broke reason -> x.Complete(ValueNone, reason)
        | Later -> replies.OnReady onReady

    /// Ends the exchange in progress (`broken`: why the link broke, or null) and starts the next waiting one.
    member private x.Complete(value: byte[] voption, broken: string) =
        if not (isNull broken) then breakLink broken
        let answer = if isNull broken then value else ValueNone
        let finished = target

        if waiting.Count > 0 && isOpen () then
            let struct (tag, name, next) = waiting.Dequeue()
            target <- next
            x.Start(tag, name)
        else
            for struct (_, _, pending) in waiting do
                pending.SetResult ValueNone

            waiting.Clear()
            target <- null
            busy <- false

        if isNull finished then completion.SetResult answer else finished.SetResult answer

    /// Asks APISIX for `tag` (a variable named `name`); none when it is absent or the link broke.
    member x.Ask(tag: byte, name: string) : ValueTask<byte[] voption> =
        if not (isOpen ()) then
            ValueTask<byte[] voption>(ValueNone)
        elif busy then
            let later = TaskCompletionSource<byte[] voption>(TaskCreationOptions.RunContinuationsAsynchronously)
            waiting.Enqueue(struct (tag, name, later))
            ValueTask<byte[] voption>(later.Task)
        else
            busy <- true
            completion.Reset()
            x.Start(tag, name)
            completion.Pending

/// One APISIX connection's protocol, whatever moves its bytes: takes whole frames, serves one call
/// at a time (with its ExtraInfo exchanges on the same connection), sends the answers, until
/// APISIX closes the connection or the runner drains. A frame or ExtraInfo reply larger than 64 KiB
/// is read only once the memory budget grants its whole size (the connection is read no further
/// meanwhile), into an array of its own that the call keeps; the bytes go back to the budget when
/// the frame has been served.
/// A call whose chain completes synchronously is answered in the same turn. A call that has to wait
/// (for APISIX's ExtraInfo replies, or for a plugin's own work) continues from the completions of
/// what it waits for, through one reusable source that the session's loop awaits, so that waiting
/// allocates nothing. Every call has a deadline, which the server's coarse tick enforces
/// (CheckDeadline) while the call waits or its chain runs: past it the call is answered
/// SERVICE_UNAVAILABLE and the connection closes, even when a plugin never returns its thread.
[<Sealed>]
type internal Session(io: IConnectionIo, ctx: RunnerContext) as this =
    [<Literal>]
    let Busy = 0

    [<Literal>]
    let Waiting = 1

    [<Literal>]
    let Running = 2

    [<Literal>]
    let Expired = 3

    let input = FrameReader(ctx.Options.MaxFrameBytes)
    let answers = new FrameBuilder(1024)
    let asks = new FrameBuilder(256)
    let batch = ArrayBufferWriter<byte>(256)
    let call = Call()
    let maxFrame = ctx.Options.MaxFrameBytes
    let timeoutTicks = int64 (ctx.Options.CallTimeout.TotalSeconds * float Stopwatch.Frequency)
    let budget = ctx.Budget
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
    // Never armed: cancelled when the call in progress passes its deadline.
    let cts = new CancellationTokenSource()
    let mutable link = Open

    // ---- the call in progress ----
    let mutable chain = Unchecked.defaultof<ChainPhase>
    let mutable token = 0u
    let mutable started = 0L
    let mutable activity: Activity = null
    let mutable callPhase = CallPhase.Request
    // Whether the call went asynchronous: then `answered` completes it, else `result` holds its answer.
    let mutable async' = false
    // From the call's frame to the outcome of its answer.
    let mutable serving = false
    let answered = Completion<bool>()
    let mutable result = ValueTask<bool>()
    // When the call in progress must end (Stopwatch ticks); 0 when none is.
    let mutable deadline = 0L
    // Where the call stands (Busy, Waiting, Running, Expired): the deadline ends it only from
    // Waiting or Running, and whoever moves it from there goes on with the call.
    let mutable stage = Busy
    let mutable running = ValueTask<Decision>()
    let mutable sending = ValueTask<bool>()
    let mutable prefetched = 0
    let mutable onChainDone: Action = null
    let mutable onBatchSent: Action = null
    let mutable onRepliesReady: Action = null
    let mutable onAnswerSent: Action = null

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
    /// its array; false when the claim was given up (the session or the server ends). Rare: only
    /// frames over 64 KiB claim, and only a claim that waits makes a task.
    let claim (kind: Claim) : ValueTask<bool> =
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
                    let! granted = budget.TakeAsync(size, kind, Volatile.Read &held, cts.Token)
                    return enlarge granted
                }
            )

    let replies = ReplyReader(io, input, budget, fun () -> claim Claim.Reply)

    let breakLink (reason: string) =
        if link = Open then link <- Broken reason

    let exchanges = Exchanges(io, replies, asks, (fun () -> link = Open), breakLink)

    do
        onChainDone <- Action(fun () -> this.ChainDone())
        onBatchSent <-
            Action(fun () ->
                let ok = sending.GetAwaiter().GetResult()
                if this.Resumes Waiting then this.BatchSent ok)
        onRepliesReady <- Action(fun () -> if this.Resumes Waiting then this.ReadReplies())
        onAnswerSent <- Action(fun () -> answered.SetResult(sending.GetAwaiter().GetResult()))

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

    /// The call waits from now on for APISIX or its chain: the deadline may end it first, and it
    /// completes through `answered`.
    member private _.Waits() =
        async' <- true
        Volatile.Write(&stage, Waiting)

    /// Moves a call that waited or ran back to Busy; false when its deadline ended it meanwhile.
    member private _.Resumes(from: int) =
        Interlocked.CompareExchange(&stage, Busy, from) = from

    /// Ends the call with the outcome of sending its last frame.
    member private _.Finish(sent: ValueTask<bool>) =
        Volatile.Write(&deadline, 0L)
        Volatile.Write(&serving, false)

        if not async' then
            result <- sent
        elif sent.IsCompleted then
            answered.SetResult(sent.GetAwaiter().GetResult())
        else
            sending <- sent
            sent.GetAwaiter().UnsafeOnCompleted onAnswerSent

    /// The link broke during the call: nothing goes out, the connection ends.
    member private s.Lost() =
        match link with
        | Broken reason -> Log.connectionLost.Invoke(ctx.Logger, Log.escape reason, null)
        | Open -> ()

        Telemetry.endCall callPhase call.Plugin Outcome.Broken started activity
        s.Finish(ValueTask<bool>(false))

    /// The chain decided (or failed): the answer goes out.
    member private s.Decided(decided: ValueTask<Decision>) =
        let decision =
            try
                Ok(decided.GetAwaiter().GetResult())
            with ex ->
                Error ex

        match link, decision with
        | Broken _, _ -> s.Lost()
        | Open, Error ex ->
            Log.pluginFailed.Invoke(ctx.Logger, Log.escape call.Plugin, call.Request.Id, Log.escaped ex)
            Telemetry.endCall callPhase call.Plugin Outcome.Error started activity
            call.Finish()
            s.Finish(sendError Err.Code.SERVICE_UNAVAILABLE)
        | Open, Ok decision ->
            let outcome = call.Outcome decision

            match call.Encode(answers, outcome) with
            | Ok frame ->
                countAnswer ()

                if ctx.Logger.IsEnabled LogLevel.Debug then
                    Log.call.Invoke(ctx.Logger, call.Request.Id, token, outcome.Name, null)

                Telemetry.endCall callPhase call.Plugin outcome started activity
                call.Finish()
                s.Finish(io.SendAsync frame)
            | Error e ->
                Log.answerFailed.Invoke(ctx.Logger, call.Request.Id, Log.escape (e.Describe()), null)
                Telemetry.endCall callPhase call.Plugin Outcome.Error started activity
                call.Finish()
                s.Finish(sendError Err.Code.SERVICE_UNAVAILABLE)

    member private s.RunChain() =
        Volatile.Write(&stage, Running)

        let decided =
            try
                chain.Run call.Request call.Response
            with ex ->
                ValueTask<Decision>(Task.FromException<Decision> ex)

        if not (s.Resumes Running) then
            // The deadline answered while the chain held this thread: the call completes through
            // `answered` once that answer is sent.
            async' <- true
            Session.Discard decided
        elif decided.IsCompleted then
            s.Decided decided
        else
            running <- decided
            s.Waits()
            decided.GetAwaiter().UnsafeOnCompleted onChainDone

    /// Takes the outcome of a chain whose call expired: the answer went out already.
    static member private Discard(decided: ValueTask<Decision>) =
        if decided.IsCompleted then
            try
                decided.GetAwaiter().GetResult() |> ignore
            with _ ->
                ()

    member private s.ChainDone() =
        if s.Resumes Waiting then s.Decided running else Session.Discard running

    /// Writes every request the chain declared at once; the replies come back in order.
    member private s.StartPrefetch() =
        batch.Clear()

        let mutable written = true
        let mutable i = 0

        // A loop, not Array.forall: a closure over the session would be allocated per call.
        while written && i < chain.Prefetch.Length do
            let struct (tag, name) = ExtraInfo.toWire chain.Prefetch[i]
            ReplyReader.Asked tag

            match Write.extraInfoReq (asks, tag, name) with
            | Ok frame -> batch.Write frame.Span
            | Error _ -> written <- false

            i <- i + 1

        if not written then
            breakLink "an ExtraInfo request could not be encoded"
            s.Lost()
        else
            prefetched <- 0
            let sent = io.SendAsync batch.WrittenMemory

            if sent.IsCompleted then
                s.BatchSent(sent.GetAwaiter().GetResult())
            else
                s.Waits()
                sending <- sent
                sent.GetAwaiter().UnsafeOnCompleted onBatchSent

    member private s.BatchSent(ok: bool) =
        if ok then
            s.ReadReplies()
        else
            breakLink "APISIX closed the connection before the ExtraInfo requests"
            s.Lost()

    /// Takes the prefetch's replies as they come, then runs the chain.
    member private s.ReadReplies() =
        let mutable reading = true

        while reading do
            if prefetched = chain.Prefetch.Length then
                reading <- false
                s.RunChain()
            else
                match replies.Next() with
                | Got value ->
                    call.Prefetched(chain.Prefetch[prefetched], value)
                    prefetched <- prefetched + 1
                | Broke reason ->
                    reading <- false
                    breakLink reason
                    s.Lost()
                | Later ->
                    reading <- false
                    s.Waits()
                    replies.OnReady onRepliesReady

    /// Answers a call whose request and response are set up; false when the connection must end.
    member private s.Serve(phase: ChainPhase, callToken: uint32) : ValueTask<bool> =
        let now = Stopwatch.GetTimestamp()
        chain <- phase
        token <- callToken
        started <- if Telemetry.duration.Enabled then now else 0L
        activity <- Telemetry.startCall call.Request
        callPhase <- call.Request.Phase
        async' <- false
        answered.Reset()
        Volatile.Write(&serving, true)
        Volatile.Write(&deadline, now + timeoutTicks)

        if phase.Prefetch.Length = 0 then s.RunChain() else s.StartPrefetch()

        if async' then answered.Pending else result

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
                    s.Serve(chain.Request, view.ConfToken)
        | FrameType.HttpRespCall ->
            match HttpRespCallView.Read body with
            | Error e -> reject (e.Describe())
            | Ok view ->
                match lookup view.ConfToken with
                | ValueNone -> tokenNotFound view.ConfToken
                | ValueSome chain ->
                    call.StartResponse(view, s, cts.Token)
                    s.Serve(chain.Response, view.ConfToken)
        | other -> reject $"frame type {byte other} is not a call APISIX starts"

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
                            let! room = if input.Wanted > 0 then claim Claim.Frame else ValueTask<bool>(true)

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

    /// The call in progress, for a log line written from another thread: its id and the plugin
    /// running (a racy read of two fields, good enough to name a culprit).
    member _.Describe() =
        if Volatile.Read &serving then $"call {call.Request.Id} in plugin {call.Plugin}" else ""

    /// Ends the call when it is past its deadline (Stopwatch ticks) while it waits or its chain runs:
    /// the plugins see their cancellation token cancelled, APISIX gets SERVICE_UNAVAILABLE, and the
    /// connection closes. A plugin that holds its thread keeps it; the runner goes on without it.
    member _.CheckDeadline(now: int64) =
        let d = Volatile.Read &deadline
        let at = Volatile.Read &stage

        if d <> 0L && now > d && (at = Waiting || at = Running) && Interlocked.CompareExchange(&stage, Expired, at) = at then
            Volatile.Write(&deadline, 0L)

            try
                cts.Cancel()
            with :? ObjectDisposedException ->
                ()

            Log.callTimedOut.Invoke(ctx.Logger, call.Request.Id, Log.escape call.Plugin, ctx.Options.CallTimeout, null)
            Telemetry.endCall callPhase call.Plugin Outcome.Timeout started activity
            let sent = sendError Err.Code.SERVICE_UNAVAILABLE

            // The connection closes either way; closing it ends what the call still waits for.
            if sent.IsCompleted then
                io.Close()
                answered.SetResult false
            else
                sending <- sent

                sent.GetAwaiter().UnsafeOnCompleted(fun () ->
                    io.Close()
                    answered.SetResult false)

    member private _.Dispose() =
        try
            cts.Cancel()
        with :? ObjectDisposedException ->
            ()

        io.Close()
        // A call that expired may still run in a plugin that reads its request (views into the
        // input and the kept body) or asks for ExtraInfo (the builder): those buffers are left to
        // the collector, not given back to the pool that other connections rent from.
        let abandoned = Volatile.Read &stage = Expired

        if not abandoned then
            input.Dispose()
            answers.Dispose()
            asks.Dispose()

        lock holding (fun () ->
            ended <- true
            budget.Give held
            held <- 0L)

        if not abandoned && not (isNull callBody) then
            Buffers.giveBack callBody
            callBody <- null

    interface IExtraInfoSource with
        member _.Fetch(tag, name) = exchanges.Ask(tag, name)
