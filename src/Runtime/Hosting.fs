namespace Apisix.Runner

open System
open System.Globalization
open System.IO
open System.Runtime.CompilerServices
open System.Runtime.InteropServices
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Configuration
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.DependencyInjection.Extensions
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging
open Microsoft.Extensions.Options

/// Reads RunnerOptions from configuration by hand: no reflection, so it survives trimming and
/// Native AOT. APISIX's two environment variables, then the `Runner` section.
module RunnerConfiguration =
    let private timeSpan (text: string) =
        match TimeSpan.TryParse(text, CultureInfo.InvariantCulture) with
        | true, v -> ValueSome v
        | _ -> ValueNone

    let private seconds (text: string) =
        match Double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture) with
        | true, v when v > 0.0 && v < 1e9 -> ValueSome(TimeSpan.FromSeconds v)
        | _ -> ValueNone

    let private bool' (text: string) =
        match Boolean.TryParse text with
        | true, v -> ValueSome v
        | _ -> ValueNone

    let private int' (text: string) =
        match Int32.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture) with
        | true, v -> ValueSome v
        | _ -> ValueNone

    let private int64' (text: string) =
        match Int64.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture) with
        | true, v -> ValueSome v
        | _ -> ValueNone

    /// Each setting of the `Runner` section: its key, and how to read it into the options.
    let private settings: (string * (string -> RunnerOptions -> bool)) list =
        let setting key parse (set: RunnerOptions -> 'T -> unit) =
            key,
            fun (text: string) (o: RunnerOptions) ->
                match parse text with
                | ValueSome v ->
                    set o v
                    true
                | ValueNone -> false

        [ setting "SocketMode" ValueSome (fun o v -> o.SocketMode <- v)
          setting "CallTimeout" timeSpan (fun o v -> o.CallTimeout <- v)
          setting "MaxFrameBytes" int' (fun o v -> o.MaxFrameBytes <- v)
          setting "MaxBufferedBytes" int64' (fun o v -> o.MaxBufferedBytes <- v)
          setting "ConfCacheCapacity" int' (fun o v -> o.ConfCacheCapacity <- v)
          setting "ShutdownTimeout" timeSpan (fun o v -> o.ShutdownTimeout <- v)
          setting "InlineCompletions" bool' (fun o v -> o.InlineCompletions <- v)
          setting "Transport" ValueSome (fun o v -> o.Transport <- v.ToLowerInvariant())
          setting "EventLoops" int' (fun o v -> o.EventLoops <- v)
          setting "StallThreshold" timeSpan (fun o v -> o.StallThreshold <- v) ]

    /// `Runner:PluginFolders`, a list rather than one value: read by `pluginFolders`.
    [<Literal>]
    let private PluginFolders = "PluginFolders"

    /// The folders `Runner:PluginFolders` lists: the paths of its own value, split on the platform's
    /// path separator (`Runner__PluginFolders=/a:/b`), then its items in order
    /// (`Runner:PluginFolders:0`, `Runner:PluginFolders:1`, or a JSON array).
    let private pluginFolders (section: IConfigurationSection) : string list =
        [ match section.Value with
          | null -> ()
          | text -> yield! text.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)
          for item in section.GetChildren() do
              if not (String.IsNullOrWhiteSpace item.Value) then
                  item.Value.Trim() ]

    /// The keys of the `Runner` section that no setting reads: misspellings, usually.
    let unknownKeys (configuration: IConfiguration) : string list =
        let known (key: string) =
            String.Equals(key, PluginFolders, StringComparison.OrdinalIgnoreCase)
            || settings |> List.exists (fun (setting, _) -> String.Equals(setting, key, StringComparison.OrdinalIgnoreCase))

        [ for child in configuration.GetSection("Runner").GetChildren() do
              if not (known child.Key) then
                  "Runner:" + child.Key ]

    /// Applies APISIX's two environment variables and the `Runner` section to `options`;
    /// returns a problem for every value present but unreadable.
    let bind (configuration: IConfiguration) (options: RunnerOptions) : string list =
        let read (key: string) (text: string) (apply: string -> bool) =
            if String.IsNullOrWhiteSpace text || apply (text.Trim()) then
                []
            else
                [ $"{key} has an unreadable value '{text}'" ]

        let section = configuration.GetSection "Runner"

        match pluginFolders (section.GetSection PluginFolders) with
        | [] -> ()
        | folders -> options.PluginFolders <- ResizeArray folders

        [ yield!
              read "APISIX_LISTEN_ADDRESS" configuration["APISIX_LISTEN_ADDRESS"] (fun v ->
                  options.ListenAddress <- v
                  true)
          yield!
              read "APISIX_CONF_EXPIRE_TIME" configuration["APISIX_CONF_EXPIRE_TIME"] (fun v ->
                  match seconds v with
                  | ValueSome t ->
                      options.ConfExpireTime <- t
                      true
                  | ValueNone -> false)
          for key, apply in settings do
              yield! read ("Runner:" + key) section[key] (fun v -> apply v options) ]

