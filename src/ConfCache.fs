namespace Apisix.Runner

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Threading

/// A route configuration prepared once: the plugins in the route's order, split by phase.
type Chain =
    { RequestFilters: struct (string * Filter)[]
      ResponseFilters: struct (string * Filter)[]
      /// What the request-phase plugins declared they read, deduplicated.
      RequestPrefetch: ExtraInfo.Info[]
      ResponsePrefetch: ExtraInfo.Info[] }

module Chain =
    /// Builds the chain of a PrepareConf: every plugin must be known and accept its configuration,
    /// otherwise the whole configuration is rejected with every problem named.
    let build (plugins: IReadOnlyDictionary<string, Plugin>) (conf: TextEntry[]) : Result<Chain, string list> =
        let prepared =
            conf
            |> Array.map (fun entry ->
                let json = entry.Value |> ValueOption.defaultValue ""

                match plugins.TryGetValue entry.Name with
                | false, _ -> Error $"unknown plugin '{entry.Name}'"
                | true, plugin ->
                    match Plugin.prepare plugin json with
                    | Ok filters -> Ok(entry.Name, filters)
                    | Error why -> Error $"plugin '{entry.Name}' rejected its configuration: {why}")

        match prepared |> Array.choose (function Error e -> Some e | Ok _ -> None) |> List.ofArray with
        | [] ->
            let ok = prepared |> Array.choose (function Ok p -> Some p | Error _ -> None)

            let phase pick (wanted: ExtraInfo.Info -> bool) =
                let members = ok |> Array.choose (fun (name, f) -> pick f |> ValueOption.map (fun filter -> name, filter, f) |> ValueOption.toOption)
                let filters = members |> Array.map (fun (name, filter, _) -> struct (name, filter))
                let prefetch = members |> Array.collect (fun (_, _, f) -> List.toArray f.Prefetch) |> Array.filter wanted |> Array.distinct
                filters, prefetch

            let reqFilters, reqPrefetch =
                phase (fun f -> f.Request) (function ExtraInfo.RespBody -> false | _ -> true)

            let respFilters, respPrefetch =
                phase (fun f -> f.Response) (function ExtraInfo.ReqBody -> false | _ -> true)

            Ok
                { RequestFilters = reqFilters
                  ResponseFilters = respFilters
                  RequestPrefetch = reqPrefetch
                  ResponsePrefetch = respPrefetch }
        | errors -> Error errors

/// A prepared configuration in the cache, with the time it was last used.
[<Sealed; AllowNullLiteral>]
type internal ConfEntry(chain: Chain, key: string voption, now: int64) =
    let mutable lastUse = now
    member _.Chain = chain
    member _.Key = key
    member _.LastUse = Volatile.Read &lastUse
    member _.Touch(now: int64) = Volatile.Write(&lastUse, now)

/// Prepared configurations by token. A token comes from a monotonic counter and is never handed
/// out while another entry holds it, even after the counter wraps. The same idempotency key gets
/// the same token for as long as its entry lives. An entry lives `lifetime` after its last use
/// (sliding), then goes; past `capacity` entries the least recently used go first.
[<Sealed>]
type ConfCache(lifetime: TimeSpan, capacity: int, time: TimeProvider) =
    let byToken = ConcurrentDictionary<uint32, ConfEntry>()
    let byKey = ConcurrentDictionary<string, uint32>()
    let mutable counter = 0
    // Uses are recorded at this granularity so that busy tokens are not written on every call.
    let touchEvery = min (TimeSpan.FromSeconds 1.0) (lifetime / 10.0)

    let now () = time.GetTimestamp()
    let lifetimeTicks = int64 (lifetime.TotalSeconds * float time.TimestampFrequency)
    let touchTicks = int64 (touchEvery.TotalSeconds * float time.TimestampFrequency)
    let expired (e: ConfEntry) (t: int64) = t - e.LastUse > lifetimeTicks

    let remove (token: uint32) (e: ConfEntry) =
        if byToken.TryRemove(KeyValuePair(token, e)) then
            match e.Key with
            | ValueSome k -> byKey.TryRemove(KeyValuePair(k, token)) |> ignore
            | ValueNone -> ()

    let rec freshToken () =
        let t = uint32 (Interlocked.Increment &counter)
        // 0 is never handed out: some clients read it as "no token".
        if t = 0u || byToken.ContainsKey t then freshToken () else t

    /// How many configurations are cached.
    member _.Count = byToken.Count

    /// Removes expired entries, then the least recently used ones beyond capacity; returns how many went.
    member _.Sweep() : int =
        let t = now ()
        let mutable removed = 0

        for KeyValue(token, e) in byToken do
            if expired e t then
                remove token e
                removed <- removed + 1

        // Past capacity, go down to 90% at once, so that a stream of new keys sorts rarely.
        let excess = if byToken.Count > capacity then byToken.Count - capacity * 9 / 10 else 0

        if excess > 0 then
            let victims = byToken.ToArray() |> Array.sortBy (fun kv -> kv.Value.LastUse) |> Array.truncate excess

            for KeyValue(token, e) in victims do
                remove token e
                removed <- removed + 1

        removed

    /// The token for a configuration, building its chain unless its key already has a live one.
    member c.Prepare(key: string voption, build: unit -> Result<Chain, 'E>) : Result<uint32, 'E> =
        let t = now ()

        let existing =
            match key with
            | ValueSome k ->
                match byKey.TryGetValue k with
                | true, token ->
                    match byToken.TryGetValue token with
                    | true, e when not (expired e t) ->
                        e.Touch t
                        ValueSome token
                    | _ -> ValueNone
                | _ -> ValueNone
            | ValueNone -> ValueNone

        match existing with
        | ValueSome token -> Ok token
        | ValueNone ->
            match build () with
            | Error e -> Error e
            | Ok chain ->
                let entry = ConfEntry(chain, key, t)
                let mutable token = freshToken ()

                while not (byToken.TryAdd(token, entry)) do
                    token <- freshToken ()

                match key with
                | ValueSome k -> byKey[k] <- token
                | ValueNone -> ()

                if byToken.Count > capacity then c.Sweep() |> ignore
                Ok token

    /// The chain of a live token, recording the use.
    member _.TryGet(token: uint32, chain: outref<Chain>) : bool =
        match byToken.TryGetValue token with
        | true, e ->
            let t = now ()

            if expired e t then
                remove token e
                false
            else
                if t - e.LastUse > touchTicks then e.Touch t
                chain <- e.Chain
                true
        | _ -> false
