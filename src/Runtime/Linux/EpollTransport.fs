namespace Apisix.Runner.Linux

#nowarn "9" // buffers are pinned for the duration of one recv or send

open System
open System.Threading
open System.Threading.Tasks
open System.Threading.Tasks.Sources
open Microsoft.Extensions.Logging
open Microsoft.FSharp.NativeInterop
open Apisix.Runner

/// Settings of the epoll transport.
[<NoEquality; NoComparison>]
type internal EpollSettings =
    { /// Event-loop threads. Each owns the connections it was given at accept, round-robin.
      Loops: int
      /// How long one dispatch may hold a loop before the watchdog hands the loop's other
      /// connections to a fresh thread.
      StallThreshold: TimeSpan
      /// Where the transport logs (accept limits, stalls).
      Logger: ILogger
      /// What a stall log line says about the connection that held the loop (the session can name
      /// the plugin it is running). Called on the watchdog thread.
      DescribeHolder: IConnectionIo -> string }

    /// Loops by default: one per four cores, at least one. On 2 cores one loop measured best (the
    /// load generator and APISIX need the other core); see docs/transport.md.
    static member DefaultLoops(cores: int) = max 1 (cores / 4)

    /// Default settings: loops by core count, a 20 ms stall threshold.
    static member Default(logger: ILogger) =
        { Loops = EpollSettings.DefaultLoops Environment.ProcessorCount
          StallThreshold = TimeSpan.FromMilliseconds 20.0
          Logger = logger
          DescribeHolder = fun _ -> "" }

/// recv and send on a non-blocking socket, with EINTR retried.
module internal SocketIo =
    /// recv into `buffer`: the byte count (0 at end of stream), or -errno.
    let receive (fd: int) (buffer: Memory<byte>) : int =
        let span = buffer.Span
        use p = fixed span
        let mutable r = -Native.EINTR

        while r = -Native.EINTR do
            let n = Native.recv (fd, NativePtr.toNativeInt p, nativeint span.Length, 0)
            r <- if n >= 0n then int n else -(Native.errno ())

        r

    /// Sends from `data` until it is all sent or the socket is full (a short send counts as full:
    /// asking again would only return EAGAIN). The bytes sent, or -errno when the peer is gone.
    let send (fd: int) (data: ReadOnlyMemory<byte>) : int =
        let span = data.Span
        use p = fixed span
        let mutable r = -Native.EINTR

        while r = -Native.EINTR do
            let n = Native.send (fd, NativePtr.toNativeInt p, nativeint span.Length, Native.MSG_NOSIGNAL ||| Native.MSG_DONTWAIT)

            r <-
                if n >= 0n then int n
                else
                    match Native.errno () with
                    | Native.EAGAIN -> 0
                    | e -> -e

        r

/// What the connections of one transport share.
[<Sealed>]
type internal EpollShared(registry: Registry) =
    [<DefaultValue(false)>]
    val mutable Draining: int

    [<DefaultValue(false)>]
    val mutable NextId: int64

    member _.Registry = registry

/// The bits of a connection's state (see EpollConnection).
module internal ConnectionState =
    [<Literal>]
    let Readable = 1

    [<Literal>]
    let ReceivePending = 2

    [<Literal>]
    let SendPending = 4

    [<Literal>]
    let Closed = 8

    [<Literal>]
    let Final = 16

    /// The peer shut down or the socket failed (EPOLLRDHUP, EPOLLHUP, EPOLLERR): a read returns at
    /// once from now on, and no further edge will say so.
    [<Literal>]
    let Hangup = 32

    /// One thread inside a system call on the fd.
    [<Literal>]
    let User = 256

    /// Everything but Readable, Closed and Hangup: some use of the fd is still going on (or it is closed).
    [<Literal>]
    let Busy = -42 // ~~~(Readable ||| Closed ||| Hangup)

    /// Edge-triggered reads and peer shutdowns.
    [<Literal>]
    let Interest = 0x80002001u // EPOLLIN ||| EPOLLRDHUP ||| EPOLLET

    /// ... and room to write, while a send waits for it.
    [<Literal>]
    let InterestOut = 0x80002005u

