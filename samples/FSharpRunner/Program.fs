// An F# runner: each plugin is a name, a config parser and a filter composed from smaller ones.
open System.Text.Json
open Apisix.Runner

/// Reads one string property of a JSON object configuration, if present.
let stringProperty (name: string) (json: string) : Result<string option, string> =
    try
        use doc = JsonDocument.Parse(if System.String.IsNullOrWhiteSpace json then "{}" else json)
        let root = doc.RootElement

        if root.ValueKind <> JsonValueKind.Object then
            Error "the configuration must be a JSON object"
        else
            match root.TryGetProperty name with
            | true, v when v.ValueKind = JsonValueKind.String -> Ok(Some(v.GetString()))
            | true, _ -> Error $"'{name}' must be a string"
            | false, _ -> Ok None
    with :? JsonException as e ->
        Error e.Message

/// `greet`: stops with a greeting, except for requests that carry `x-pass: 1`.
let greet =
    Plugin.create "greet" (stringProperty "name") (fun name ->
        let who = defaultArg name "world"

        onlyIf
            (fun req -> req.Header "x-pass" <> ValueSome "1")
            (setResponseHeader "x-runner" "fsharp" >=> respond 200 [ "content-type", "text/plain" ] $"hello, {who}"))

/// `tag`: tags the request for the upstream and moves it under a prefix.
let tag =
    Plugin.create "tag" (stringProperty "prefix") (fun prefix ->
        let prefix = defaultArg prefix "/tagged"

        setHeader "x-tagged" "true"
        >=> fun req _ ->
                req.SetPath(prefix + req.Path)
                proceed)

/// `client-ip`: passes the client address, read from nginx, to the upstream.
let clientIp =
    Plugin.ofFilter "client-ip" (fun req _ ->
        task {
            match! req.Var "remote_addr" with
            | ValueSome ip -> req.SetHeader("x-client-ip", ip)
            | ValueNone -> ()

            return Decision.Continue
        }
        |> System.Threading.Tasks.ValueTask<Decision>)
    |> Plugin.prefetch [ ExtraInfo.Var "remote_addr" ]

[<EntryPoint>]
let main args =
    let builder = RunnerHost.CreateBuilder args

    for plugin in [ greet; tag; clientIp ] do
        builder.Services.AddPlugin plugin |> ignore

    (RunnerHost.RunAsync builder).GetAwaiter().GetResult()
