namespace Apisix.Runner.Transport.Host

open System
open System.Collections.Concurrent
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Apisix.Runner

/// The plain .NET socket-engine transport, as the runner has it today (Socket.ReceiveAsync and
/// SendAsync, continuations on the thread pool): the baseline the epoll transport is measured
/// against. Not the production fallback (the lead's Runtime/SocketTransport.fs is).
[<Sealed>]
type internal SocketConnection(socket: Socket, draining: unit -> bool) =
    let mutable closed = 0

    let receiveSlow (pending: ValueTask<int>) =
        ValueTask<int>(
            task {
                try
                    return! pending
                with
                | :? SocketException
                | :? ObjectDisposedException -> return 0
            }
        )

    let sendSlow (pending: ValueTask<int>) =
        ValueTask<bool>(
            task {
                try
                    let! _ = pending
                    return true
                with
                | :? SocketException
                | :? ObjectDisposedException -> return false
            }
        )

    member _.Socket = socket

    interface IConnectionIo with
        member _.ReceiveAsync(buffer) =
            if draining () && socket.Available = 0 then
                ValueTask<int>(0)
            else
                try
                    let r = socket.ReceiveAsync(buffer, SocketFlags.None)
                    if r.IsCompletedSuccessfully then r else receiveSlow r
                with
                | :? SocketException
                | :? ObjectDisposedException -> ValueTask<int>(0)

        member _.SendAsync(data) =
            try
                let r = socket.SendAsync(data, SocketFlags.None)
                if r.IsCompletedSuccessfully then ValueTask<bool>(true) else sendSlow r
            with
            | :? SocketException
            | :? ObjectDisposedException -> ValueTask<bool>(false)

        member _.HasPendingInput =
            try
                socket.Available > 0
            with _ ->
                false

        member _.Close() =
            if Interlocked.Exchange(&closed, 1) = 0 then
                socket.Dispose()

[<Sealed>]
type internal SocketTransport() =
    let connections = ConcurrentDictionary<SocketConnection, unit>()
    let mutable listener: Socket = null

    [<VolatileField>]
    let mutable draining = false

    let acceptLoop (l: Socket) (serve: IConnectionIo -> unit) =
        task {
            let mutable go = true

            while go do
                try
                    let! s = l.AcceptAsync()
                    let c = SocketConnection(s, (fun () -> draining))
                    connections[c] <- ()
                    serve (c :> IConnectionIo)
                with _ ->
                    go <- false
        }
        |> ignore

    interface ITransport with
        member _.Start(l, serve) =
            listener <- l
            acceptLoop l serve

        member _.Drain() = draining <- true

        member _.Abort() =
            for c in connections.Keys do
                (c :> IConnectionIo).Close()

        member t.Dispose() = (t :> ITransport).Abort()