open ConnectionState

/// One accepted connection: a non-blocking socket registered edge-triggered (EPOLLIN|EPOLLRDHUP;
/// EPOLLOUT only while a send waits for room) in the epoll instance of its loop.
///
/// All of its state is one int changed with compare-and-swap, so that the session (on the loop or
/// on a thread-pool thread), the loop, and Close/Drain from other threads agree without a lock:
/// - Readable: an edge said bytes may be waiting and nobody has read them since. Whoever clears it
///   reads (clearing comes before the read, so an edge during the read sets it again).
/// - ReceivePending / SendPending: the session waits; whoever clears the bit completes the wait.
///   A session has at most one operation at a time, and only the thread that clears a bit or
///   Readable reads or writes the socket for it, so two threads never read one socket.
/// - Hangup: the peer shut down; reads never wait again, so a short read leaves Readable set.
/// - Closed, Final: Close was called; the fd was closed (once, by whoever saw the last use end).
/// - a count of threads inside a system call on the fd (units of User): the fd is closed only when
///   it is 0 and nothing is pending, so a number the kernel reuses is never read by mistake.
[<Sealed>]
type internal EpollConnection(fd: int, loop: EventLoop, shared: EpollShared, key: uint64) =
    let id = Interlocked.Increment(&shared.NextId)
    let receive = Completion<int>()
    let sent = Completion<bool>()
    let mutable state = 0
    let mutable inbox = Memory<byte>.Empty
    let mutable outbox = ReadOnlyMemory<byte>.Empty

    [<VolatileField>]
    let mutable stallLogged = false

    /// The connection's number in log lines (1, 2, ... in accept order).
    member _.Id = id

    member _.Loop = loop

    member internal _.StallLogged
        with get () = stallLogged
        and set v = stallLogged <- v

    /// Closes the fd once Close was called and no system call or wait is left.
    member private _.Settle() =
        let mutable s = Volatile.Read &state

        while s &&& (Busy ||| Closed) = Closed do
            if Interlocked.CompareExchange(&state, s ||| Final, s) = s then
                loop.Remove fd |> ignore
                Native.close fd |> ignore
                shared.Registry.Remove key
                s <- Final
            else
                s <- Volatile.Read &state

    /// Takes `bits` off and adds `add` in one step, then closes the fd if that was its last use.
    member private c.Change(remove: int, add: int) =
        let mutable s = Volatile.Read &state
        let mutable go = true

        while go do
            let n = (s - remove) ||| add

            if Interlocked.CompareExchange(&state, n, s) = s then
                go <- false
                if n &&& Closed <> 0 then c.Settle()
            else
                s <- Volatile.Read &state

    /// Enters a system call on the fd; false once the connection is closed.
    member private _.TryEnter() : bool =
        let mutable s = Volatile.Read &state
        let mutable result = false
        let mutable go = true

        while go do
            if s &&& Closed <> 0 then
                go <- false
            elif Interlocked.CompareExchange(&state, s + User, s) = s then
                result <- true
                go <- false
            else
                s <- Volatile.Read &state

        result

    /// Leaves a read of `n` (bytes, or -errno) into a buffer of `length`: a full buffer, the end of
    /// the stream or an error leave Readable set (more to read, or the same end again).
    member private c.LeaveRead(n: int, length: int) =
        let again =
            n = length || (n <= 0 && n <> -Native.EAGAIN) || Volatile.Read &state &&& Hangup <> 0

        c.Change(User, (if again then Readable else 0))

    /// Completes the session's pending receive (on the loop: after an edge, or when draining).
    member private c.CompleteReceive(draining: bool) =
        let mutable s = Volatile.Read &state
        let mutable go = s &&& ReceivePending <> 0

        while go do
            if s &&& Closed <> 0 then
                if Interlocked.CompareExchange(&state, s &&& ~~~ReceivePending, s) = s then
                    go <- false
                    inbox <- Memory.Empty
                    c.Settle()
                    receive.SetResult 0
                else
                    s <- Volatile.Read &state
            elif Interlocked.CompareExchange(&state, (s &&& ~~~(ReceivePending ||| Readable)) + User, s) = s then
                go <- false
                let buffer = inbox
                let n = SocketIo.receive fd buffer

                if n = -Native.EAGAIN && not draining && Volatile.Read &shared.Draining = 0 then
                    // The edge was stale (its bytes were read already): wait again.
                    c.Change(User, ReceivePending)
                else
                    inbox <- Memory.Empty
                    c.LeaveRead(n, buffer.Length)
                    receive.SetResult(max n 0)
            else
                s <- Volatile.Read &state
                go <- s &&& ReceivePending <> 0

    /// Continues the session's pending send when the socket has room again.
    member private c.CompleteSend() =
        let mutable s = Volatile.Read &state
        let mutable go = s &&& SendPending <> 0

        while go do
            if s &&& Closed <> 0 then
                if Interlocked.CompareExchange(&state, s &&& ~~~SendPending, s) = s then
                    go <- false
                    outbox <- ReadOnlyMemory.Empty
                    c.Settle()
                    sent.SetResult false
                else
                    s <- Volatile.Read &state
            elif Interlocked.CompareExchange(&state, (s &&& ~~~SendPending) + User, s) = s then
                go <- false
                let data = outbox
                let n = SocketIo.send fd data

                if n = data.Length then
                    loop.Modify(fd, Interest, c) |> ignore
                    outbox <- ReadOnlyMemory.Empty
                    c.Change(User, 0)
                    sent.SetResult true
                elif n >= 0 then
                    outbox <- data.Slice n
                    c.Change(User, SendPending)
                else
                    outbox <- ReadOnlyMemory.Empty
                    c.Change(User, 0)
                    sent.SetResult false
            else
                s <- Volatile.Read &state
                go <- s &&& SendPending <> 0

    /// Takes the pending receive back from the loop; false when the loop took it first.
    member private _.TakeBack() : bool =
        let mutable s = Volatile.Read &state
        let mutable result = false

        while s &&& ReceivePending <> 0 do
            if Interlocked.CompareExchange(&state, s &&& ~~~ReceivePending, s) = s then
                result <- true
                s <- 0
            else
                s <- Volatile.Read &state

        result

    /// On the loop: answers a waiting receive from what has arrived, or 0 (drain).
    member c.DrainWaiting() = c.CompleteReceive true

    member c.ReceiveAsync(buffer: Memory<byte>) : ValueTask<int> =
        let mutable result = ValueTask<int>(0)
        let mutable go = not buffer.IsEmpty

        while go do
            let s = Volatile.Read &state

            if s &&& Closed <> 0 then
                go <- false
            elif s &&& Readable <> 0 then
                if Interlocked.CompareExchange(&state, (s &&& ~~~Readable) + User, s) = s then
                    let n = SocketIo.receive fd buffer

                    if n = -Native.EAGAIN then
                        c.Change(User, 0)
                    else
                        c.LeaveRead(n, buffer.Length)
                        result <- ValueTask<int>(max n 0)
                        go <- false
            elif Volatile.Read &shared.Draining <> 0 then
                // Draining: what has arrived is served even if its edge is not handled yet; else 0.
                go <- false

                if Interlocked.CompareExchange(&state, s + User, s) = s then
                    let n = SocketIo.receive fd buffer
                    c.LeaveRead(n, buffer.Length)
                    result <- ValueTask<int>(max n 0)
                else
                    go <- true
            else
                receive.Reset()
                inbox <- buffer

                if Interlocked.CompareExchange(&state, s ||| ReceivePending, s) = s then
                    // Drain sets its flag before it looks for waiting receives: one of the two sees the other.
                    if Volatile.Read &shared.Draining <> 0 && c.TakeBack() then
                        inbox <- Memory.Empty
                    else
                        result <- receive.Pending
                        go <- false
                else
                    inbox <- Memory.Empty

        result

    member c.SendAsync(data: ReadOnlyMemory<byte>) : ValueTask<bool> =
        if data.IsEmpty then
            ValueTask<bool>(true)
        elif not (c.TryEnter()) then
            ValueTask<bool>(false)
        else
            let n = SocketIo.send fd data

            if n = data.Length then
                c.Change(User, 0)
                ValueTask<bool>(true)
            elif n < 0 then
                c.Change(User, 0)
                ValueTask<bool>(false)
            else
                // The socket is full: the rest goes when epoll says there is room. The pending bit is
                // set before EPOLLOUT is asked for (the loop may answer at once), and the fd is held
                // (User) until the epoll_ctl is done.
                sent.Reset()
                outbox <- data.Slice n
                Interlocked.Add(&state, SendPending) |> ignore
                loop.Modify(fd, InterestOut, c) |> ignore
                c.Change(User, 0)
                sent.Pending

    member c.Close() =
        let mutable s = Volatile.Read &state
        let mutable go = s &&& Closed = 0

        while go do
            if Interlocked.CompareExchange(&state, (s ||| Closed) + User, s) = s then
                go <- false
                // Shutting down makes the loop see the end at once (EPOLLHUP): it completes a waiting
                // receive or send, and the fd is closed when the last use ends.
                Native.shutdown (fd, Native.SHUT_RDWR) |> ignore
                c.Change(User, 0)
            else
                s <- Volatile.Read &state
                go <- s &&& Closed = 0

    interface IEventTarget with
        member _.Key = key

        member c.OnEvents(bits: uint32) =
            if bits &&& (Native.EPOLLOUT ||| Native.EPOLLHUP ||| Native.EPOLLERR) <> 0u then
                c.CompleteSend()

            if bits &&& (Native.EPOLLIN ||| Native.EPOLLRDHUP ||| Native.EPOLLHUP ||| Native.EPOLLERR) <> 0u then
                if bits &&& (Native.EPOLLRDHUP ||| Native.EPOLLHUP ||| Native.EPOLLERR) <> 0u then
                    Interlocked.Or(&state, Hangup) |> ignore

                let s = Volatile.Read &state

                if s &&& ReceivePending <> 0 then c.CompleteReceive false
                elif s &&& Readable = 0 then Interlocked.Or(&state, Readable) |> ignore

                // A receive registered between the check and the Or finds Readable and reads itself.
                if Volatile.Read &state &&& (ReceivePending ||| Readable) = (ReceivePending ||| Readable) then
                    c.CompleteReceive false

    interface IConnectionIo with
        member c.ReceiveAsync buffer = c.ReceiveAsync buffer
        member c.SendAsync data = c.SendAsync data
        member c.Close() = c.Close()