/// Binds RunnerOptions from configuration and checks them: the options pattern's configure and
/// validate steps, so that `IOptions<RunnerOptions>` and `RunnerOptions` are the same checked instance.
[<Sealed>]
type internal RunnerOptionsSetup(configuration: IConfiguration) =
    let mutable problems: string list = []

    interface IConfigureOptions<RunnerOptions> with
        member _.Configure options = problems <- RunnerConfiguration.bind configuration options

    interface IValidateOptions<RunnerOptions> with
        member _.Validate(_, options) =
            match problems @ options.Validate() with
            | [] -> ValidateOptionsResult.Success
            | all -> ValidateOptionsResult.Fail all

/// Registration of the runner in a .NET host.
[<Extension; AbstractClass; Sealed>]
type RunnerServiceCollectionExtensions =
    /// Registers the runner server as a hosted service, with RunnerOptions bound from
    /// `configuration`, then adjusted by `configure`, and validated when the host starts.
    [<Extension>]
    static member AddApisixRunner(services: IServiceCollection, configuration: IConfiguration, configure: Action<RunnerOptions>) =
        let setup = RunnerOptionsSetup configuration
        services.AddSingleton<IConfigureOptions<RunnerOptions>> setup |> ignore

        if not (isNull configure) then
            services.Configure<RunnerOptions> configure |> ignore

        services.AddSingleton<IValidateOptions<RunnerOptions>> setup |> ignore
        services.AddOptions<RunnerOptions>().ValidateOnStart() |> ignore
        services.AddSingleton<RunnerOptions>(fun sp -> sp.GetRequiredService<IOptions<RunnerOptions>>().Value) |> ignore
        services.TryAddSingleton<TimeProvider> TimeProvider.System
        services.AddSingleton<RunnerServer>() |> ignore
        services.AddHostedService(fun sp -> sp.GetRequiredService<RunnerServer>()) |> ignore

        // The host's own stop timeout follows the runner's drain. Read from a bind of its own:
        // the host resolves it while it is built, before RunAsync validates the runner's settings.
        services.AddOptions<HostOptions>().Configure(fun (h: HostOptions) ->
            let runner = RunnerOptions()
            RunnerConfiguration.bind configuration runner |> ignore
            if not (isNull configure) then configure.Invoke runner
            h.ShutdownTimeout <- runner.ShutdownTimeout + TimeSpan.FromMilliseconds 150.0)
        |> ignore

        services

    [<Extension>]
    static member AddApisixRunner(services: IServiceCollection, configuration: IConfiguration) =
        RunnerServiceCollectionExtensions.AddApisixRunner(services, configuration, null)

    /// Registers a plugin.
    [<Extension>]
    static member AddPlugin(services: IServiceCollection, plugin: Plugin) = services.AddSingleton<Plugin> plugin

    /// Registers a plugin made from the runner's services when the host starts, for plugins whose
    /// filters need services (loggers, options, clients): `factory` runs once, with the built container.
    [<Extension>]
    static member AddPlugin(services: IServiceCollection, factory: Func<IServiceProvider, Plugin>) =
        if isNull factory then nullArg (nameof factory)
        services.AddSingleton<Plugin> factory

