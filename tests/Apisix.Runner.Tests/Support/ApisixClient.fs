/// Plays APISIX against an in-process runner: a client speaking the protocol over the unix socket
/// with the project's codec, and a fixture that starts a RunnerServer on a fresh socket.
module Apisix.Runner.Tests.Support.ApisixClient

open System
open System.Buffers
open System.Collections.Concurrent
open System.Collections.Generic
open System.IO
open System.IO.Pipelines
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging
open Apisix.Runner

/// The longest any one exchange may take: a runner that does not answer fails the test instead of hanging it.
let patience = TimeSpan.FromSeconds 10.0

/// Compares with F# structural equality (arrays by content) and shows both values when they differ.
let same (expected: 'T) (actual: 'T) =
    if expected <> actual then
        failwithf "expected %A\nbut got %A" expected actual

/// Waits until `condition` holds, checking it every `interval`, for at most `timeout`; whether it
/// came to hold. The one polling loop: `eventually` here and ProcessProbe's `within` use it.
let poll (interval: TimeSpan) (timeout: TimeSpan) (condition: unit -> bool) : Task<bool> =
    task {
        let clock = System.Diagnostics.Stopwatch.StartNew()

        while not (condition ()) && clock.Elapsed < timeout do
            do! Task.Delay interval

        return condition ()
    }

/// Waits until `condition` holds, for at most `patience`; whether it came to hold.
let eventually (condition: unit -> bool) : Task<bool> =
    poll (TimeSpan.FromMilliseconds 20.0) patience condition

/// Answers every ExtraInfo request with "no value".
let unset (_: ExtraInfo.Info) : byte[] voption = ValueNone

/// A request as APISIX sends it for GET /orig from 127.0.0.1.
let httpRequest (token: uint32) (id: uint32) : HttpReqCall.Req =
    { Id = id
      SrcIp = [| 127uy; 0uy; 0uy; 1uy |]
      Method = Method.GET
      Path = "/orig"
      Args = [||]
      Headers = [| TextEntry.Set("host", "example.com") |]
      ConfToken = token }

/// One APISIX connection to the runner. Calls are made one at a time, as APISIX does.
[<Sealed>]
type Client(socketPath: string) =
    let socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
    do socket.Connect(UnixDomainSocketEndPoint socketPath)
    let reader = PipeReader.Create(new NetworkStream(socket, false))
    let builder = new FrameBuilder()
    let asked = List<ExtraInfo.Info>()

    /// The ExtraInfo requests the runner made during the last CallAsync, in order.
    member _.Asked = List.ofSeq asked

    member _.SendBytes(bytes: byte[]) = socket.Send bytes |> ignore

    member _.Send(message: ApisixMessage) =
        match Encode.apisixMessage builder message with
        | Ok frame -> socket.Send frame.Span |> ignore
        | Error e -> failwith (e.Describe())

    /// The next whole frame (type and body), or None once the runner has closed the connection.
    member _.ReadFrameAsync() : Task<(FrameType * byte[]) option> =
        task {
            use cts = new CancellationTokenSource(patience)
            let mutable frame = None
            let mutable reading = true

            while reading do
                let! r =
                    task {
                        try
                            let! r = reader.ReadAsync cts.Token
                            return ValueSome r
                        with
                        | :? OperationCanceledException -> return failwith $"no frame from the runner within {patience}"
                        // A reset is how a close looks when the runner had unread data from us.
                        | :? IOException
                        | :? SocketException -> return ValueNone
                    }

                match r with
                | ValueNone -> reading <- false
                | ValueSome r ->
                    match Frame.tryRead Frame.MaxBodyLength r.Buffer with
                    | Frame(frameType, body, rest) ->
                        frame <- Some(frameType, body.ToArray())
                        reader.AdvanceTo rest.Start
                        reading <- false
                    | TooLarge n -> failwith $"the runner announced a frame body of {n} bytes"
                    | Incomplete ->
                        reader.AdvanceTo(r.Buffer.Start, r.Buffer.End)
                        reading <- not r.IsCompleted

            return frame
        }

    /// Whether the runner has closed the connection (after any frames still to read: those fail the check).
    member c.IsClosedAsync() : Task<bool> =
        task {
            let! frame = c.ReadFrameAsync()
            return frame.IsNone
        }

    /// The next message from the runner; fails the test when the connection closed instead.
    member c.NextAsync() : Task<RunnerMessage> =
        task {
            match! c.ReadFrameAsync() with
            | None -> return failwith "the runner closed the connection"
            | Some(frameType, body) ->
                match Decode.runnerMessage frameType (ReadOnlySpan body) with
                | Ok message -> return message
                | Error e -> return failwith $"undecodable frame from the runner: {e.Describe()}"
        }

    /// Sends a call and answers its ExtraInfo requests with `answer` until the final answer comes.
    member c.CallAsync(message: ApisixMessage, answer: ExtraInfo.Info -> byte[] voption) : Task<RunnerMessage> =
        task {
            asked.Clear()
            c.Send message
            let mutable final = None

            while final.IsNone do
                match! c.NextAsync() with
                | ExtraInfoReq info ->
                    asked.Add info
                    c.Send(ExtraInfoResp { Result = answer info })
                | other -> final <- Some other

            return final.Value
        }

    /// A request-phase call answered from `answer`.
    member c.RequestAsync(request: HttpReqCall.Req, answer) = c.CallAsync(HttpReqCallReq request, answer)

    /// PrepareConf for plugins (name, JSON) in order; the raw answer.
    member c.PrepareRawAsync(conf: (string * string) list, key: string) : Task<RunnerMessage> =
        task {
            c.Send(PrepareConfReq { Conf = [| for n, v in conf -> TextEntry.Set(n, v) |]; Key = key })
            return! c.NextAsync()
        }

    /// PrepareConf that must succeed; its token.
    member c.PrepareAsync(conf, key) : Task<uint32> =
        task {
            match! c.PrepareRawAsync(conf, key) with
            | PrepareConfResp r -> return r.ConfToken
            | other -> return failwithf "PrepareConf was answered %A" other
        }

    interface IDisposable with
        member _.Dispose() =
            reader.Complete()
            socket.Dispose()
            builder.Dispose()

