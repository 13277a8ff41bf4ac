/// Runner:PluginFolders and the Native AOT runner, which cannot load assemblies: it does not start,
/// and says why. (JIT runners serving a plugin folder, and folders that cannot be used, are in the
/// C# tests: tests/Apisix.Runner.Samples.Tests/Samples/PluginFolderTests.cs.)
module Apisix.Runner.Tests.Process.PluginFolderTests

open System
open System.IO
open Expecto
open Apisix.Runner.Tests.Support.RunnerProcess

[<Tests>]
let tests =
    testSequenced
    <| testList "Process.PluginFolder" [
        testCaseTask "the Native AOT runner given a plugin folder exits 1 with one line saying it cannot load assemblies" <| fun () ->
            task {
                use sandbox = new Sandbox()
                let folder = sandbox.Path "plugins"
                Directory.CreateDirectory folder |> ignore
                use runner = new Runner(sandbox.Socket, [ "Runner__PluginFolders__0", folder ], aotSampleRunner.Value)
                let! code = runner.WaitForExit(TimeSpan.FromSeconds 15.0)

                Expect.equal code 1 (runner.Describe())

                Expect.equal
                    runner.Output
                    [ "apisix runner: Runner:PluginFolders is set, but this runner is a Native AOT build, which cannot load assemblies: register the plugins in the runner, or run a JIT build of it" ]
                    "the only output"

                Expect.isFalse (File.Exists sandbox.Socket) "the runner did not listen"
            }
    ]