/// Starting a runner the way APISIX expects: quiet logging, settings from the environment, and
/// start-up failures as an exit code with one line on stderr.
[<AbstractClass; Sealed>]
type RunnerHost =
    static let configProblem = obj ()

    /// A host builder with configuration from appsettings.json beside the executable, the file
    /// named by APISIX_RUNNER_CONFIG (if set; it must exist and be JSON), the environment and
    /// `args`, and console logging, one line per message, at Warning unless `Logging:LogLevel`
    /// says otherwise (APISIX copies the runner's output into its error log, so the runner says
    /// little: one line when it listens and one when it stops, under `Apisix.Runner.Lifetime`,
    /// nothing per call). Plugins are added to its services; the runner itself is registered by `RunAsync`.
    static member CreateBuilder(args: string[]) : HostApplicationBuilder =
        let settings = HostApplicationBuilderSettings(Args = args, ContentRootPath = AppContext.BaseDirectory)
        let builder = Host.CreateApplicationBuilder settings

        match Environment.GetEnvironmentVariable "APISIX_RUNNER_CONFIG" with
        | null
        | "" -> ()
        | path ->
            try
                builder.Configuration.AddJsonFile(path, optional = false, reloadOnChange = false) |> ignore
                // Environment and command line still win over the file, as in the default order.
                builder.Configuration.AddEnvironmentVariables().AddCommandLine args |> ignore
            with ex ->
                // A runner started with a broken configuration must not start half-configured: RunAsync refuses.
                (builder :> IHostApplicationBuilder).Properties[configProblem] <- $"cannot read APISIX_RUNNER_CONFIG file {path}: {ex.Message}"

        builder.Logging
            .SetMinimumLevel(LogLevel.Warning)
            .AddFilter("Apisix.Runner.Lifetime", LogLevel.Information)
            .AddSimpleConsole(fun o -> o.SingleLine <- true)
        |> ignore

        builder

    /// Registers the runner, runs until SIGTERM or SIGINT, and returns the process exit code:
    /// 0 after a clean stop, 1 when the runner could not start (the reason goes to stderr).
    static member RunAsync(builder: HostApplicationBuilder, configure: Action<RunnerOptions>) : Task<int> =
        let fail (reason: string) =
            Console.Error.WriteLine $"apisix runner: {reason}"
            Task.FromResult 1

        match (builder :> IHostApplicationBuilder).Properties.TryGetValue configProblem with
        | true, problem -> fail (string problem)
        | _ ->
            builder.Services.AddApisixRunner(builder.Configuration, configure) |> ignore
            let host = builder.Build()

            let services = host.Services

            let options =
                try
                    Ok(services.GetRequiredService<IOptions<RunnerOptions>>().Value)
                with :? OptionsValidationException as e ->
                    Error("invalid runner settings: " + String.Join("; ", e.Failures))

            // The host handles SIGTERM only once it runs, and the socket is bound before that: a
            // signal in between must stop the runner the same way, draining, not kill it.
            let stopping = new CancellationTokenSource()

            let early =
                [ for signal in [ PosixSignal.SIGTERM; PosixSignal.SIGINT ] ->
                      PosixSignalRegistration.Create(
                          signal,
                          fun context ->
                              context.Cancel <- true
                              stopping.Cancel()
                      ) ]

            let release () =
                for registration in early do
                    registration.Dispose()

                stopping.Dispose()

            let opened =
                options
                |> Result.bind (fun o ->
                    // .NET reads this once, when the first socket is made: before the server binds.
                    if o.InlineCompletions then
                        Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1")

                    services.GetRequiredService<RunnerServer>().Open() |> Result.mapError (fun e -> e.Describe()))

            match opened with
            | Error reason ->
                release ()
                host.Dispose()
                fail reason
            | Ok() ->
                let logger = services.GetRequiredService<ILoggerFactory>().CreateLogger "Apisix.Runner"

                for key in RunnerConfiguration.unknownKeys builder.Configuration do
                    Log.unknownSetting.Invoke(logger, key, null)

                let server = services.GetRequiredService<RunnerServer>()

                task {
                    try
                        try
                            do! host.RunAsync stopping.Token
                        with :? OperationCanceledException when stopping.IsCancellationRequested ->
                            // Stopped before the host had started: drain the server it never ran.
                            do! server.StopAsync CancellationToken.None

                        return 0
                    finally
                        release ()
                        host.Dispose()
                }

    static member RunAsync(builder: HostApplicationBuilder) = RunnerHost.RunAsync(builder, null)
