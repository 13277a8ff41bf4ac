namespace Apisix.Runner

open System
open System.Collections.Concurrent
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open System.Threading.Tasks.Sources
open Microsoft.Extensions.Logging

/// One connection on .NET's socket engine. A receive that has to wait completes through a reusable
/// source, so waiting for the next call allocates nothing; while the transport drains, a waiting
/// receive is cancelled and answers 0 unless bytes are there (a cancelled receive that already
/// took bytes completes with them, so no call that arrived is lost).
[<Sealed>]
type internal SocketConnection(socket: Socket, draining: CancellationToken, closed: SocketConnection -> unit) as this =
    let received = Completion<int>()
    let mutable pending = ValueTask<int>()
    let mutable buffer = Memory<byte>.Empty
    let mutable onCompleted: Action = null
    let mutable isClosed = 0

    let available () =
        try
            socket.Available > 0
        with :? ObjectDisposedException ->
            false

    let sendSlow (sent: ValueTask<int>) : ValueTask<bool> =
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

    do onCompleted <- Action(fun () -> this.Completed())

    /// The waiting receive finished: hand its count (0 for a closed or drained connection) to the session.
    member private _.Completed() =
        let result =
            try
                ValueSome(pending.GetAwaiter().GetResult())
            with
            | :? OperationCanceledException when available () -> ValueNone
            | :? OperationCanceledException
            | :? SocketException
            | :? ObjectDisposedException -> ValueSome 0

        match result with
        | ValueSome n -> received.SetResult n
        | ValueNone ->
            // Drained while bytes arrived: take them without the drain's cancellation.
            pending <- socket.ReceiveAsync(buffer, SocketFlags.None)

            if pending.IsCompleted then
                this.Completed()
            else
                pending.GetAwaiter().UnsafeOnCompleted onCompleted

    interface IConnectionIo with
        member c.ReceiveAsync(into: Memory<byte>) =
            if draining.IsCancellationRequested && not (available ()) then
                ValueTask<int>(0)
            else
                let receiving =
                    try
                        socket.ReceiveAsync(into, SocketFlags.None, draining)
                    with
                    | :? SocketException
                    | :? ObjectDisposedException -> ValueTask<int>(0)

                if receiving.IsCompleted then
                    try
                        ValueTask<int>(receiving.GetAwaiter().GetResult())
                    with
                    | :? OperationCanceledException
                    | :? SocketException
                    | :? ObjectDisposedException -> ValueTask<int>(0)
                else
                    received.Reset()
                    pending <- receiving
                    buffer <- into
                    receiving.GetAwaiter().UnsafeOnCompleted onCompleted
                    received.Pending

        member _.SendAsync(data: ReadOnlyMemory<byte>) =
            try
                let sent = socket.SendAsync(data, SocketFlags.None)

                if sent.IsCompletedSuccessfully then
                    ValueTask<bool>(true)
                else
                    sendSlow sent
            with
            | :? SocketException
            | :? ObjectDisposedException -> ValueTask<bool>(false)


        member c.Close() =
            if Interlocked.Exchange(&isClosed, 1) = 0 then
                socket.Dispose()
                closed c

/// The transport on .NET's socket engine: an accept loop, and each connection's receives and sends
/// through Socket's asynchronous methods. Portable (macOS too) and the fallback on Linux.
[<Sealed>]
type internal SocketTransport(logger: ILogger) =
    let connections = ConcurrentDictionary<SocketConnection, unit>()
    let stopAccepting = new CancellationTokenSource()
    let draining = new CancellationTokenSource()
    let forget (c: SocketConnection) = connections.TryRemove c |> ignore

    let acceptLoop (listener: Socket) (serve: IConnectionIo -> unit) : Task =
        task {
            let mutable go = true

            while go do
                try
                    let! socket = listener.AcceptAsync stopAccepting.Token
                    let connection = SocketConnection(socket, draining.Token, forget)
                    connections[connection] <- ()
                    // On the pool, not here: a plugin that blocks on the first call must not hold up accepting.
                    ThreadPool.UnsafeQueueUserWorkItem((fun c -> serve c), connection :> IConnectionIo, false) |> ignore
                with
                | :? OperationCanceledException
                | :? ObjectDisposedException -> go <- false
                | :? SocketException as e when e.SocketErrorCode = SocketError.OperationAborted -> go <- false
                | :? SocketException as e -> Log.acceptFailed.Invoke(logger, e)
        }

    interface ITransport with
        member _.Start(listener, serve) = acceptLoop listener serve |> ignore

        member _.Drain() =
            stopAccepting.Cancel()
            draining.Cancel()

        member _.Abort() =
            for c in connections.Keys do
                (c :> IConnectionIo).Close()

        member _.Dispose() =
            stopAccepting.Dispose()
            draining.Dispose()