/// What the kernel's scheduler says about one thread: whether it sleeps (blocked in a wait, a
/// sleep, a lock or I/O), and how long it ran and how long it waited for a CPU (ns).
module internal ThreadStats =
    /// (sleeping, ran ns, waited ns), or None when /proc cannot be read.
    let read (tid: int) : (bool * int64 * int64) option =
        try
            let stat = IO.File.ReadAllText $"/proc/self/task/{tid}/stat"
            // The state follows the command name, which is in parentheses and may hold spaces.
            let state = stat[stat.LastIndexOf ')' + 2]
            let sched = IO.File.ReadAllText($"/proc/self/task/{tid}/schedstat").Split ' '
            Some(state = 'S' || state = 'D', int64 sched[0], int64 sched[1])
        with _ ->
            None

/// The listening socket's registration in the first loop.
[<Sealed>]
type private ListenerTarget(key: uint64, ready: unit -> unit) =
    interface IEventTarget with
        member _.Key = key
        member _.OnEvents _ = ready ()

/// The Linux transport: event loops on epoll, each owning its connections; sessions continue
/// inline on the loop when a receive completes, and send directly from whichever thread they are
/// on. A watchdog hands a loop held by one dispatch to a fresh thread. See docs/transport.md.
[<Sealed>]
type internal EpollTransport(settings: EpollSettings) =
    static let RetryAcceptMs = 100

    let registry = Registry()
    let shared = EpollShared(registry)
    let logger = settings.Logger
    let onError (ex: exn) =
        try
            Log.loopFailed.Invoke(logger, ex)
        with _ ->
            ()
    let bell = WatchdogBell()
    let spare = SpareThreads(onError)
    let mutable spareFailed = false
    let loops = Array.init (max 1 settings.Loops) (fun i -> EventLoop(i, registry, bell, onError))
    let thresholdMs = max 1 (int settings.StallThreshold.TotalMilliseconds)
    // No spinning before the watchdog sleeps: a spin is a burst of sched_yield calls at each wake-up.
    let stop = new ManualResetEventSlim(false, 0)

    let mutable listenFd = -1
    let mutable listenKey = 0UL
    let mutable serve: IConnectionIo -> unit = ignore

    [<VolatileField>]
    let mutable accepting = false

    let mutable limited = false
    // When the limit was last logged: an fd count that hovers at the limit logs once a minute at most,
    // and the recovery is logged when the limit was.
    let mutable limitLogged = Int64.MinValue / 2L
    let mutable limitReported = false
    let mutable nextLoop = 0
    let mutable watchdog: Thread = null
    let mutable disposed = 0

    let connections () =
        registry.Snapshot()
        |> Array.choose (fun t ->
            match t with
            | :? EpollConnection as c -> Some c
            | _ -> None)

    // One thread at a time accepts (see Accept): a thread that is handed off mid-accept finishes
    // its batch while its successor may see the next edge.
    let mutable acceptRunning = 0
    let mutable acceptAgain = 0

    /// Inside Accept only: the listening fd is closed by the thread that accepts.
    let closeListener () =
        if listenFd >= 0 then
            loops[0].Remove listenFd |> ignore
            registry.Remove listenKey
            Native.close listenFd |> ignore
            listenFd <- -1

    /// Who held a loop: a call in progress (named by the session: its plugin), or what else.
    let describe (target: IEventTarget) : struct (bool * string) =
        match target with
        | :? EpollConnection as c ->
            let detail =
                try
                    settings.DescribeHolder(c :> IConnectionIo)
                with _ ->
                    ""

            if String.IsNullOrEmpty detail then
                struct (false, $"connection {c.Id}, between calls")
            else
                struct (true, $"connection {c.Id} ({detail})")
        | null -> struct (false, "a loop command")
        | _ -> struct (false, "accepting a connection")

    member private t.Adopt(fd: int) =
        let loop = loops[nextLoop % loops.Length]
        nextLoop <- nextLoop + 1
        let c = registry.Add(fun key -> EpollConnection(fd, loop, shared, key) :> IEventTarget) :?> EpollConnection
        let err = loop.Add(fd, Native.EPOLLIN ||| Native.EPOLLRDHUP ||| Native.EPOLLET, c)

        if err <> 0 then
            registry.Remove (c :> IEventTarget).Key
            Native.close fd |> ignore
        else
            try
                serve (c :> IConnectionIo)
            with ex ->
                onError ex
                c.Close()

    /// Accepts every connection waiting, or closes the listener once accepting stopped. Called on
    /// the first loop (edges, the retry timer, Drain and Abort); one thread runs it at a time, and a
    /// call that finds it running makes the running one go round again, so no edge is lost.
    member private t.Accept() =
        Volatile.Write(&acceptAgain, 1)

        while Volatile.Read &acceptAgain = 1 && Interlocked.CompareExchange(&acceptRunning, 1, 0) = 0 do
            Volatile.Write(&acceptAgain, 0)

            try
                if accepting then t.AcceptAll()
                if not accepting then closeListener ()
            finally
                Interlocked.Exchange(&acceptRunning, 0) |> ignore

    /// Accepts until EAGAIN (the listener is edge-triggered).
    member private t.AcceptAll() =
        let mutable go = accepting

        while go do
            let fd = Native.accept4 (listenFd, 0n, 0n, Native.SOCK_NONBLOCK ||| Native.SOCK_CLOEXEC)

            if fd >= 0 then
                if limited then
                    limited <- false

                    if limitReported then
                        limitReported <- false
                        Log.acceptResumed.Invoke(logger, null)

                t.Adopt fd
                go <- accepting
            else
                match Native.errno () with
                | Native.EINTR
                | Native.ECONNABORTED
                | 71 (* EPROTO *) -> ()
                | Native.EAGAIN -> go <- false
                | Native.EMFILE
                | Native.ENFILE
                | Native.ENOBUFS
                | Native.ENOMEM as e ->
                    // The connections waiting stay in the backlog; the open ones are served meanwhile.
                    if not limited then
                        limited <- true

                        if Environment.TickCount64 - limitLogged >= 60_000L then
                            limitLogged <- Environment.TickCount64
                            limitReported <- true
                            Log.acceptLimit.Invoke(logger, e, RetryAcceptMs, null)

                    loops[0].Schedule(RetryAcceptMs, fun () -> t.Accept())
                    go <- false
                | e ->
                    if accepting then
                        Log.acceptStopped.Invoke(logger, e, null)

                    accepting <- false
                    go <- false

    /// Watches the loops' dispatches. A dispatch that began more than the threshold ago (the same
    /// odd counter before and after reading its start) gets its loop handed to a spare thread, and
    /// its holder is logged once. The watchdog sleeps until the oldest dispatch in progress would
    /// reach the threshold, or a whole threshold when none is: one wake-up per threshold under load,
    /// and a stall is seen when it reaches the threshold (plus the clock's few ms). After a second in
    /// which no loop dispatched anything, it sleeps until a loop wakes up (WatchdogBell).
    member private _.Watch() =
        let threshold = int64 thresholdMs
        let last = Array.create loops.Length -1L
        // Per loop: the dispatch last sampled, and its thread's statistics then (time, ran, waited).
        let sampledSeq = Array.create loops.Length -1L
        let sampled = Array.create loops.Length (0L, 0L, 0L)

        // Whether the loop's thread, held since its last sample, mostly waited for a CPU: then it
        // is not held by its handler but by other processes, and a fresh thread would wait too.
        let starved (i: int) (s: int64) (now: int64) =
            match ThreadStats.read loops[i].ThreadId with
            | None -> false
            | Some(sleeping, ran, waited) ->
                let before = sampledSeq[i] = s
                let t0, ran0, waited0 = sampled[i]
                sampledSeq[i] <- s
                sampled[i] <- (now, ran, waited)

                if sleeping then false
                elif not before then true // no sample of this dispatch yet: look again shortly
                else
                    let elapsed = (now - t0) * 1_000_000L
                    waited - waited0 > ran - ran0 && 2L * (waited - waited0) > elapsed
        let mutable idleSince = Environment.TickCount64
        let mutable wait = thresholdMs

        while not (stop.Wait wait) do
            try
                let now = Environment.TickCount64
                let mutable quiet = true
                let mutable due = now + threshold

                for i in 0 .. loops.Length - 1 do
                    let l = loops[i]
                    let s = l.State
                    let began = l.Started

                    if s <> last[i] || s % 2L = 1L then quiet <- false
                    last[i] <- s

                    if s % 2L = 1L && l.State = s && now - began < threshold then
                        due <- min due (began + threshold)
                    elif s % 2L = 1L && l.State = s && starved i s now then
                        due <- min due (now + max 1L (threshold / 4L))
                    elif s % 2L = 1L && l.State = s then
                        let holder = l.Holder

                        if l.TryHandOff(s, spare) then
                            let first =
                                match holder with
                                | :? EpollConnection as c when c.StallLogged -> false
                                | :? EpollConnection as c ->
                                    c.StallLogged <- true
                                    true
                                | _ -> true

                            Telemetry.stalls.Add 1L

                            if first then
                                // A call that holds a loop is a plugin to look at; outside calls it is
                                // the runtime itself (compiling code at the first calls, a collection).
                                match describe holder with
                                | struct (true, who) -> Log.loopHeld.Invoke(logger, l.Index, thresholdMs, who, null)
                                | struct (false, what) -> Log.loopHeldOutsideCall.Invoke(logger, l.Index, thresholdMs, what, null)

                // A spare thread for the next handoff, made now rather than when it is needed.
                if spare.Parked = 0 then
                    try
                        spare.Add()
                        spareFailed <- false
                    with ex ->
                        if not spareFailed then
                            spareFailed <- true
                            onError ex

                if not quiet then
                    idleSince <- now
                elif now - idleSince >= 1000L then
                    // Every loop waits in epoll_wait and none has dispatched for a second: sleep until
                    // one wakes (it rings the bell after epoll_wait). The states are read again after
                    // the flag is up; a loop that woke just before the flag went up and rang nothing is
                    // seen after at most a second.
                    Interlocked.Exchange(&bell.Sleeping, 1) |> ignore

                    let moved = loops |> Array.mapi (fun i l -> l.State <> last[i]) |> Array.exists id

                    if not moved then
                        bell.Bell.Wait 1000 |> ignore

                    Interlocked.Exchange(&bell.Sleeping, 0) |> ignore
                    idleSince <- Environment.TickCount64

                wait <- int (max 1L (due - Environment.TickCount64))
            with ex ->
                // The watchdog must outlive a failing logger or description.
                onError ex

    /// Connections open now.
    member _.ConnectionCount = connections().Length

    /// How many times a held loop was handed to a fresh thread.
    member _.Handoffs = loops |> Array.sumBy (fun l -> l.Handoffs)

    /// Threads running the loops or held by a handler of one.
    member _.LoopThreads = loops |> Array.sumBy (fun l -> l.Threads)

    member _.LoopCount = loops.Length

    /// The loops (tests run commands on them).
    member internal _.Loops = loops

    member t.Start(listener: Net.Sockets.Socket, serveWith: IConnectionIo -> unit) =
        serve <- serveWith
        // Our own descriptor of the listening socket, non-blocking: the server may dispose its
        // Socket whenever it likes, and this one is closed on the first loop when accepting stops.
        listener.Blocking <- false
        let fd = Native.fcntl (int (listener.Handle), Native.F_DUPFD_CLOEXEC, 0)

        if fd < 0 then
            raise (InvalidOperationException $"cannot duplicate the listening socket: errno {Native.errno ()}")

        listenFd <- fd
        let target = registry.Add(fun key -> ListenerTarget(key, (fun () -> t.Accept())) :> IEventTarget)
        listenKey <- target.Key
        accepting <- true

        for l in loops do
            l.Start()

        spare.Add()

        let err = loops[0].Add(fd, Native.EPOLLIN ||| Native.EPOLLET, target)

        if err <> 0 then
            raise (InvalidOperationException $"cannot watch the listening socket: errno {err}")

        let w = Thread(fun () -> t.Watch())
        w.IsBackground <- true
        w.Name <- "apisix-loop-watchdog"
        w.Start()
        watchdog <- w

    member t.Drain() =
        if Interlocked.Exchange(&shared.Draining, 1) = 0 then
            accepting <- false
            loops[0].Post(fun () -> t.Accept())

            for l in loops do
                l.Post(fun () ->
                    for c in connections () do
                        if obj.ReferenceEquals(c.Loop, l) then
                            c.DrainWaiting())

    member t.Abort() =
        accepting <- false
        loops[0].Post(fun () -> t.Accept())

        for c in connections () do
            c.Close()

    member t.Dispose() =
        if Interlocked.Exchange(&disposed, 1) = 0 then
            t.Abort()
            // The loops complete the waits of the closed connections before they stop.
            let until = Environment.TickCount64 + 500L

            while t.ConnectionCount > 0 && Environment.TickCount64 < until do
                Thread.Sleep 1

            stop.Set()
            bell.Bell.Release() |> ignore

            if not (isNull watchdog) then
                watchdog.Join 1000 |> ignore

            spare.Stop()

            for l in loops do
                l.Stop()

            let until = Environment.TickCount64 + 1000L

            while loops |> Array.exists (fun l -> not l.Finished) && Environment.TickCount64 < until do
                Thread.Sleep 1

            for l in loops do
                l.Release()

    interface ITransport with
        member t.Start(listener, serveWith) = t.Start(listener, serveWith)
        member t.Drain() = t.Drain()
        member t.Abort() = t.Abort()
        member t.Dispose() = t.Dispose()
