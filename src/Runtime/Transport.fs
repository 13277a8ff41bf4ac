namespace Apisix.Runner

open System
open System.Net.Sockets
open System.Threading.Tasks
open System.Threading.Tasks.Sources

/// A reusable completion for one pending operation at a time: awaiting it allocates nothing, and
/// continuations run on the thread that completes it (a transport's loop, say), inline.
[<Sealed>]
type internal Completion<'T>() =
    [<DefaultValue(false)>]
    val mutable private core: ManualResetValueTaskSourceCore<'T>

    member c.Reset() = c.core.Reset()
    member c.Pending = ValueTask<'T>(c, c.core.Version)
    member c.SetResult(value: 'T) = c.core.SetResult value

    interface IValueTaskSource<'T> with
        member c.GetResult token = c.core.GetResult token
        member c.GetStatus token = c.core.GetStatus token
        member c.OnCompleted(continuation, state, token, flags) = c.core.OnCompleted(continuation, state, token, flags)

/// What a transport gives one connection's session. A session uses it from one thread at a time
/// (but not always the same thread: after a plugin's await it may be a thread-pool thread).
type internal IConnectionIo =
    /// Receives into `buffer`. Completes with the byte count when data is there, 0 when the peer
    /// closed or the runner is draining and nothing is waiting to be read. Never throws for a closed
    /// peer (0). A transport should not read speculatively: wait for readiness.
    abstract ReceiveAsync: buffer: Memory<byte> -> ValueTask<int>
    /// Sends all of `data` (partial writes and back-pressure are the transport's business);
    /// false when the peer is gone. `data` is valid only until the returned task completes.
    abstract SendAsync: data: ReadOnlyMemory<byte> -> ValueTask<bool>
    /// Closes the connection now (idempotent).
    abstract Close: unit -> unit

/// Moves bytes between APISIX's connections and sessions; the server owns the listening socket.
type internal ITransport =
    inherit IDisposable
    /// Starts accepting on `listener` (bound, listening, mode set). For each accepted connection it
    /// calls `serve io` once; `serve` starts the session and returns at its first wait.
    abstract Start: listener: Socket * serve: (IConnectionIo -> unit) -> unit
    /// Stops accepting. From now on ReceiveAsync answers 0 on connections with nothing waiting.
    abstract Drain: unit -> unit
    /// Closes every connection now (after the shutdown timeout).
    abstract Abort: unit -> unit