/// One log call as the runner made it.
type LogEntry =
    { Level: LogLevel
      Message: string
      Exception: exn }

/// Keeps what the runner logs at Information and above, so tests can check what operators would read.
[<Sealed>]
type CapturingLogger() =
    let entries = ConcurrentQueue<LogEntry>()
    member _.Entries = List.ofSeq entries

    /// Whether some entry at `level` or above mentions every one of `words`.
    member _.Has(level: LogLevel, words: string list) =
        entries
        |> Seq.exists (fun e -> e.Level >= level && words |> List.forall (fun w -> e.Message.Contains(w, StringComparison.Ordinal)))

    interface ILogger<RunnerServer> with
        member _.Log(level, _, state, ex, formatter) =
            entries.Enqueue
                { Level = level
                  Message = formatter.Invoke(state, ex)
                  Exception = ex }

        member _.IsEnabled level = level >= LogLevel.Information
        member _.BeginScope _ = null

    /// Every logger the runner makes writes here.
    interface ILoggerFactory with
        member l.CreateLogger _ = l :> ILogger
        member _.AddProvider _ = ()
        member _.Dispose() = ()

/// A RunnerServer on a socket of its own, with these plugins; `configure` adjusts the options
/// before it starts. Disposing stops it (answering calls in flight) and removes its directory.
[<Sealed>]
type TestServer(plugins: Plugin list, configure: RunnerOptions -> unit, time: TimeProvider) =
    // Short: a unix socket path must fit in 108 bytes.
    let dir = Path.Combine(Path.GetTempPath(), "apisix-rt", Guid.NewGuid().ToString("N").Substring(0, 12))
    let options = RunnerOptions(ListenAddress = "unix:" + Path.Combine(dir, "runner.sock"))
    do
        if not (isNull TransportUnderTest.name) then options.Transport <- TransportUnderTest.name
        configure options

    let log = new CapturingLogger()
    let server = RunnerServer(options, plugins, log, time)

    do
        match server.Open() with
        | Ok() -> ()
        | Error e -> failwith (e.Describe())

    new(plugins) = new TestServer(plugins, ignore, TimeProvider.System)

    member _.Server = server
    member _.Log = log
    member _.SocketPath = options.SocketPath
    member _.Connect() = new Client(options.SocketPath)
    member _.StopAsync() = server.StopAsync CancellationToken.None

    interface IDisposable with
        member _.Dispose() =
            // How stopping goes is what the lifecycle tests check; failing here would hide the test's own result.
            try
                server.StopAsync(CancellationToken.None).Wait patience |> ignore
            with _ ->
                ()

            try
                Directory.Delete(dir, true)
            with :? IOException ->
                ()
