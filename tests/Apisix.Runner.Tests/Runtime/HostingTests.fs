/// Registration of plugins in a service collection, as the host builds them.
module Apisix.Runner.Tests.Runtime.HostingTests

open System
open System.Collections.Generic
open Microsoft.Extensions.Configuration
open Microsoft.Extensions.DependencyInjection
open Microsoft.Extensions.Options
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.Expectations

type private Greeting(text: string) =
    member _.Text = text

/// The runner's services as AddApisixRunner registers them, over these settings.
let private runnerServices (settings: (string * string) list) (configure: RunnerOptions -> unit) =
    let configuration =
        ConfigurationBuilder()
            .AddInMemoryCollection([ for k, v in settings -> KeyValuePair<string, string>(k, v) ])
            .Build()

    let services = ServiceCollection()
    services.AddLogging() |> ignore
    services.AddApisixRunner(configuration, Action<RunnerOptions> configure) |> ignore
    services.BuildServiceProvider(), configuration

[<Tests>]
let tests =
    testSequencedGroup "Runtime.Hosting"
    <| testList "Runtime.Hosting" [
        testCase "AddPlugin with a factory makes the plugin from the built services" <| fun () ->
            let services = ServiceCollection()
            services.AddSingleton(Greeting "bonjour") |> ignore
            let mutable made = 0

            services.AddPlugin(
                Func<IServiceProvider, Plugin>(fun sp ->
                    made <- made + 1
                    let greeting = sp.GetRequiredService<Greeting>()
                    Plugin.ofFilter "greet" (respond 200 [] greeting.Text))
            )
            |> ignore

            Expect.equal made 0 "made"
            use provider = services.BuildServiceProvider()
            let plugins = provider.GetServices<Plugin>() |> List.ofSeq
            Expect.equal ((List.exactlyOne plugins).Name) "greet" "(List.exactlyOne plugins).Name"
            Expect.isTrue (obj.ReferenceEquals(List.exactlyOne plugins, provider.GetRequiredService<Plugin>())) "the same instance: provider.GetRequiredService<Plugin>()"
            Expect.equal made 1 "made"

            let chain = PluginTestKit.Prepare [ List.exactlyOne plugins, "" ] |> okValue

            match (PluginTestKit.RunRequestAsync(chain, TestRequest()).Result).Answer.Action with
            | HttpReqCall.Stop stop -> Expect.equal (TestAnswer.text stop.Body) "bonjour" "TestAnswer.text stop.Body"
            | other -> failwith $"expected a Stop, got {TestAnswer.describe other}"
    
        testCase "RunnerOptions is one bound instance, from IOptions or asked for directly, with the settings and the adjustments" <| fun () ->
            let provider, _ =
                runnerServices
                    [ "APISIX_LISTEN_ADDRESS", "unix:/tmp/options.sock"; "APISIX_CONF_EXPIRE_TIME", "7"; "Runner:CallTimeout", "00:00:10" ]
                    (fun o -> o.MaxFrameBytes <- 4096)

            use _ = provider
            let options = provider.GetRequiredService<IOptions<RunnerOptions>>().Value
            Expect.isTrue (obj.ReferenceEquals(options, provider.GetRequiredService<RunnerOptions>())) "the same instance"
            Expect.equal options.CallTimeout (TimeSpan.FromSeconds 10.0) "Runner:CallTimeout"
            Expect.equal options.ConfExpireTime (TimeSpan.FromSeconds 7.0) "APISIX_CONF_EXPIRE_TIME"
            Expect.equal options.SocketPath "/tmp/options.sock" "APISIX_LISTEN_ADDRESS"
            Expect.equal options.MaxFrameBytes 4096 "the adjustment"

        testCase "invalid settings fail validation with every problem named" <| fun () ->
            let provider, _ =
                runnerServices [ "APISIX_LISTEN_ADDRESS", "relative.sock"; "Runner:CallTimeout", "soon"; "Runner:MaxFrameBytes", "12" ] ignore

            use _ = provider
            let e = Expect.throwsC (fun () -> provider.GetRequiredService<IOptions<RunnerOptions>>().Value |> ignore) id
            let failures = (e :?> OptionsValidationException).Failures |> List.ofSeq
            Expect.exists failures (fun f -> f.Contains "Runner:CallTimeout has an unreadable value 'soon'") "the unreadable value"
            Expect.exists failures (fun f -> f.Contains "absolute socket path") "the relative path"
            Expect.exists failures (fun f -> f.Contains "Runner:MaxFrameBytes must be between") "the frame limit"

        testCase "Runner:MaxBufferedBytes is read from configuration; by default an eighth of the memory available, between 64 and 512 MiB" <| fun () ->
            let provider, _ = runnerServices [ "APISIX_LISTEN_ADDRESS", "unix:/tmp/budget.sock"; "Runner:MaxBufferedBytes", "5000000000" ] ignore
            use _ = provider
            Expect.equal (provider.GetRequiredService<RunnerOptions>().MaxBufferedBytes) 5_000_000_000L "the setting, past 2 GiB"
            let available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes
            let fallback = RunnerOptions().MaxBufferedBytes
            Expect.equal fallback (Math.Clamp(available / 8L, 64L <<< 20, 512L <<< 20)) $"the default with {available} bytes available"
            Expect.isTrue (fallback >= (64L <<< 20) && fallback <= (512L <<< 20)) "the default is between 64 and 512 MiB"

        testCase "a Runner:MaxBufferedBytes that cannot hold one frame of Runner:MaxFrameBytes fails validation" <| fun () ->
            let check (settings: (string * string) list) =
                let provider, _ = runnerServices (("APISIX_LISTEN_ADDRESS", "unix:/tmp/budget.sock") :: settings) ignore
                use _ = provider

                try
                    provider.GetRequiredService<IOptions<RunnerOptions>>().Value |> ignore
                    []
                with :? OptionsValidationException as e ->
                    List.ofSeq e.Failures

            let failures = check [ "Runner:MaxBufferedBytes", "1000000" ]
            Expect.exists failures (fun f -> f.Contains "Runner:MaxBufferedBytes must hold at least one frame of Runner:MaxFrameBytes (16777219 bytes), got 1000000") $"the budget below one frame: {failures}"
            Expect.isEmpty (check [ "Runner:MaxBufferedBytes", "1000000"; "Runner:MaxFrameBytes", "65536" ]) "a budget of 1 MB with frames of at most 64 KiB"
            Expect.exists (check [ "Runner:MaxBufferedBytes", "lots" ]) (fun f -> f.Contains "Runner:MaxBufferedBytes has an unreadable value 'lots'") "an unreadable value"

        testCase "keys under Runner that no setting reads are reported" <| fun () ->
            let _, configuration = runnerServices [ "Runner:CallTimout", "00:00:10"; "Runner:callTIMEOUT", "00:00:10"; "Runner:SocketMode", "0700" ] ignore
            Expect.equal (RunnerConfiguration.unknownKeys configuration) [ "Runner:CallTimout" ] "the misspelt key only (names ignore case)"

        testCase "Runner:PluginFolders is a list: items in order, or one value of paths separated as in PATH" <| fun () ->
            let folders (settings: (string * string) list) =
                let provider, configuration = runnerServices (("APISIX_LISTEN_ADDRESS", "unix:/tmp/folders.sock") :: settings) ignore
                use _ = provider
                List.ofSeq (provider.GetRequiredService<RunnerOptions>().PluginFolders), RunnerConfiguration.unknownKeys configuration

            let items = [ for i in 0..10 -> $"Runner:PluginFolders:{i}", $"/opt/plugins/{i}" ]
            Expect.equal (folders items) ([ for i in 0..10 -> $"/opt/plugins/{i}" ], []) "items, in the order of their indexes"
            Expect.equal (folders [ "Runner:PluginFolders", " /opt/a:/opt/b " ]) ([ "/opt/a"; "/opt/b" ], []) "one value, as the environment gives it"
            Expect.equal (folders []) ([], []) "none by default"

        testCase "Runner:PluginFolders must list absolute paths, each once" <| fun () ->
            let provider, _ =
                runnerServices
                    [ "APISIX_LISTEN_ADDRESS", "unix:/tmp/folders.sock"
                      "Runner:PluginFolders:0", "plugins"
                      "Runner:PluginFolders:1", "/opt/a"
                      "Runner:PluginFolders:2", "/opt/a/" ]
                    ignore

            use _ = provider
            let e = Expect.throwsC (fun () -> provider.GetRequiredService<IOptions<RunnerOptions>>().Value |> ignore) id
            let failures = (e :?> OptionsValidationException).Failures |> List.ofSeq
            Expect.contains failures "Runner:PluginFolders must list absolute folder paths, got 'plugins'" "the relative path"
            Expect.contains failures "Runner:PluginFolders lists /opt/a/ twice" "the folder listed twice"

        testCase "a start-up failure is a StartError, not an exception: a live socket is not taken over" <| fun () ->
            let dir = IO.Path.Combine(IO.Path.GetTempPath(), "apisix-start", Guid.NewGuid().ToString("N").Substring(0, 8))
            let options () = RunnerOptions(ListenAddress = "unix:" + IO.Path.Combine(dir, "runner.sock"))
            let loggers = Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance
            let first = RunnerServer(options (), [], loggers, TimeProvider.System)
            Expect.equal (first.Open()) (Ok()) "the first server listens"

            try
                let second = RunnerServer(options (), [], loggers, TimeProvider.System)

                match second.Open() with
                | Error(SocketInUse path) -> Expect.stringEnds path "runner.sock" "the path in use"
                | other -> failtest $"expected SocketInUse, got {other}"

                let bad = RunnerServer(RunnerOptions(ListenAddress = "relative.sock"), [], loggers, TimeProvider.System)

                match bad.Open() with
                | Error(InvalidSettings problems) -> Expect.isNonEmpty problems "the problems"
                | other -> failtest $"expected InvalidSettings, got {other}"

                let twins = [ Plugin.ofFilter "same" pass; Plugin.ofFilter "same" pass ]

                match RunnerServer(options (), twins, loggers, TimeProvider.System).Open() with
                | Error(InvalidPlugins problem) -> Expect.stringContains problem "'same'" "the duplicate name"
                | other -> failtest $"expected InvalidPlugins, got {other}"
            finally
                first.StopAsync(Threading.CancellationToken.None).Wait()
    ]
