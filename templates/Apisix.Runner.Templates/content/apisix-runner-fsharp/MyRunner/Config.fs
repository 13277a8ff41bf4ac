/// Reading plugin configurations: the JSON string a route gives each plugin, read once per route
/// configuration. An Error rejects the configuration, and APISIX answers 503 on that route.
module MyRunner.Config

open System
open System.Text.Json

/// One optional string property of a JSON object configuration ("" or whitespace reads as `{}`).
let optionalString (name: string) (json: string) : Result<string option, string> =
    try
        use doc = JsonDocument.Parse(if String.IsNullOrWhiteSpace json then "{}" else json)

        if doc.RootElement.ValueKind <> JsonValueKind.Object then
            Error "the configuration must be a JSON object"
        else
            match doc.RootElement.TryGetProperty name with
            | true, v when v.ValueKind = JsonValueKind.String -> Ok(Some(v.GetString()))
            | true, _ -> Error $"'{name}' must be a string"
            | false, _ -> Ok None
    with :? JsonException as e ->
        Error $"invalid JSON configuration: {e.Message}"
