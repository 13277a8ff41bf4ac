namespace Apisix.Runner

open System
open System.Collections.Generic
open System.Diagnostics.CodeAnalysis
open System.IO
open System.Reflection
open System.Runtime.CompilerServices
open System.Runtime.Loader
open System.Text.Json
open Microsoft.Extensions.Logging

/// A registered plugin and where it comes from: the assembly file of a plugin folder, or, when
/// `Assembly` is null, the runner's own registrations.
[<Struct>]
type internal PluginSource = { Plugin: Plugin; Assembly: string }

/// The shape of a `.deps.json` that the runtime's dependency resolver relies on. The resolver
/// trusts the file: a member it expects and does not find, or of another type, aborts the process
/// (.NET 10's hostpolicy), so a plugin folder's manifest is checked before the resolver reads it.
module internal DepsManifest =
    let private member' (e: JsonElement) (name: string) =
        match e.TryGetProperty name with
        | true, v -> ValueSome v
        | _ -> ValueNone

    let private isObject (e: JsonElement) = e.ValueKind = JsonValueKind.Object

    let private isString (e: JsonElement) (name: string) =
        match member' e name with
        | ValueSome v -> v.ValueKind = JsonValueKind.String
        | ValueNone -> false

    /// Each member of an optional object satisfies `ok`.
    let private each (ok: JsonElement -> bool) (e: JsonElement voption) =
        match e with
        | ValueNone -> true
        | ValueSome o -> isObject o && o.EnumerateObject() |> Seq.forall (fun m -> ok m.Value)

    /// A package of the target: asset groups of objects, RID-specific assets with their type and RID.
    let private package (p: JsonElement) =
        isObject p
        && [ "runtime"; "resources"; "native" ] |> List.forall (fun kind -> each isObject (member' p kind))
        && each (fun a -> isObject a && isString a "assetType" && isString a "rid") (member' p "runtimeTargets")

    let private library (l: JsonElement) =
        isObject l
        && isString l "type"
        && isString l "sha512"
        && match member' l "serviceable" with
           | ValueSome v -> v.ValueKind = JsonValueKind.True || v.ValueKind = JsonValueKind.False
           | ValueNone -> false

    /// What is wrong with the manifest's shape, in a few words; null when the resolver can read it.
    let problem (json: ReadOnlySpan<byte>) : string =
        let options = JsonReaderOptions(CommentHandling = JsonCommentHandling.Skip)
        let mutable reader = Utf8JsonReader(json, options)

        let parsed =
            try
                match JsonDocument.TryParseValue &reader with
                | true, doc -> Ok doc
                | false, _ -> Error "it is not JSON"
            with :? JsonException as e ->
                Error $"it is not JSON: {e.Message}"

        match parsed with
        | Error why -> why
        | Ok doc ->
            use doc = doc
            let root = doc.RootElement

            let target =
                if not (isObject root) then
                    null
                else
                    match member' root "runtimeTarget" with
                    | ValueSome t when t.ValueKind = JsonValueKind.String -> t.GetString()
                    | ValueSome t when isObject t && isString t "name" -> t.GetProperty("name").GetString()
                    | _ -> null

            if isNull target then
                "it names no runtimeTarget"
            else
                match member' root "targets" |> ValueOption.bind (fun t -> if isObject t then member' t target else ValueNone) with
                | ValueSome packages when each package (ValueSome packages) ->
                    if each library (member' root "libraries") then null else "a library lacks its type, sha512 or serviceable flag"
                | _ -> $"its target {target} is missing or malformed"

/// The load context of one plugin assembly from a plugin folder. Its dependencies resolve through
/// its `.deps.json` to the files of its folder, so that each plugin brings the versions it was built
/// with, whatever the runner and the other plugins use. The runner's own assemblies (Apisix.Runner,
/// Apisix.Runner.CSharp, FSharp.Core, Microsoft.Extensions.*) come from the runner whatever their
/// version, so that a plugin's `Plugin`, `PluginBase`, `Request` and services are the runner's types;
/// from the folder only when the runner has no copy (the C# facade under an F# runner). The rest of
/// the framework comes from the runner too.
[<Sealed>]
[<RequiresUnreferencedCode("Loads plugin assemblies, which may use members a trimmed runner lacks.")>]
[<RequiresDynamicCode("Loads plugin assemblies, which Native AOT cannot run.")>]
type internal PluginLoadContext(path: string) =
    inherit AssemblyLoadContext(path, false)

    let resolver = AssemblyDependencyResolver path

    /// Whether an assembly is one of the runner's own, which plugins share with it.
    static member IsShared(name: AssemblyName) =
        match name.Name with
        | "Apisix.Runner"
        | "Apisix.Runner.CSharp"
        | "FSharp.Core" -> true
        | simple -> not (isNull simple) && simple.StartsWith("Microsoft.Extensions.", StringComparison.Ordinal)

    /// The runner's copy of an assembly, whatever its version; null when the runner has none.
    static member private FromRunner(name: AssemblyName) : Assembly =
        try
            AssemblyLoadContext.Default.LoadFromAssemblyName(AssemblyName name.Name)
        with
        | :? FileNotFoundException
        | :? FileLoadException -> null

    override this.Load(name: AssemblyName) : Assembly =
        let shared =
            if PluginLoadContext.IsShared name then
                PluginLoadContext.FromRunner name
            else
                null

        match shared with
        | null ->
            match resolver.ResolveAssemblyToPath name with
            | null -> null // not the plugin's own: the runner's (the framework), from the default context
            | file -> this.LoadFromAssemblyPath file
        | assembly -> assembly

    override this.LoadUnmanagedDll(name: string) : nativeint =
        match resolver.ResolveUnmanagedDllToPath name with
        | null -> IntPtr.Zero
        | file -> this.LoadUnmanagedDllFromPath file

/// Loading the plugins of the folders `Runner:PluginFolders` lists, when the server opens: the
/// Python runner's plugin directory, done with load contexts. Each folder holds the build or
/// publish output of plugin projects; each `.dll` with its `.deps.json` beside it is a plugin
/// assembly, loaded in a PluginLoadContext of its own, and its plugins are those PluginDiscovery
/// finds. Whatever goes wrong (a missing folder, an assembly or dependency that does not load, a
/// plugin that cannot be made) is a problem in one line, and the runner does not start.
module internal PluginFolders =
    [<Literal>]
    let private Loading =
        "Loads plugin assemblies and finds their plugins by reflection: not for trimmed or Native AOT runners."

    /// The plugin assemblies of a folder, in name order: each `.dll` with its `.deps.json` beside it.
    let assemblies (folder: string) : string list =
        Directory.GetFiles(folder, "*.dll")
        |> Array.filter (fun dll -> File.Exists(Path.ChangeExtension(dll, ".deps.json")))
        |> Array.sort
        |> List.ofArray

    /// The plugins of one plugin assembly, each with the assembly's path.
    [<RequiresUnreferencedCode(Loading); RequiresDynamicCode(Loading)>]
    let private loadAssembly (path: string) (services: IServiceProvider) : Result<PluginSource list, string> =
        let manifest = Path.ChangeExtension(path, ".deps.json")

        let unreadable =
            try
                match DepsManifest.problem (ReadOnlySpan(File.ReadAllBytes manifest)) with
                | null -> null
                | why -> $"{Path.GetFileName manifest} is not a dependency manifest the runtime can read: {why}"
            with e ->
                e.Message

        let loaded =
            if not (isNull unreadable) then
                Error unreadable
            else
                try
                    let context = PluginLoadContext path
                    let assembly = context.LoadFromAssemblyPath path

                    // Every direct dependency now: a missing one stops the start instead of failing a call.
                    for reference in assembly.GetReferencedAssemblies() do
                        context.LoadFromAssemblyName reference |> ignore

                    Ok assembly
                with e ->
                    Error(e.Message.Trim())

        match loaded with
        | Error why -> Error $"cannot load plugin assembly {path}: {Log.escape why}"
        | Ok assembly ->
            match PluginDiscovery.ofAssembly assembly services with
            | Error why -> Error $"plugin assembly {path}: {Log.escape why}"
            | Ok plugins -> Ok [ for p in plugins -> { Plugin = p; Assembly = path } ]

    /// What a folder brought, for the log: `a, b (A.dll); c (C.dll)`.
    let private summary (found: PluginSource list) =
        match found with
        | [] -> "no plugins"
        | _ ->
            let byAssembly =
                found
                |> List.groupBy (fun s -> s.Assembly)
                |> List.map (fun (file, plugins) ->
                    let names = plugins |> List.map (fun s -> Log.escape s.Plugin.Name)
                    $"""{String.Join(", ", names)} ({Path.GetFileName file})""")

            String.Join("; ", byAssembly)

    /// The plugins of one folder, which is logged.
    [<RequiresUnreferencedCode(Loading); RequiresDynamicCode(Loading)>]
    let private loadFolder (folder: string) (services: IServiceProvider) (logger: ILogger) : Result<PluginSource list, string> =
        if not (Directory.Exists folder) then
            Error $"plugin folder {folder} does not exist (Runner:PluginFolders)"
        else
            match assemblies folder with
            | [] ->
                Error
                    $"plugin folder {folder} holds no plugin assembly: expected a .dll with its .deps.json beside it, as dotnet publish makes them"
            | files ->
                let found = ResizeArray<PluginSource>()
                let mutable problem: string = null

                for file in files do
                    if isNull problem then
                        match loadAssembly file services with
                        | Ok plugins -> found.AddRange plugins
                        | Error why -> problem <- why

                match problem with
                | null ->
                    let all = List.ofSeq found
                    Log.pluginFolderLoaded.Invoke(logger, folder, summary all, null)
                    Ok all
                | why -> Error why

    [<RequiresUnreferencedCode(Loading); RequiresDynamicCode(Loading)>]
    let private loadAll (folders: IList<string>) (services: IServiceProvider) (logger: ILogger) : Result<PluginSource list, string> =
        let found = ResizeArray<PluginSource>()
        let mutable problem: string = null

        for folder in folders do
            if isNull problem then
                match loadFolder (Path.TrimEndingDirectorySeparator(Path.GetFullPath folder)) services logger with
                | Ok plugins -> found.AddRange plugins
                | Error why -> problem <- why

        match problem with
        | null -> Ok(List.ofSeq found)
        | why -> Error why

    /// The plugins of `folders`, each with the assembly file it came from, every folder logged to
    /// `logger` with the plugins found; the first problem instead. A Native AOT runner cannot load
    /// assemblies: there, any folder listed is a problem.
    [<UnconditionalSuppressMessage("Trimming",
                                   "IL2026",
                                   Justification =
                                       "Only reached when the runtime runs dynamic code, so never in Native AOT. A trimmed JIT runner may lack members that a plugin uses: docs/configuration.md says not to trim a runner that loads plugin folders.")>]
    [<UnconditionalSuppressMessage("AOT", "IL3050", Justification = "Guarded by RuntimeFeature.IsDynamicCodeSupported.")>]
    let load (folders: IList<string>) (services: IServiceProvider) (logger: ILogger) : Result<PluginSource list, string> =
        if isNull folders || folders.Count = 0 then
            Ok []
        elif not RuntimeFeature.IsDynamicCodeSupported then
            Error
                "Runner:PluginFolders is set, but this runner is a Native AOT build, which cannot load assemblies: register the plugins in the runner, or run a JIT build of it"
        else
            loadAll folders services logger
