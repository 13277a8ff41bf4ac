namespace Apisix.Runner.Linux

#nowarn "9" // the epoll_wait buffer is native memory

open System
open System.Collections.Concurrent
open System.Runtime.InteropServices
open System.Threading
open Microsoft.FSharp.NativeInterop

/// Something registered in an epoll instance: a connection or the listener. Its key is the
/// epoll data of its registration (see Registry).
[<AllowNullLiteral>]
type internal IEventTarget =
    /// The registry key: never changes, never 0.
    abstract Key: uint64
    /// Readiness reported by epoll_wait, handled on the thread that runs the loop.
    abstract OnEvents: events: uint32 -> unit

/// The event targets of one transport by key. A key is a slot index in its low 32 bits and a
/// generation in its high 32 bits, so that an event fetched for a target that has since gone (its
/// slot perhaps reused) finds nothing instead of the wrong target. Adding and removing take a lock
/// (once per connection); lookups on the loops take none.
[<Sealed>]
type internal Registry() =
    let gate = obj ()
    let mutable slots: IEventTarget[] = Array.zeroCreate 256
    let free = Collections.Generic.Stack<int>()
    let mutable used = 0
    let mutable generation = 0u
    let mutable count = 0

    /// Reserves a key; `create` makes the target with it, and the target is published at once.
    member _.Add(create: uint64 -> IEventTarget) : IEventTarget =
        lock gate (fun () ->
            let slot =
                if free.Count > 0 then
                    free.Pop()
                else
                    if used = slots.Length then
                        let bigger = Array.zeroCreate (2 * slots.Length)
                        Array.blit slots 0 bigger 0 used
                        Volatile.Write(&slots, bigger)

                    used <- used + 1
                    used - 1

            generation <- if generation = UInt32.MaxValue then 1u else generation + 1u
            let target = create ((uint64 generation <<< 32) ||| uint64 slot)
            Volatile.Write(&slots[slot], target)
            count <- count + 1
            target)

    /// Removes the target with this key, if it is still registered.
    member _.Remove(key: uint64) =
        lock gate (fun () ->
            let slot = int (key &&& 0xFFFFFFFFUL)
            let t = slots[slot]

            if not (isNull t) && t.Key = key then
                Volatile.Write(&slots[slot], null)
                free.Push slot
                count <- count - 1)

    /// The target with this key, or null.
    member _.Find(key: uint64) : IEventTarget =
        let all = Volatile.Read &slots
        let slot = int (key &&& 0xFFFFFFFFUL)

        if slot < all.Length then
            let t = Volatile.Read &all[slot]
            if not (isNull t) && t.Key = key then t else null
        else
            null

    /// Targets registered now.
    member _.Count = Volatile.Read &count

    /// A copy of every target registered now.
    member _.Snapshot() : IEventTarget[] =
        lock gate (fun () -> slots |> Array.take used |> Array.filter (fun t -> not (isNull t)))

/// How loops reach the watchdog when it sleeps: after a second with every loop idle it waits for
/// the first loop that wakes up instead of sampling every half threshold.
[<Sealed; AllowNullLiteral>]
type internal WatchdogBell() =
    [<DefaultValue(false)>]
    val mutable Sleeping: int

    member val Bell = new SemaphoreSlim(0)

    /// Called by a loop that woke up: rings when the watchdog sleeps (a read otherwise).
    member b.Ring() =
        if Volatile.Read &b.Sleeping = 1 && Interlocked.Exchange(&b.Sleeping, 0) = 1 then
            b.Bell.Release() |> ignore

