/// An in-process epoll transport serving a session, blocking clients that speak frames, and a
/// logger that keeps what it is told.
module internal Apisix.Runner.Transport.Tests.Support

open System
open System.Collections.Concurrent
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Apisix.Runner
open Apisix.Runner.Linux
open Apisix.Runner.Transport.Host

/// Keeps every log line with its event name.
[<Sealed>]
type Captured() =
    let lines = ConcurrentQueue<string * string>()
    member _.Lines = List.ofSeq lines
    member _.Named(name: string) = lines |> Seq.filter (fun (n, _) -> n = name) |> Seq.map snd |> List.ofSeq

    interface ILogger with
        member _.BeginScope _ = null
        member _.IsEnabled _ = true
        member _.Log(_, eventId, state, ex, formatter) = lines.Enqueue(eventId.Name, formatter.Invoke(state, ex))

/// Waits until `condition` holds, for at most `ms`; whether it did.
let eventually (ms: int) (condition: unit -> bool) =
    let clock = Stopwatch.StartNew()
    let mutable ok = condition ()

    while not ok && clock.ElapsedMilliseconds < int64 ms do
        Thread.Sleep 5
        ok <- condition ()

    ok

let socketPath () = Path.Combine(Path.GetTempPath(), $"tt-{Guid.NewGuid():N}.sock")

/// A client socket connected to `path` (blocking, with a 10 s receive timeout).
let connect (path: string) =
    let s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
    s.Connect(UnixDomainSocketEndPoint path)
    s.ReceiveTimeout <- 10000
    s

/// An epoll transport on a fresh socket path, serving `session` for each connection.
[<Sealed>]
type Served(session: IConnectionIo -> Task, ?loops: int, ?stallMs: float, ?describe: IConnectionIo -> string) =
    let path = socketPath ()
    let log = Captured()
    let listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
    let sessions = ConcurrentQueue<Task>()

    let transport =
        new EpollTransport(
            { EpollSettings.Default(log) with
                Loops = defaultArg loops 1
                StallThreshold = TimeSpan.FromMilliseconds(defaultArg stallMs 20.0)
                DescribeHolder = defaultArg describe (fun _ -> "") }
        )

    do
        listener.Bind(UnixDomainSocketEndPoint path)
        listener.Listen 512
        transport.Start(listener, fun io -> sessions.Enqueue(session io))

    member _.Path = path
    member _.Transport = transport
    member _.Log = log
    member _.Sessions = List.ofSeq sessions

    /// Sessions that have not ended.
    member _.Live = sessions |> Seq.filter (fun t -> not t.IsCompleted) |> Seq.length

    /// A connected client socket (blocking, with a 10 s receive timeout).
    member _.Connect() = connect path

    interface IDisposable with
        member _.Dispose() =
            transport.Dispose()
            listener.Dispose()

            try
                File.Delete path
            with _ ->
                ()

/// Served with the test session (Sessions.test) and a gate for Gate frames.
let servedTest (gate: Task) = new Served(Sessions.test (fun () -> gate))

/// Reads exactly `n` bytes; false at the end of the stream.
let readExactly (s: Socket) (buffer: byte[]) (n: int) =
    let mutable got = 0
    let mutable ok = true

    while ok && got < n do
        let k = s.Receive(buffer, got, n - got, SocketFlags.None)
        if k = 0 then ok <- false else got <- got + k

    ok

/// Reads one frame: its type and body; None at the end of the stream.
let readFrame (s: Socket) : (byte * byte[]) option =
    let header = Array.zeroCreate 4

    if not (readExactly s header 4) then
        None
    else
        let length = (int header[1] <<< 16) ||| (int header[2] <<< 8) ||| int header[3]
        let body = Array.zeroCreate length
        if readExactly s body length then Some(header[0], body) else None

/// True when the peer has closed: a read returns 0 (or the connection was reset).
let closedByPeer (s: Socket) =
    try
        s.Receive(Array.zeroCreate<byte> 1) = 0
    with :? SocketException ->
        true

/// An echo frame with `n` bytes of body derived from `seed`.
let echoFrame (seed: int) (n: int) =
    Sessions.frame Sessions.Kind.Echo (ReadOnlySpan(Array.init n (fun i -> byte (seed + i))))

/// The path of the host program (the test project references it, so it is built beside the tests).
let hostDll = Path.Combine(AppContext.BaseDirectory, "Apisix.Runner.Transport.Host.dll")

/// How to start the host: TRANSPORT_HOST names a native (AOT) build of it, else `dotnet` runs the
/// one built beside the tests.
let hostCommand (args: string) =
    match Environment.GetEnvironmentVariable "TRANSPORT_HOST" with
    | null
    | "" -> "dotnet", $"{hostDll} {args}"
    | native -> native, args

/// The host as a child process serving `mode` on a fresh socket, once it said "ready".
[<Sealed>]
type Host(mode: string, extra: string) =
    let path = socketPath ()
    let errors = ConcurrentQueue<string>()
    let lines = new BlockingCollection<string>()

    let p =
        let file, args = hostCommand $"{mode} {extra}"
        let psi = ProcessStartInfo(file, args)
        psi.RedirectStandardInput <- true
        psi.RedirectStandardOutput <- true
        psi.RedirectStandardError <- true
        psi.UseShellExecute <- false
        psi.Environment["APISIX_LISTEN_ADDRESS"] <- "unix:" + path
        let p = Process.Start psi
        p.OutputDataReceived.Add(fun e -> if not (isNull e.Data) then lines.Add e.Data)
        p.ErrorDataReceived.Add(fun e -> if not (isNull e.Data) then errors.Enqueue e.Data)
        p.BeginOutputReadLine()
        p.BeginErrorReadLine()
        p

    do
        let mutable line = ""

        if not (lines.TryTake(&line, 20000)) || not (line.StartsWith "ready") then
            failwith $"the host did not start: {String.Join('\n', errors)}"

    member _.Path = path
    member _.Process = p
    member _.Errors = List.ofSeq errors

    /// Sends a command and returns the host's one-line answer.
    member _.Ask(command: string) =
        p.StandardInput.WriteLine command
        p.StandardInput.Flush()
        let mutable line = ""
        if lines.TryTake(&line, 10000) then line else failwith $"no answer to {command}"

    /// Resident memory of the host, kB.
    member _.RssKb =
        File.ReadAllLines $"/proc/{p.Id}/status"
        |> Array.find (fun l -> l.StartsWith "VmRSS:")
        |> fun l -> int64 (l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1])

    member _.Connect() = connect path

    interface IDisposable with
        member _.Dispose() =
            if not p.HasExited then
                p.Kill()
                p.WaitForExit 5000 |> ignore

            p.Dispose()

            try
                File.Delete path
            with _ ->
                ()
