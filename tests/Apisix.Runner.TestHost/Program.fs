open Apisix.Runner

[<EntryPoint>]
let main args =
    let builder = RunnerHost.CreateBuilder args

    for plugin in Apisix.Runner.TestHost.TestPlugins.all do
        builder.Services.AddPlugin plugin |> ignore

    (RunnerHost.RunAsync builder).GetAwaiter().GetResult()
