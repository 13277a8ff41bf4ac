namespace Apisix.Runner

open System
open System.Buffers
open System.Diagnostics.CodeAnalysis
open System.Text
open System.Text.Json
open System.Text.Json.Serialization.Metadata

/// What a plugin contributes to one route configuration: its filters for the request phase
/// (ext-plugin-pre-req / post-req) and the response phase (ext-plugin-post-resp), and what it
/// will read from APISIX, so that the runner can ask for all of it at once before the chain runs.
type PluginFilters =
    { Request: Filter voption
      Response: Filter voption
      /// Asked of APISIX up front, back to back, before the chain of that phase runs.
      Prefetch: ExtraInfo.Info list }

/// A plugin: a name that routes refer to, and a parser that turns the route's JSON configuration
/// into filters. The parser runs once per PrepareConf, never per request; an Error rejects the
/// configuration, and APISIX then answers 503 for the route instead of skipping the plugin.
type Plugin =
    { Name: string
      Prepare: string -> Result<PluginFilters, string> }

/// Binding a plugin's JSON configuration to a type with System.Text.Json, once per PrepareConf,
/// then checking it. Names are read as the Go runner's samples write them: snake_case
/// (`HttpStatus` reads `"http_status"`), case ignored.
module PluginConfig =
    /// The largest configuration accepted, in UTF-8 bytes: one plugin's JSON in one route.
    [<Literal>]
    let MaxBytes = 1_048_576

    /// The deepest nesting of JSON objects and arrays accepted in a configuration (System.Text.Json's default).
    [<Literal>]
    let MaxDepth = 64

    /// Whether JSON nests objects and arrays deeper than MaxDepth. Text that is not JSON is left
    /// to the parser, which gives the better message.
    let private tooDeep (utf8: ReadOnlySpan<byte>) : bool =
        // One level more than allowed, so that the reader itself never stops at the depth.
        let options = JsonReaderOptions(CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, MaxDepth = MaxDepth + 1)
        let mutable reader = Utf8JsonReader(utf8, options)
        let mutable deep = false
        let mutable reading = true

        while reading && not deep do
            try
                reading <- reader.Read()

                if reading && (reader.TokenType = JsonTokenType.StartObject || reader.TokenType = JsonTokenType.StartArray) then
                    deep <- reader.CurrentDepth >= MaxDepth
            with :? JsonException ->
                reading <- false

        deep

    /// Checks a configuration against MaxBytes and MaxDepth before anything parses it; the
    /// problem, in one sentence, when it is out of bounds. A configuration that size or depth can
    /// only be an attack or a mistake, and parsing it would cost the runner memory and time.
    let checkBounds (json: string) : Result<unit, string> =
        if isNull json then
            Ok()
        else
            let size = Encoding.UTF8.GetByteCount json

            if size > MaxBytes then
                Error $"the configuration is {size} bytes, over the limit of {MaxBytes}"
            else
                // Nesting deeper than MaxDepth takes more than MaxDepth brackets: most configurations are read once.
                let mutable brackets = 0

                for i in 0 .. json.Length - 1 do
                    if json[i] = '{' || json[i] = '[' then
                        brackets <- brackets + 1

                if brackets <= MaxDepth then
                    Ok()
                else
                    let utf8 = ArrayPool<byte>.Shared.Rent size

                    try
                        let n = Encoding.UTF8.GetBytes(json.AsSpan(), Span utf8)

                        if tooDeep (ReadOnlySpan(utf8, 0, n)) then
                            Error $"the configuration nests objects and arrays deeper than {MaxDepth} levels"
                        else
                            Ok()
                    finally
                        ArrayPool<byte>.Shared.Return utf8

    [<Literal>]
    let private ReflectionWarning =
        "Binds the configuration with reflection-based System.Text.Json; pass a source-generated JsonTypeInfo instead."

    let mutable private reflection: JsonSerializerOptions = null

    /// Reflection-based options with the Go runner's naming (snake_case, case ignored), made once
    /// and read-only. Not for trimmed or Native AOT builds: there, use a source-generated context
    /// with `[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    /// PropertyNameCaseInsensitive = true)]`.
    [<RequiresUnreferencedCode(ReflectionWarning); RequiresDynamicCode(ReflectionWarning)>]
    let reflectionOptions () : JsonSerializerOptions =
        match reflection with
        | null ->
            let options =
                JsonSerializerOptions(
                    PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
                    PropertyNameCaseInsensitive = true,
                    TypeInfoResolver = DefaultJsonTypeInfoResolver()
                )

            options.MakeReadOnly()
            // Two threads racing here each make equal options; either one is kept.
            reflection <- options
            options
        | options -> options

    /// The reflection-based JsonTypeInfo of 'T under `reflectionOptions`, for `bind`. Not for
    /// trimmed or Native AOT builds: pass a source-generated JsonTypeInfo to `bind` there.
    [<RequiresUnreferencedCode(ReflectionWarning); RequiresDynamicCode(ReflectionWarning)>]
    let reflectionTypeInfo<'T> () : JsonTypeInfo<'T> =
        reflectionOptions().GetTypeInfo(typeof<'T>) :?> JsonTypeInfo<'T>

    /// Binds a JSON configuration to 'T, then checks it with `validate`. An empty configuration
    /// reads as `{}`. A configuration over MaxBytes or nested deeper than MaxDepth is refused
    /// unparsed (`checkBounds`), JSON that does not bind gives `invalid JSON configuration: ...`,
    /// the literal `null` gives one message, and every message of `validate` is kept, in order.
    /// Trimming and Native AOT safe with a source-generated `typeInfo`.
    let bind (typeInfo: JsonTypeInfo<'T>) (validate: 'T -> string seq) (json: string) : Result<'T, string list> =
        if isNull typeInfo then nullArg (nameof typeInfo)
        let text = if String.IsNullOrWhiteSpace json then "{}" else json

        let parsed =
            match checkBounds text with
            | Error problem -> Error [ problem ]
            | Ok() ->
                try
                    Ok(JsonSerializer.Deserialize(text, typeInfo))
                with :? JsonException as e ->
                    Error [ $"invalid JSON configuration: {e.Message}" ]

        match parsed with
        | Error problems -> Error problems
        | Ok config when isNull (box config) -> Error [ "the configuration is null: expected a JSON object" ]
        | Ok config ->
            match List.ofSeq (validate config) with
            | [] -> Ok config
            | problems -> Error problems

    /// The rejection of a configuration, from its problems: one line, as APISIX's error and the
    /// runner's log give it.
    let describe (problems: string seq) : string = String.Join("; ", problems)

    /// A configuration parser for `Plugin.create` and `Plugin.createResponse`: `bind`, with the
    /// problems of a rejection made one message by `describe`.
    let parser (typeInfo: JsonTypeInfo<'T>) (validate: 'T -> string seq) : string -> Result<'T, string> =
        fun json -> bind typeInfo validate json |> Result.mapError describe

    /// The validator that accepts every configuration.
    let accept (_: 'T) : string seq = Seq.empty

module Plugin =
    /// A plugin whose configuration parses to 'Conf, with a request filter made from it.
    let create (name: string) (parse: string -> Result<'Conf, string>) (filter: 'Conf -> Filter) : Plugin =
        { Name = name
          Prepare =
            fun json ->
                parse json
                |> Result.map (fun conf ->
                    { Request = ValueSome(filter conf)
                      Response = ValueNone
                      Prefetch = [] }) }

    /// A plugin whose configuration parses to 'Conf, with a response filter made from it.
    let createResponse (name: string) (parse: string -> Result<'Conf, string>) (filter: 'Conf -> Filter) : Plugin =
        { Name = name
          Prepare =
            fun json ->
                parse json
                |> Result.map (fun conf ->
                    { Request = ValueNone
                      Response = ValueSome(filter conf)
                      Prefetch = [] }) }

    /// A plugin whose JSON configuration binds to 'Conf (see `PluginConfig.bind`) and passes
    /// `validate`, with a request filter made from it, once per PrepareConf.
    let ofJson (name: string) (typeInfo: JsonTypeInfo<'Conf>) (validate: 'Conf -> string seq) (filter: 'Conf -> Filter) : Plugin =
        create name (PluginConfig.parser typeInfo validate) filter

    /// A plugin whose JSON configuration binds to 'Conf and passes `validate`, with a response filter made from it.
    let ofJsonResponse
        (name: string)
        (typeInfo: JsonTypeInfo<'Conf>)
        (validate: 'Conf -> string seq)
        (filter: 'Conf -> Filter)
        : Plugin =
        createResponse name (PluginConfig.parser typeInfo validate) filter

    /// A plugin that takes no configuration and always uses the same filter.
    let ofFilter (name: string) (filter: Filter) : Plugin =
        create name Ok (fun (_: string) -> filter)

    /// Declares what the plugin reads from APISIX, so that it is fetched up front.
    let prefetch (infos: ExtraInfo.Info list) (plugin: Plugin) : Plugin =
        { plugin with Prepare = plugin.Prepare >> Result.map (fun f -> { f with Prefetch = f.Prefetch @ infos }) }

    /// Runs a parser on a configuration within PluginConfig's bounds (whatever parser the plugin
    /// brings), turning an exception it throws into a rejection that names the plugin.
    let internal prepare (plugin: Plugin) (json: string) : Result<PluginFilters, string> =
        match PluginConfig.checkBounds json with
        | Error problem -> Error problem
        | Ok() ->
            try
                plugin.Prepare json
            with ex ->
                Error $"{ex.GetType().Name}: {ex.Message}"
