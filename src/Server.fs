namespace Apisix.Runner

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.IO
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging

/// The unix-socket server APISIX talks to: accepts connections, serves each on its own, sweeps
/// the conf cache, and on stop answers what it has received before it removes the socket.
[<Sealed>]
type RunnerServer(options: RunnerOptions, plugins: Plugin seq, logger: ILogger<RunnerServer>, time: TimeProvider) =
    let registry =
        let d = Dictionary<string, Plugin>(StringComparer.Ordinal)

        for p in plugins do
            if String.IsNullOrWhiteSpace p.Name then
                invalidArg (nameof plugins) "a plugin has an empty name"

            if d.ContainsKey p.Name then
                invalidArg (nameof plugins) $"two plugins are named '{p.Name}'"

            d[p.Name] <- p

        d

    let cache = ConfCache(options.ConfLifetime, options.ConfCacheCapacity, time)

    let context =
        { Cache = cache
          Plugins = registry
          Options = options
          Logger = logger }

    let connections = ConcurrentDictionary<Connection, Task>()
    let mutable listener: Socket = null
    let mutable accepting: Task = Task.CompletedTask
    let mutable sweeper: ITimer = null
    let mutable socketPath = ""

    /// Removes a socket file left by a runner that died; refuses to take over a live one.
    let clearStale (path: string) =
        if File.Exists path then
            use probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)

            let live =
                try
                    probe.Connect(UnixDomainSocketEndPoint path)
                    true
                with :? SocketException ->
                    false

            if live then
                raise (InvalidOperationException $"another process is serving {path}; not taking it over")

            File.Delete path

    let serve (socket: Socket) =
        let connection = Connection(socket, context)
        let running = connection.RunAsync()
        connections[connection] <- running
        running.ContinueWith((fun (_: Task) -> connections.TryRemove connection |> ignore), TaskScheduler.Default) |> ignore

    let acceptLoop (l: Socket) : Task =
        task {
            let mutable go = true

            while go do
                try
                    let! s = l.AcceptAsync()
                    serve s
                with
                | :? ObjectDisposedException -> go <- false
                | :? SocketException as e when e.SocketErrorCode = SocketError.OperationAborted -> go <- false
                | :? SocketException as e -> logger.LogWarning(e, "Accepting a connection failed")
        }

    /// The plugins by name.
    member _.Plugins: IReadOnlyDictionary<string, Plugin> = registry

    /// The prepared configurations.
    member _.Cache = cache

    /// Connections being served now.
    member _.ConnectionCount = connections.Count

    /// Binds the socket (creating its directory, replacing a stale file, setting its mode) and starts serving.
    member _.StartAsync(_: CancellationToken) : Task =
        match options.Validate() with
        | problem :: _ -> raise (InvalidOperationException $"invalid runner settings: {problem}")
        | [] ->
            socketPath <- options.SocketPath
            let dir = Path.GetDirectoryName socketPath

            if not (String.IsNullOrEmpty dir) then
                Directory.CreateDirectory dir |> ignore

            clearStale socketPath
            let l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            l.Bind(UnixDomainSocketEndPoint socketPath)
            File.SetUnixFileMode(socketPath, options.UnixFileMode)
            let mode = File.GetUnixFileMode socketPath

            if mode <> options.UnixFileMode then
                raise (InvalidOperationException $"socket {socketPath} has mode {Convert.ToString(int mode, 8)}, not {options.SocketMode}")

            l.Listen 512
            listener <- l
            let every = min (TimeSpan.FromSeconds 10.0) (options.ConfLifetime / 4.0)
            sweeper <- time.CreateTimer((fun _ -> cache.Sweep() |> ignore), null, every, every)
            accepting <- acceptLoop l
            logger.LogInformation("Listening on {Socket} with plugins {Plugins}", socketPath, String.Join(", ", registry.Keys))
            Task.CompletedTask

    /// Stops accepting, answers every call already received within the shutdown timeout, removes the socket.
    member _.StopAsync(_: CancellationToken) : Task =
        task {
            if not (isNull listener) then
                listener.Dispose()
                listener <- null

                try
                    File.Delete socketPath
                with :? IOException ->
                    ()

                do! accepting

                for c in connections.Keys do
                    c.Drain()

                let all = Task.WhenAll(connections.Values)

                try
                    do! all.WaitAsync options.ShutdownTimeout
                with
                | :? TimeoutException ->
                    logger.LogWarning("{Count} connections still busy after {Timeout}; closing them", connections.Count, options.ShutdownTimeout)

                    for c in connections.Keys do
                        c.Abort()
                | ex -> logger.LogError(ex, "A connection failed while stopping")

                if not (isNull sweeper) then
                    sweeper.Dispose()
        }

    interface IHostedService with
        member s.StartAsync ct = s.StartAsync ct
        member s.StopAsync ct = s.StopAsync ct
