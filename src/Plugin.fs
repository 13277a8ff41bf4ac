namespace Apisix.Runner

open System

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

    /// A plugin that takes no configuration and always uses the same filter.
    let ofFilter (name: string) (filter: Filter) : Plugin =
        create name Ok (fun (_: string) -> filter)

    /// Declares what the plugin reads from APISIX, so that it is fetched up front.
    let prefetch (infos: ExtraInfo.Info list) (plugin: Plugin) : Plugin =
        { plugin with Prepare = plugin.Prepare >> Result.map (fun f -> { f with Prefetch = f.Prefetch @ infos }) }

    /// Runs a parser, turning an exception it throws into a rejection that names the plugin.
    let internal prepare (plugin: Plugin) (json: string) : Result<PluginFilters, string> =
        try
            plugin.Prepare json
        with ex ->
            Error $"{ex.GetType().Name}: {ex.Message}"
