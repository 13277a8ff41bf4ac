/// Apisix.Runner.Transport.Host <bench|test> [--transport epoll|socket] [--loops N] [--stall-ms N]
///                                          [--fd-headroom N] [--precomputed]
/// Serves APISIX_LISTEN_ADDRESS with the bench session (loadgen) or the test session, prints
/// "ready" once it accepts, answers commands on stdin (`count`, `handoffs`, `drain`, `open` (the
/// gate of Gate frames), `limit N` (N more descriptors than open now), `nolimit`),
/// and on SIGTERM drains like the runner: stop accepting, answer what arrived, exit within 1 s.
module Apisix.Runner.Transport.Host.Program

open System
open System.IO
open System.Net.Sockets
open System.Runtime.InteropServices
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Apisix.Runner
open Apisix.Runner.Linux

/// Log lines to stderr, without the logging packages' configuration binding (Native AOT).
[<Sealed>]
type private StderrLogger() =
    interface ILogger with
        member _.BeginScope _ = null
        member _.IsEnabled level = level >= LogLevel.Information

        member _.Log(level, eventId, state, ex, formatter) =
            let text = formatter.Invoke(state, ex)
            let ex = if isNull ex then "" else " " + ex.ToString()
            Console.Error.WriteLine $"{level} {eventId.Name}: {text}{ex}"

let private option (argv: string[]) (name: string) (fallback: string) =
    match Array.tryFindIndex ((=) name) argv with
    | Some i when i + 1 < argv.Length -> argv[i + 1]
    | _ -> fallback

let private openFds () = Directory.GetFiles("/proc/self/fd").Length

[<EntryPoint>]
let main argv =
    let mode = if argv.Length > 0 then argv[0] else "bench"
    let transportName = option argv "--transport" "epoll"
    let loops = int (option argv "--loops" (string (EpollSettings.DefaultLoops Environment.ProcessorCount)))
    let stallMs = float (option argv "--stall-ms" "20")
    let headroom = int (option argv "--fd-headroom" "0")

    let address =
        match Environment.GetEnvironmentVariable "APISIX_LISTEN_ADDRESS" with
        | null
        | "" -> "unix:/tmp/transport-host.sock"
        | a -> a

    let path = if address.StartsWith "unix:" then address.Substring 5 else address

    if File.Exists path then
        File.Delete path

    // Opened now: opening it lazily needs a descriptor, which the fd-limit tests take away.
    Console.Error.Flush()
    let logger = StderrLogger() :> ILogger
    let listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
    listener.Bind(UnixDomainSocketEndPoint path)
    listener.Listen 512

    let epoll =
        if transportName = "epoll" then
            Some(
                new EpollTransport(
                    { EpollSettings.Default logger with
                        Loops = loops
                        StallThreshold = TimeSpan.FromMilliseconds stallMs }
                )
            )
        else
            None

    let transport: ITransport =
        match epoll with
        | Some t -> t :> ITransport
        | None -> new SocketTransport(logger) :> ITransport

    let mutable live = 0
    let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)

    let session: IConnectionIo -> Task =
        match mode with
        | "test" -> Sessions.test (fun () -> gate.Task)
        | _ -> Sessions.benchWith (Array.contains "--precomputed" argv)

    let serve (io: IConnectionIo) =
        Interlocked.Increment(&live) |> ignore

        (session io).ContinueWith(fun (_: Task) -> Interlocked.Decrement(&live) |> ignore)
        |> ignore

    transport.Start(listener, serve)

    if headroom > 0 then
        Native.setFileLimit (int64 (openFds () + headroom)) |> ignore

    let stop = new ManualResetEventSlim(false)

    let onSignal (ctx: PosixSignalContext) =
        ctx.Cancel <- true
        stop.Set()

    use _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, onSignal)
    use _int = PosixSignalRegistration.Create(PosixSignal.SIGINT, onSignal)

    let commands =
        Thread(
            (fun () ->
                let mutable line = Console.ReadLine()

                while not (isNull line) do
                    match line.Split(' ', StringSplitOptions.RemoveEmptyEntries) with
                    | [| "count" |] ->
                        let open' = epoll |> Option.map (fun t -> t.ConnectionCount) |> Option.defaultValue -1
                        Console.WriteLine $"count {Volatile.Read &live} {open'}"
                    | [| "handoffs" |] ->
                        let h = epoll |> Option.map (fun t -> t.Handoffs) |> Option.defaultValue 0
                        Console.WriteLine $"handoffs {h}"
                    | [| "drain" |] ->
                        transport.Drain()
                        Console.WriteLine "drained"
                    | [| "open" |] ->
                        gate.TrySetResult() |> ignore
                        Console.WriteLine "opened"
                    | [| "limit"; n |] ->
                        let err = Native.setFileLimit (int64 (openFds () + int n))
                        Console.WriteLine $"limit {err}"
                    | [| "nolimit" |] ->
                        // Without opening anything: the process may be at its limit.
                        let struct (_, hard) = Native.fileLimit ()
                        let err = Native.setFileLimit hard
                        Console.WriteLine $"limit {err}"
                    | _ -> Console.WriteLine "?"

                    line <- Console.ReadLine()),
            IsBackground = true
        )

    commands.Start()
    Console.WriteLine $"ready {transportName} loops {loops}"
    stop.Wait()
    transport.Drain()
    let until = DateTime.UtcNow.AddMilliseconds 800.0

    while Volatile.Read &live > 0 && DateTime.UtcNow < until do
        Thread.Sleep 1

    transport.Dispose()
    listener.Dispose()

    try
        File.Delete path
    with _ ->
        ()

    0
