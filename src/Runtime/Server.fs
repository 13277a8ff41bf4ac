namespace Apisix.Runner

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Apisix.Runner.Linux

/// Why the runner could not start: a result the host turns into an exit code and one line on stderr.
type StartError =
    /// The settings are unusable, one sentence per problem.
    | InvalidSettings of problems: string list
    /// Two registered plugins share a name, or one has none.
    | InvalidPlugins of problem: string
    /// A plugin folder could not be loaded: it is missing, an assembly or a dependency does not
    /// load, a plugin cannot be made, or the runner is a Native AOT build.
    | PluginFolderFailed of problem: string
    /// Another process serves the socket path.
    | SocketInUse of path: string
    /// The socket could not be created, bound or given its mode.
    | SocketFailed of path: string * reason: string

    /// One line for stderr and the log.
    member e.Describe() =
        match e with
        | InvalidSettings problems -> "invalid runner settings: " + String.Join("; ", problems)
        | InvalidPlugins problem
        | PluginFolderFailed problem -> problem
        | SocketInUse path -> $"another process is serving {path}; not taking it over"
        | SocketFailed(path, reason) -> $"cannot listen on {path}: {reason}"

/// The unix-socket server APISIX talks to: binds the socket, hands each connection to a session
/// through the transport, sweeps the conf cache, enforces every call's deadline (on its own tick thread), and
/// on stop answers what it has received before it removes the socket. When it opens, it adds to
/// `plugins` those of the folders `Runner:PluginFolders` lists, made with `services`.
[<Sealed>]
type RunnerServer(options: RunnerOptions, plugins: Plugin seq, loggers: ILoggerFactory, time: TimeProvider, services: IServiceProvider) =
    // Calls and connections log under `Apisix.Runner`; starting and stopping under
    // `Apisix.Runner.Lifetime`, which RunnerHost shows at Information while the rest stays at Warning.
    let logger = loggers.CreateLogger "Apisix.Runner"
    let lifetime = loggers.CreateLogger "Apisix.Runner.Lifetime"
    let cache = ConfCache(options.ConfLifetime, options.ConfCacheCapacity, time)
    let budget = MemoryBudget(options.MaxBufferedBytes, logger)
    let sessions = ConcurrentDictionary<IConnectionIo, struct (Session * Task)>()
    let mutable registry: IReadOnlyDictionary<string, Plugin> = Dictionary<string, Plugin>()
    let mutable transport: ITransport = Unchecked.defaultof<_>
    let mutable listener: Socket = null
    let mutable sweeper: ITimer = null
    let mutable ticker: IDisposable = null
    let mutable socketPath = ""
    let mutable observed: IDisposable = null

    /// Where a plugin comes from, in a message about two of them.
    let origin (source: PluginSource) =
        match source.Assembly with
        | null ->
            match Reflection.Assembly.GetEntryAssembly() with
            | null -> "registered by the runner itself"
            | entry -> $"registered by the runner itself ({entry.GetName().Name})"
        | file -> "in " + file

    let register (all: PluginSource seq) : Result<IReadOnlyDictionary<string, Plugin>, StartError> =
        let d = Dictionary<string, Plugin>(StringComparer.Ordinal)
        let sources = Dictionary<string, PluginSource>(StringComparer.Ordinal)

        let problem =
            all
            |> Seq.tryPick (fun s ->
                let p = s.Plugin

                if String.IsNullOrWhiteSpace p.Name then
                    match s.Assembly with
                    | null -> Some "a plugin has an empty name"
                    | file -> Some $"a plugin in {file} has an empty name"
                else
                    match sources.TryGetValue p.Name with
                    | true, first when isNull first.Assembly && isNull s.Assembly -> Some $"two plugins are named '{p.Name}'"
                    | true, first -> Some $"two plugins are named '{p.Name}': one {origin first}, one {origin s}"
                    | _ ->
                        d[p.Name] <- p
                        sources[p.Name] <- s
                        None)

        match problem with
        | Some why -> Error(InvalidPlugins why)
        | None -> Ok d

    /// Removes a socket file left by a runner that died; refuses to take over a live one.
    let clearStale (path: string) : Result<unit, StartError> =
        if not (File.Exists path) then
            Ok()
        else
            use probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)

            let live =
                try
                    probe.Connect(UnixDomainSocketEndPoint path)
                    true
                with :? SocketException ->
                    false

            if live then
                Error(SocketInUse path)
            else
                File.Delete path
                Ok()

    let bind (path: string) : Result<Socket, StartError> =
        let l = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)

        try
            l.Bind(UnixDomainSocketEndPoint path)
            File.SetUnixFileMode(path, options.UnixFileMode)
            let mode = File.GetUnixFileMode path

            if mode <> options.UnixFileMode then
                l.Dispose()
                Error(SocketFailed(path, $"it has mode {Convert.ToString(int mode, 8)}, not {options.SocketMode}"))
            else
                l.Listen 512
                Ok l
        with
        | :? SocketException
        | :? IOException
        | :? UnauthorizedAccessException as e ->
            l.Dispose()
            Error(SocketFailed(path, e.Message))

    let context () =
        { Cache = cache
          Plugins = registry
          Options = options
          Logger = logger
          Budget = budget }

    let serve (ctx: RunnerContext) (io: IConnectionIo) =
        let session = Session(io, ctx)
        // Known before it runs: a first call that never gives its thread back is still under the
        // deadline's tick (and named in the stall log).
        let ended = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
        sessions[io] <- struct (session, ended.Task)

        session
            .RunAsync()
            .ContinueWith(
                (fun (_: Task) ->
                    sessions.TryRemove io |> ignore
                    ended.SetResult()),
                TaskScheduler.Default
            )
        |> ignore

    let tick () =
        let now = Stopwatch.GetTimestamp()

        for KeyValue(_, struct (s, _)) in sessions do
            s.CheckDeadline now

        budget.TrimIfIdle now |> ignore

    /// What the call on a connection is doing, for the epoll transport's stall log line.
    let describe (io: IConnectionIo) =
        match sessions.TryGetValue io with
        | true, struct (s, _) -> s.Describe()
        | _ -> ""

    let startTransport () : ITransport =
        if options.Transport = "epoll" then
            let loops = if options.EventLoops > 0 then options.EventLoops else EpollSettings.DefaultLoops Environment.ProcessorCount

            new EpollTransport(
                { Loops = loops
                  StallThreshold = options.StallThreshold
                  Logger = logger
                  DescribeHolder = describe }
            )
        else
            new SocketTransport(logger)

    /// A server whose plugins are all in `plugins`; plugin classes of plugin folders get no services.
    new(options, plugins, loggers, time) = RunnerServer(options, plugins, loggers, time, RunnerServer.NoServices)

    static member val private NoServices =
        { new IServiceProvider with
            member _.GetService _ = null }

    /// The plugins by name.
    member _.Plugins = registry

    /// The prepared configurations.
    member _.Cache = cache

    /// Connections being served now.
    member _.ConnectionCount = sessions.Count

    /// Bytes held now against `Runner:MaxBufferedBytes`.
    member _.BufferedBytes = budget.InUse

    /// Frames and ExtraInfo replies waiting now for the memory budget.
    member _.WaitingForMemory = budget.Waiting

    /// Checks the settings and plugins, binds the socket (creating its directory, replacing a stale
    /// file, setting its mode) and starts serving. Opening twice does nothing more.
    member _.Open() : Result<unit, StartError> =
        if not (isNull listener) then
            Ok()
        else
            let opened =
                match options.Validate() with
                | _ :: _ as problems -> Error(InvalidSettings problems)
                | [] ->
                    PluginFolders.load options.PluginFolders services lifetime
                    |> Result.mapError PluginFolderFailed
                    |> Result.bind (fun loaded ->
                        register (Seq.append [ for p in plugins -> { Plugin = p; Assembly = null } ] loaded))
                    |> Result.bind (fun plugins ->
                        registry <- plugins
                        socketPath <- options.SocketPath

                        try
                            match Path.GetDirectoryName socketPath with
                            | null
                            | "" -> ()
                            | dir -> Directory.CreateDirectory dir |> ignore

                            clearStale socketPath |> Result.bind (fun () -> bind socketPath)
                        with
                        | :? IOException
                        | :? UnauthorizedAccessException as e -> Error(SocketFailed(socketPath, e.Message)))

            match opened with
            | Error e -> Error e
            | Ok l ->
                listener <- l
                let every = min (TimeSpan.FromSeconds 10.0) (options.ConfLifetime / 4.0)
                sweeper <- time.CreateTimer((fun _ -> cache.Sweep() |> ignore), null, every, every)
                let period = min (TimeSpan.FromMilliseconds 100.0) (options.CallTimeout / 10.0)
                ticker <- new Ticker(period, tick)
                observed <-
                    Telemetry.observe sessions (Func<int>(fun () -> sessions.Count)) (Func<int>(fun () -> cache.Count)) (Func<int64>(fun () -> budget.InUse))
                transport <- startTransport ()
                transport.Start(l, serve (context ()))

                Log.listening.Invoke(
                    lifetime,
                    socketPath,
                    options.SocketMode,
                    options.Transport,
                    String.Join(", ", registry.Keys),
                    null
                )

                Ok()

    /// Stops accepting, answers every call already received within the shutdown timeout, removes the socket.
    member _.StopAsync(_: CancellationToken) : Task =
        task {
            let l = Interlocked.Exchange(&listener, null)

            if not (isNull l) then
                transport.Drain()
                l.Dispose()

                try
                    File.Delete socketPath
                with :? IOException ->
                    ()

                let all = Task.WhenAll([ for KeyValue(_, struct (_, running)) in sessions -> running ])

                try
                    do! all.WaitAsync options.ShutdownTimeout
                with
                | :? TimeoutException ->
                    Log.drainTimedOut.Invoke(logger, sessions.Count, options.ShutdownTimeout, null)
                    transport.Abort()
                | ex -> Log.stopFailed.Invoke(logger, ex)

                // Frames still waiting for memory will not be read: their sessions end.
                budget.Close()
                sweeper.Dispose()
                ticker.Dispose()
                observed.Dispose()
                transport.Dispose()
                Log.stopped.Invoke(lifetime, socketPath, null)
        }

    interface IHostedService with
        member s.StartAsync _ =
            match s.Open() with
            | Ok() -> Task.CompletedTask
            | Error e -> Task.FromException(InvalidOperationException(e.Describe()))

        member s.StopAsync ct = s.StopAsync ct
