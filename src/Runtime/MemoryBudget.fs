namespace Apisix.Runner

open System
open System.Collections.Generic
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging

/// What asks the memory budget for bytes.
type internal Claim =
    /// A frame from APISIX, read between calls: its connection holds nothing else.
    | Frame = 0
    /// An ExtraInfo reply, for a call that may hold bytes already (its frame, earlier replies).
    | Reply = 1

/// A claim waiting in line; its task completes with true once granted, false when given up.
[<Sealed; AllowNullLiteral>]
type internal BudgetWaiter(bytes: int64, held: int64, claim: Claim) =
    inherit TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously)
    member _.Bytes = bytes
    /// What the claimant's call holds already: bytes that cannot be freed while it waits.
    member _.Held = held
    member _.Claim = claim
    /// Its place in line; null once granted or given up.
    member val Node: LinkedListNode<BudgetWaiter> = null with get, set
    member val Registration = Unchecked.defaultof<CancellationTokenRegistration> with get, set

/// The most bytes the runner holds at once, across all connections, beyond each connection's
/// standing buffers: frames over 64 KiB (from their header until their call is answered),
/// ExtraInfo replies over 64 KiB (until their call is answered) and answers that grew past 64 KiB.
///
/// A frame or reply claims its whole size when its header is read; a claim that does not fit waits
/// in line, replies before frames and each in order of arrival, and its connection is read no
/// further meanwhile: the kernel's socket buffer, then APISIX, hold the rest. Frames up to 64 KiB
/// never claim, so small calls go on whatever waits. Claiming whole frames up front means that no
/// set of frames received halfway can hold memory that none of them can complete with. A call
/// that holds bytes and waits for a reply could still wait on others doing the same, so a claim
/// at the head of the line is granted past the limit when every byte held belongs to calls that
/// wait in line themselves (nothing else could free memory). The limit is passed only then, by one
/// claim at a time: by one claim at most while each call asks for at most one large reply (its
/// body), more only for calls that ask for several. Answers are counted but never wait: they are
/// built in one go, for a call that holds its bytes already.
///
/// Large arrays are not pooled (see `Buffers`): let go, they are garbage until the next full
/// collection. After a burst, once nothing has been claimed or given back for a second,
/// `TrimIfIdle` runs one aggressive collection, which compacts the large object heap and has the
/// GC give its free memory back to the system.
[<Sealed>]
type internal MemoryBudget(limit: int64, logger: ILogger) =
    let gate = obj ()
    let replies = LinkedList<BudgetWaiter>()
    let frames = LinkedList<BudgetWaiter>()
    let mutable used = 0L
    // Bytes held by the calls whose replies wait in line.
    let mutable stalled = 0L
    let mutable closed = false
    // Bytes given back since the last trim, and when the budget last moved (Stopwatch ticks).
    let mutable released = 0L
    let mutable lastMove = 0L
    let mutable lastTrim = 0L
    let mutable lastWarning = 0L
    // Bytes of large arrays let go since the last collection this budget made.
    let mutable garbage = 0L
    let collectAfter = Math.Clamp(limit / 16L, 8L <<< 20, 16L <<< 20)
    let second = Stopwatch.Frequency

    let fits (bytes: int64) = used + bytes <= limit || used = stalled

    /// Grants the heads of the line while they fit, replies first. Under the lock.
    let rec pump () =
        let line = if replies.Count > 0 then replies else frames

        if line.Count > 0 then
            let w = line.First.Value

            if fits w.Bytes then
                line.RemoveFirst()
                w.Node <- null

                if w.Claim = Claim.Reply then
                    stalled <- stalled - w.Held

                used <- used + w.Bytes
                lastMove <- Stopwatch.GetTimestamp()
                w.Registration.Unregister() |> ignore
                w.TrySetResult true |> ignore
                pump ()

    let giveUp (w: BudgetWaiter) =
        lock gate (fun () ->
            if not (isNull w.Node) then
                w.Node.List.Remove w.Node
                w.Node <- null

                if w.Claim = Claim.Reply then
                    stalled <- stalled - w.Held

                pump ())

        w.TrySetResult false |> ignore

    let onCancel = Action<obj>(fun o -> giveUp (o :?> BudgetWaiter))

    /// Large arrays let go are garbage until a full collection, and the GC, left to itself, lets
    /// its large object heap grow to several times what is live before it collects: a burst would
    /// take the process far past the budget. So past a sixteenth of the budget of garbage (8 to
    /// 16 MiB: about one collection per large frame served, which costs far less than receiving
    /// it), one blocking full collection, without compaction: the same sizes fit the holes.
    let dropped (bytes: int64) =
        if Interlocked.Add(&garbage, bytes) >= collectAfter && Interlocked.Exchange(&garbage, 0L) >= collectAfter then
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, true, false)

    /// Bytes given back since the last trim past which an idle budget trims: a few large frames' worth.
    static member TrimAfterBytes = 4L <<< 20

    /// Bytes held now.
    member _.InUse = Volatile.Read &used

    /// Claims waiting in line now.
    member _.Waiting = lock gate (fun () -> replies.Count + frames.Count)

    /// Takes `bytes` at once when nothing waits in line and they fit; false otherwise (then `TakeAsync`).
    member _.TryTake(bytes: int64) : bool =
        lock gate (fun () ->
            if not closed && replies.Count = 0 && frames.Count = 0 && (used + bytes <= limit || used = 0L) then
                used <- used + bytes
                lastMove <- Stopwatch.GetTimestamp()
                true
            else
                false)

    /// Takes `bytes`, in line until they fit: true once taken (give them back with `Give`), false
    /// when `cancel` fires or the budget closes first. `held` is what the claimant's call holds already.
    member _.TakeAsync(bytes: int64, claim: Claim, held: int64, cancel: CancellationToken) : Task<bool> =
        let w = BudgetWaiter(bytes, held, claim)

        let enqueued =
            lock gate (fun () ->
                if closed then
                    false
                else
                    let line = if claim = Claim.Reply then replies else frames
                    w.Node <- line.AddLast w

                    if claim = Claim.Reply then
                        stalled <- stalled + held

                    // Under the lock, which is reentrant: a token cancelled already gives up at once.
                    if cancel.CanBeCanceled then
                        w.Registration <- cancel.UnsafeRegister(onCancel, w)

                    pump ()
                    true)

        if not enqueued then
            w.TrySetResult false |> ignore
        elif not w.Task.IsCompleted then
            if Telemetry.bufferWaits.Enabled then
                Telemetry.bufferWaits.Add(1L, KeyValuePair("claim", box (if claim = Claim.Reply then "reply" else "frame")))

            let now = Stopwatch.GetTimestamp()
            let last = Volatile.Read &lastWarning

            if (last = 0L || now - last >= 60L * second) && Interlocked.CompareExchange(&lastWarning, now, last) = last then
                Log.budgetFull.Invoke(logger, Volatile.Read &used, limit, bytes, null)

        w.Task

    /// Counts bytes that are held already and cannot wait (an answer built); give them back with `Give`.
    member _.Charge(bytes: int64) =
        if bytes > 0L then
            lock gate (fun () ->
                used <- used + bytes
                lastMove <- Stopwatch.GetTimestamp())

    /// Gives back bytes taken or charged, whose arrays are let go; the line moves on.
    member _.Give(bytes: int64) =
        if bytes > 0L then
            lock gate (fun () ->
                used <- used - bytes
                released <- released + bytes
                lastMove <- Stopwatch.GetTimestamp()
                pump ())

            dropped bytes

    /// Records a large array let go while its bytes stay claimed (an ExtraInfo reply's frame, once
    /// its value is copied out for the plugin).
    member _.Dropped(bytes: int64) =
        if bytes > 0L then
            dropped bytes

    /// Stops granting: every claim in line, and every later one, is given up (the server stops).
    member _.Close() =
        let waiting =
            lock gate (fun () ->
                closed <- true
                let all = [ yield! replies; yield! frames ]
                replies.Clear()
                frames.Clear()
                stalled <- 0L

                for w in all do
                    w.Node <- null
                    w.Registration.Unregister() |> ignore

                all)

        for w in waiting do
            w.TrySetResult false |> ignore

    /// After a burst of large frames (TrimAfterBytes given back since the last trim), once nothing
    /// has moved for a second and at most every 5 s: one aggressive collection, which compacts the
    /// large object heap and gives the GC's free memory back to the system. Whether it ran.
    member _.TrimIfIdle(now: int64) : bool =
        // Every tick of the server comes here: no closure, nothing allocated.
        let mutable due = false
        Monitor.Enter gate

        try
            due <-
                not closed
                && released >= MemoryBudget.TrimAfterBytes
                && replies.Count = 0
                && frames.Count = 0
                && now - lastMove >= second
                && (lastTrim = 0L || now - lastTrim >= 5L * second)

            if due then
                released <- 0L
                lastTrim <- now
        finally
            Monitor.Exit gate

        if due then
            let before = GC.GetGCMemoryInfo().TotalCommittedBytes
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, true, true)

            if logger.IsEnabled LogLevel.Debug then
                Log.memoryReturned.Invoke(logger, before, GC.GetGCMemoryInfo().TotalCommittedBytes, null)

        due