/// Threads parked in advance for the watchdog: taking a held loop over must not depend on creating
/// a thread at that moment (it can fail, for instance at the file-descriptor limit, and the loop
/// would then have no thread at all). A thread that was held and is released again parks here
/// when no other thread does, and ends otherwise.
[<Sealed>]
type internal SpareThreads(onError: exn -> unit) =
    let work = ConcurrentQueue<unit -> unit>()
    let signal = new SemaphoreSlim(0)
    let mutable parked = 0
    let mutable stopping = 0

    member private s.Park() =
        let mutable go = true

        while go do
            signal.Wait()
            let mutable w = Unchecked.defaultof<unit -> unit>

            if work.TryDequeue(&w) then
                try
                    w ()
                with ex ->
                    onError ex

                // Free again: stay as the spare if there is none, else end.
                go <- Volatile.Read &stopping = 0 && Interlocked.Increment(&parked) = 1

                if go then
                    Thread.CurrentThread.Name <- "apisix-loop-spare"
                elif Volatile.Read &stopping = 0 then
                    Interlocked.Decrement(&parked) |> ignore
            else
                go <- Volatile.Read &stopping = 0

    /// Threads parked now (not reserved).
    member _.Parked = Volatile.Read &parked

    /// Parks one more thread; throws when the system cannot start one.
    member s.Add() =
        let t = Thread(fun () -> s.Park())
        t.IsBackground <- true
        t.Name <- "apisix-loop-spare"
        Interlocked.Increment(&parked) |> ignore

        try
            t.Start()
        with _ ->
            Interlocked.Decrement(&parked) |> ignore
            reraise ()

    /// Reserves a parked thread; false when there is none.
    member _.TryReserve() : bool =
        let mutable n = Volatile.Read &parked
        let mutable result = false

        while n > 0 && not result do
            if Interlocked.CompareExchange(&parked, n - 1, n) = n then result <- true else n <- Volatile.Read &parked

        result

    /// Gives a reservation back unused.
    member _.Unreserve() = Interlocked.Increment(&parked) |> ignore

    /// Runs `w` on the reserved thread.
    member _.Run(w: unit -> unit) =
        work.Enqueue w
        signal.Release() |> ignore

    /// Ends the parked threads.
    member _.Stop() =
        Volatile.Write(&stopping, 1)
        signal.Release(max 1 (Volatile.Read &parked)) |> ignore

