// The runner process. APISIX starts it (ext-plugin.cmd) with APISIX_LISTEN_ADDRESS and
// APISIX_CONF_EXPIRE_TIME set; in development, start it by hand with
// APISIX_LISTEN_ADDRESS=unix:/tmp/runner.sock and point APISIX's ext-plugin.path_for_test there.
module MyRunner.Program

open Apisix.Runner

[<EntryPoint>]
let main args =
    let builder = RunnerHost.CreateBuilder args

    for plugin in Plugins.all do
        builder.Services.AddPlugin plugin |> ignore

    (RunnerHost.RunAsync builder).GetAwaiter().GetResult()
