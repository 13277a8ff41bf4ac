/// Plugin folders that cannot be loaded: each is a start-up failure naming the folder or the file,
/// never an exception or a process that aborts. (A folder that loads is served in the C# tests,
/// by the sample runner as a process: tests/Apisix.Runner.Samples.Tests/Samples/PluginFolderTests.cs.)
module Apisix.Runner.Tests.Runtime.PluginFoldersTests

open System
open System.IO
open System.Text
open Microsoft.Extensions.Logging.Abstractions
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.RunnerProcess

/// A manifest the runtime's resolver reads: one project library with its assembly.
let private manifest (name: string) =
    """{"runtimeTarget": {"name": ".NETCoreApp,Version=v10.0", "signature": ""},
        "targets": {".NETCoreApp,Version=v10.0": {"NAME/1.0.0": {"runtime": {"NAME.dll": {}}}}},
        "libraries": {"NAME/1.0.0": {"type": "project", "serviceable": false, "sha512": ""}}}"""
        .Replace("NAME", name)

/// Opens a server on a socket of `sandbox` with these plugin folders: the start-up failure, if any.
let private openWith (sandbox: Sandbox) (folders: string list) =
    let options = RunnerOptions(ListenAddress = "unix:" + sandbox.Socket, PluginFolders = ResizeArray folders)
    let server = RunnerServer(options, [], NullLoggerFactory.Instance, TimeProvider.System)

    match server.Open() with
    | Ok() ->
        server.StopAsync(Threading.CancellationToken.None).Wait()
        failtest "the server opened"
    | Error e -> e

let private folderProblem (e: StartError) =
    match e with
    | PluginFolderFailed problem -> problem
    | other -> failtest $"expected PluginFolderFailed, got {other}"

[<Tests>]
let tests =
    testList "Runtime.PluginFolders" [
        testCase "a manifest as dotnet writes it is read; one whose shape would abort the runtime's resolver is refused, saying why" <| fun () ->
            let own = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Apisix.Runner.Tests.deps.json"))
            Expect.isNull (DepsManifest.problem (ReadOnlySpan own)) "this test project's own manifest"
            Expect.isNull (DepsManifest.problem (ReadOnlySpan(Encoding.UTF8.GetBytes(manifest "Plugin")))) "a minimal one"

            let problem (json: string) = DepsManifest.problem (ReadOnlySpan(Encoding.UTF8.GetBytes json))
            Expect.equal (problem "{}") "it names no runtimeTarget" "no runtimeTarget"
            Expect.equal (problem """{"runtimeTarget": {}}""") "it names no runtimeTarget" "a runtimeTarget without a name"
            Expect.equal (problem """{"runtimeTarget": "t"}""") "its target t is missing or malformed" "no targets"
            Expect.equal (problem """{"runtimeTarget": "t", "targets": {"t": {"P/1": {"runtimeTargets": {"a.dll": {"rid": "linux"}}}}}}""") "its target t is missing or malformed" "an asset without its type"

            Expect.equal
                (problem """{"runtimeTarget": "t", "targets": {"t": {}}, "libraries": {"P/1": {"type": "project", "serviceable": false}}}""")
                "a library lacks its type, sha512 or serviceable flag"
                "a library without its hash"

            Expect.stringStarts (problem "{\"runtimeTarget\": ") "it is not JSON" "truncated"
            Expect.stringStarts (problem "not json") "it is not JSON" "not JSON"

        testCase "a missing folder, or one without a plugin assembly, is a start-up failure naming it" <| fun () ->
            use sandbox = new Sandbox()
            let missing = sandbox.Path "no-such-folder"
            Expect.equal (folderProblem (openWith sandbox [ missing ])) $"plugin folder {missing} does not exist (Runner:PluginFolders)" "missing"

            let empty = sandbox.Path "empty"
            Directory.CreateDirectory empty |> ignore
            File.WriteAllText(Path.Combine(empty, "Lonely.dll"), "a .dll without its .deps.json is not a plugin assembly")
            Expect.stringStarts (folderProblem (openWith sandbox [ empty ])) $"plugin folder {empty} holds no plugin assembly" "empty"
            Expect.isFalse (File.Exists sandbox.Socket) "no socket: the runner did not start"

        testCase "a plugin assembly that does not load, or whose manifest is malformed, is a start-up failure naming the file" <| fun () ->
            use sandbox = new Sandbox()
            let folder = sandbox.Path "plugins"
            Directory.CreateDirectory folder |> ignore
            let dll = Path.Combine(folder, "Bad.dll")
            File.WriteAllText(dll, "not an assembly")
            File.WriteAllText(Path.Combine(folder, "Bad.deps.json"), manifest "Bad")
            Expect.stringStarts (folderProblem (openWith sandbox [ folder ])) $"cannot load plugin assembly {dll}: " "not an assembly"

            // A manifest the runtime's resolver would abort the process on: this test process lives on.
            File.WriteAllText(Path.Combine(folder, "Bad.deps.json"), "{}")

            Expect.equal
                (folderProblem (openWith sandbox [ folder ]))
                $"cannot load plugin assembly {dll}: Bad.deps.json is not a dependency manifest the runtime can read: it names no runtimeTarget"
                "a malformed manifest"
    ]