/// One event loop: an epoll instance with its registered targets, an eventfd to wake it, a queue of
/// commands from other threads, and the thread that runs it.
///
/// A thread runs the loop only while it owns it. `state` counts dispatches: odd while one is in
/// progress (an event handler, a command, a timer), even between them. The watchdog sees a
/// dispatch that lasts too long as the same odd value on two samples far enough apart; it then takes
/// the loop from the held thread with one compare-and-swap (odd -> even) and starts a fresh thread
/// that resumes the same epoll_wait batch after the entry being dispatched. The held thread, when
/// its handler finally returns, fails its own compare-and-swap (the value moved on) and ends,
/// without touching the loop again. So every event of the batch is handled exactly once, the epoll
/// registrations never change, and the held connection (still registered here) is served by the
/// fresh thread once its session waits again.
[<Sealed; AllowNullLiteral>]
type internal EventLoop(index: int, registry: Registry, bell: WatchdogBell, onError: exn -> unit) =
    [<Literal>]
    let MaxEvents = 256

    let epfd =
        let fd = Native.epoll_create1 Native.EPOLL_CLOEXEC
        if fd < 0 then raise (InvalidOperationException $"epoll_create1 failed: errno {Native.errno ()}")
        fd

    let wakeFd =
        let fd = Native.eventfd (0u, Native.EFD_NONBLOCK ||| Native.EFD_CLOEXEC)

        if fd < 0 then
            Native.close epfd |> ignore
            raise (InvalidOperationException $"eventfd failed: errno {Native.errno ()}")

        // Level-triggered: a wake-up that a handed-off thread left unread is seen by its successor.
        let err = Native.control epfd Native.EPOLL_CTL_ADD fd Native.EPOLLIN 0UL

        if err <> 0 then
            raise (InvalidOperationException $"epoll_ctl(eventfd) failed: errno {err}")

        fd

    let events = NativeMemory.Alloc(unativeint (MaxEvents * Native.EventSize)) |> NativePtr.ofVoidPtr<byte> |> NativePtr.toNativeInt
    let commands = ConcurrentQueue<unit -> unit>()

    // Owned by the thread that runs the loop.
    let mutable batch = 0
    let mutable timerDue = 0L
    let mutable timer: unit -> unit = ignore

    // Shared with the watchdog.
    let mutable state = 0L
    let mutable started = 0L
    let mutable tid = 0
    let mutable next = 0
    let mutable holder: IEventTarget = null
    let mutable stopped = 0
    let mutable threads = 0
    let mutable handoffs = 0
    let mutable finished = 0

    let wakeBuffer = Marshal.AllocHGlobal 8

    member _.Index = index

    /// The epoll instance.
    member _.Epoll = epfd

    /// The dispatch counter: odd while a handler runs.
    member _.State = Volatile.Read &state

    /// When the dispatch in progress began (Environment.TickCount64): valid while State reads the same odd value.
    member _.Started = Volatile.Read &started

    /// The kernel's id of the thread running the loop (for its scheduler statistics).
    member _.ThreadId = Volatile.Read &tid

    /// What the dispatch in progress serves (null for commands and timers).
    member _.Holder = Volatile.Read &holder

    /// How many times a fresh thread took this loop over.
    member _.Handoffs = Volatile.Read &handoffs

    /// Threads running this loop or held by a handler of it.
    member _.Threads = Volatile.Read &threads

    /// True once the loop was stopped and its thread has left it.
    member _.Finished = Volatile.Read &finished = 1

    /// Wakes the loop from epoll_wait.
    member _.Wake() =
        Marshal.WriteInt64(wakeBuffer, 1L)
        Native.write (wakeFd, wakeBuffer, 8n) |> ignore

    /// Runs `command` on the loop's thread, soon.
    member l.Post(command: unit -> unit) =
        commands.Enqueue command
        l.Wake()

    /// Runs `action` on the loop's thread after `delayMs`: one timer per loop, set by one thread at
    /// a time (the acceptor); the wake-up makes the loop wait with the new timeout.
    member l.Schedule(delayMs: int, action: unit -> unit) =
        timer <- action
        Volatile.Write(&timerDue, Environment.TickCount64 + int64 delayMs)
        l.Wake()

    /// Registers `fd` with `events`, its epoll data being `target.Key`; 0 or errno.
    member _.Add(fd: int, events: uint32, target: IEventTarget) =
        Native.control epfd Native.EPOLL_CTL_ADD fd events target.Key

    /// Changes the events of a registered fd; 0 or errno.
    member _.Modify(fd: int, events: uint32, target: IEventTarget) =
        Native.control epfd Native.EPOLL_CTL_MOD fd events target.Key

    /// Removes a registered fd; 0 or errno.
    member _.Remove(fd: int) =
        Native.control epfd Native.EPOLL_CTL_DEL fd Native.EPOLLIN 0UL

    member private _.ClearWake() =
        Native.read (wakeFd, wakeBuffer, 8n) |> ignore

    /// Starts a dispatch: the counter becomes odd. `seq` is the running thread's own copy.
    member private _.Enter(seq: byref<int64>, target: IEventTarget) =
        holder <- target
        started <- Environment.TickCount64
        seq <- seq + 1L
        Volatile.Write(&state, seq)

    /// Ends a dispatch: the counter becomes even again, unless the watchdog took the loop over
    /// meanwhile (then false: the calling thread must leave the loop).
    member private _.Leave(seq: byref<int64>) : bool =
        if Interlocked.CompareExchange(&state, seq + 1L, seq) = seq then
            seq <- seq + 1L
            true
        else
            false

    member private _.Wait() : int =
        let timeout =
            if timerDue = 0L then -1
            else int (max 0L (timerDue - Environment.TickCount64))

        let n = Native.epoll_wait (epfd, events, MaxEvents, timeout)
        bell.Ring()

        if n >= 0 then
            n
        else
            let e = Native.errno ()
            if e <> Native.EINTR then onError (InvalidOperationException $"epoll_wait failed: errno {e}")
            0

    /// One turn: waits for events when the batch is done (and runs the timer when due), then
    /// dispatches the rest of the batch. False when the watchdog took the loop from this thread.
    /// A method of its own, called once per wake-up, so that tiered compilation optimizes it (a
    /// loop inside the long-running Run would stay at tier 0).
    member private l.Turn(seq: byref<int64>, i: byref<int>) : bool =
        let mutable owned = true

        if i >= batch then
            batch <- l.Wait()
            i <- 0

            if Volatile.Read &timerDue <> 0L && Environment.TickCount64 >= timerDue then
                let action = timer
                timerDue <- 0L
                timer <- ignore
                next <- i
                l.Enter(&seq, null)

                try
                    action ()
                with ex ->
                    onError ex

                owned <- l.Leave &seq

        while owned && i < batch do
            let key = Native.eventData events i
            let bits = Native.eventBits events i
            i <- i + 1
            next <- i

            if key = 0UL then
                l.ClearWake()
                let mutable command = Unchecked.defaultof<unit -> unit>

                while owned && commands.TryDequeue(&command) do
                    l.Enter(&seq, null)

                    try
                        command ()
                    with ex ->
                        onError ex

                    owned <- l.Leave &seq
            else
                let target = registry.Find key

                if not (isNull target) then
                    l.Enter(&seq, target)

                    try
                        target.OnEvents bits
                    with ex ->
                        onError ex

                    owned <- l.Leave &seq

        owned

    /// Runs the loop on the calling thread from entry `resume` of the current batch, `start` being
    /// the dispatch counter it takes over (even). Returns when the loop stops or another thread took it over.
    member l.Run(resume: int, start: int64) =
        let mutable seq = start
        let mutable i = resume
        let mutable owned = true
        Volatile.Write(&tid, Native.gettid ())

        try
            while owned && Volatile.Read &stopped = 0 do
                owned <- l.Turn(&seq, &i)
        finally
            Interlocked.Decrement(&threads) |> ignore

            if owned then
                Volatile.Write(&finished, 1)

    member private l.StartThread(resume: int, start: int64) =
        Interlocked.Increment(&threads) |> ignore
        // The default stack size: sessions and plugins run on this thread when they continue inline.
        let t = Thread(fun () -> l.Run(resume, start))
        t.IsBackground <- true
        t.Name <- $"apisix-loop-{index}"
        t.Start()

    /// Starts the loop's first thread.
    member l.Start() = l.StartThread(0, 0L)

    /// Hands the loop to a spare thread if the dispatch `observed` (odd) is still in progress;
    /// true when it did, false when the dispatch ended meanwhile or no spare thread was parked.
    /// Called by the watchdog.
    member l.TryHandOff(observed: int64, spare: SpareThreads) : bool =
        if observed % 2L = 1L && Volatile.Read &stopped = 0 && spare.TryReserve() then
            if Interlocked.CompareExchange(&state, observed + 1L, observed) = observed then
                Interlocked.Increment(&handoffs) |> ignore
                Interlocked.Increment(&threads) |> ignore
                // `next` was written before the dispatch began and the held thread no longer moves it.
                let resume = Volatile.Read &next

                spare.Run(fun () ->
                    Thread.CurrentThread.Name <- $"apisix-loop-{index}"
                    l.Run(resume, observed + 1L))

                // Commands queued behind the held one: the level-triggered eventfd reports them again.
                l.Wake()
                true
            else
                spare.Unreserve()
                false
        else
            false

    /// Stops the loop: its thread leaves at its next wake-up.
    member l.Stop() =
        Volatile.Write(&stopped, 1)
        l.Wake()

    /// Frees the epoll instance and the eventfd once the loop's thread has left it.
    member _.Release() =
        if Volatile.Read &finished = 1 then
            Native.close wakeFd |> ignore
            Native.close epfd |> ignore
            NativeMemory.Free(NativePtr.toVoidPtr (NativePtr.ofNativeInt<byte> events))
            Marshal.FreeHGlobal wakeBuffer
