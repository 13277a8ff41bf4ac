namespace Apisix.Runner

open System.Collections.Generic
open System.Threading.Tasks

/// One phase of a prepared route configuration: its plugins' filters composed, in the route's order.
type ChainPhase =
    {
        /// The plugins' filters as one filter; a plugin's Skip lets the next plugin run.
        Run: Filter
        /// The plugins of this phase, in order.
        Plugins: string[]
        /// What those plugins declared they read from APISIX, without repeats: asked up front.
        Prefetch: ExtraInfo.Info[]
    }

/// A route configuration prepared once (PrepareConf): what runs in each phase.
type Chain =
    { Request: ChainPhase
      Response: ChainPhase }

module Chain =
    /// A plugin's filter as a link of the chain: it names the plugin for the log while it runs, and
    /// a Skip ends only this plugin's part. Not through `handOn`: awaiting here keeps only the
    /// decision, where `handOn`'s await keeps the next filter and its arguments too (56 B more on
    /// every call whose plugin goes asynchronous).
    let private link (name: string) (filter: Filter) : Filter =
        FilterOf.Make(fun req resp ->
            req.Plugin <- name
            let d = filter req resp

            if d.IsCompletedSuccessfully then
                if d.Result = Decision.Skip then proceed else d
            else
                ValueTask<Decision>(
                    task {
                        match! d with
                        | Decision.Skip -> return Decision.Continue
                        | decided -> return decided
                    }
                ))

    let private phase (members: (string * Filter * ExtraInfo.Info list) list) (wanted: ExtraInfo.Info -> bool) =
        { Run = members |> List.map (fun (name, filter, _) -> link name filter) |> sequence
          Plugins = members |> List.map (fun (name, _, _) -> name) |> Array.ofList
          Prefetch = members |> List.collect (fun (_, _, prefetch) -> prefetch) |> List.filter wanted |> List.distinct |> Array.ofList }

    /// Builds the chain of a PrepareConf: every plugin must be known and accept its configuration,
    /// otherwise the whole configuration is rejected with every problem named.
    let build (plugins: IReadOnlyDictionary<string, Plugin>) (conf: TextEntry[]) : Result<Chain, string list> =
        let prepared =
            conf
            |> Array.map (fun entry ->
                let json = if entry.HasValue then entry.Value else ""

                match plugins.TryGetValue entry.Name with
                | false, _ -> Error $"unknown plugin '{entry.Name}'"
                | true, plugin ->
                    match Plugin.prepare plugin json with
                    | Ok filters -> Ok(entry.Name, filters)
                    | Error why -> Error $"plugin '{entry.Name}' rejected its configuration: {why}")
            |> List.ofArray

        match prepared |> List.choose (function Error e -> Some e | Ok _ -> None) with
        | [] ->
            let ok = prepared |> List.choose (function Ok p -> Some p | Error _ -> None)

            let members pick =
                ok
                |> List.choose (fun (name, f: PluginFilters) ->
                    match pick f with
                    | ValueSome filter -> Some(name, filter, f.Prefetch)
                    | ValueNone -> None)

            Ok
                { Request = phase (members (fun f -> f.Request)) (function ExtraInfo.RespBody -> false | _ -> true)
                  Response = phase (members (fun f -> f.Response)) (function ExtraInfo.ReqBody -> false | _ -> true) }
        | errors -> Error errors
