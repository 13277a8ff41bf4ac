namespace Apisix.Runner

open System
open System.Globalization
open System.Runtime.CompilerServices
open System.Threading.Tasks
open Microsoft.Extensions.Configuration
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.DependencyInjection.Extensions
open Microsoft.Extensions.Hosting
open Microsoft.Extensions.Logging

/// Reads RunnerOptions from configuration by hand (no reflection, so it survives trimming and AOT).
module RunnerConfiguration =
    let private timeSpan (text: string) =
        match TimeSpan.TryParse(text, CultureInfo.InvariantCulture) with
        | true, v -> ValueSome v
        | _ -> ValueNone

    /// Applies APISIX's two environment variables and the `Runner` section to `options`;
    /// returns a problem for every value present but unreadable.
    let bind (configuration: IConfiguration) (options: RunnerOptions) : string list =
        let section = configuration.GetSection "Runner"

        let read (key: string) (text: string) (parse: string -> 'T voption) (set: 'T -> unit) =
            if String.IsNullOrWhiteSpace text then
                []
            else
                match parse (text.Trim()) with
                | ValueSome v ->
                    set v
                    []
                | ValueNone -> [ $"{key} has an unreadable value '{text}'" ]

        let bool' (s: string) =
            match Boolean.TryParse s with
            | true, v -> ValueSome v
            | _ -> ValueNone

        let int' (s: string) =
            match Int32.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture) with
            | true, v -> ValueSome v
            | _ -> ValueNone

        [ yield! read "APISIX_LISTEN_ADDRESS" configuration["APISIX_LISTEN_ADDRESS"] ValueSome (fun v -> options.ListenAddress <- v)
          yield! read "APISIX_CONF_EXPIRE_TIME" configuration["APISIX_CONF_EXPIRE_TIME"] Parse.seconds (fun v -> options.ConfExpireTime <- v)
          yield! read "Runner:SocketMode" section["SocketMode"] ValueSome (fun v -> options.SocketMode <- v)
          yield! read "Runner:CallTimeout" section["CallTimeout"] timeSpan (fun v -> options.CallTimeout <- v)
          yield! read "Runner:MaxFrameBytes" section["MaxFrameBytes"] int' (fun v -> options.MaxFrameBytes <- v)
          yield! read "Runner:ConfCacheCapacity" section["ConfCacheCapacity"] int' (fun v -> options.ConfCacheCapacity <- v)
          yield! read "Runner:ShutdownTimeout" section["ShutdownTimeout"] timeSpan (fun v -> options.ShutdownTimeout <- v)
          yield! read "Runner:InlineCompletions" section["InlineCompletions"] bool' (fun v -> options.InlineCompletions <- v) ]

/// Registration of the runner in a .NET host.
[<Extension; AbstractClass; Sealed>]
type RunnerServiceCollectionExtensions =
    /// Registers the runner server as a hosted service, with its settings read from `configuration`
    /// and then adjusted by `configure`. Bad settings stop the host at start with a clear message.
    [<Extension>]
    static member AddApisixRunner(services: IServiceCollection, configuration: IConfiguration, configure: Action<RunnerOptions>) =
        let options = RunnerOptions()
        let problems = RunnerConfiguration.bind configuration options

        if not (isNull configure) then
            configure.Invoke options

        match problems @ options.Validate() with
        | [] -> ()
        | all -> raise (InvalidOperationException("invalid runner settings: " + String.Join("; ", all)))

        services.AddSingleton options |> ignore
        services.TryAddSingleton<TimeProvider> TimeProvider.System
        services.AddSingleton<RunnerServer>() |> ignore
        services.AddHostedService(fun sp -> sp.GetRequiredService<RunnerServer>()) |> ignore

        services.Configure<HostOptions>(fun (h: HostOptions) -> h.ShutdownTimeout <- options.ShutdownTimeout + TimeSpan.FromMilliseconds 150.0)
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

/// Starting a runner the way APISIX expects: quiet logging, settings from the environment.
[<AbstractClass; Sealed>]
type RunnerHost =
    /// A host builder with configuration from appsettings.json beside the executable, the file
    /// named by APISIX_RUNNER_CONFIG (if set; it must exist), the environment and `args`, and
    /// console logging at Warning unless `Logging:LogLevel:Default` says otherwise (APISIX copies
    /// the runner's output into its error log, so the runner says little). Plugins are added to
    /// its services; the runner itself is registered by `RunAsync`.
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
                // A runner started with a broken configuration must not start half-configured.
                Console.Error.WriteLine $"apisix runner: cannot read APISIX_RUNNER_CONFIG file {path}: {ex.Message}"
                exit 1

        builder.Logging.SetMinimumLevel LogLevel.Warning |> ignore
        builder

    /// Registers the runner, runs until SIGTERM or SIGINT, and returns the process exit code:
    /// 0 after a clean stop, 1 when the runner could not start (the reason goes to the log and stderr).
    static member RunAsync(builder: HostApplicationBuilder, configure: Action<RunnerOptions>) : Task<int> =
        task {
            try
                builder.Services.AddApisixRunner(builder.Configuration, configure) |> ignore
                use host = builder.Build()

                // .NET reads this once, when the first socket is made: the server has made none yet.
                if host.Services.GetRequiredService<RunnerOptions>().InlineCompletions then
                    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1")

                do! host.RunAsync()
                return 0
            with ex ->
                Console.Error.WriteLine $"apisix runner: {ex.Message}"
                return 1
        }

    static member RunAsync(builder: HostApplicationBuilder) = RunnerHost.RunAsync(builder, null)
