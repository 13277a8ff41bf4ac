namespace Apisix.Runner

open System
open System.Collections.Concurrent
open System.Collections.Generic
open System.Security.Cryptography
open System.Threading

/// A prepared configuration in the cache, with the time it was last used.
[<Sealed; AllowNullLiteral>]
type internal ConfEntry(chain: Chain, key: string, now: int64) =
    let mutable lastUse = now
    member _.Chain = chain
    member _.Key = key
    member _.LastUse = Volatile.Read &lastUse
    member _.Touch(now: int64) = Volatile.Write(&lastUse, now)

/// Prepared configurations by token. Tokens count up from a random start drawn when the process
/// starts, wrap around, and skip 0 and any token an entry still holds. The random start is what
/// keeps a token of an earlier runner process (which APISIX may still cache across a restart) from
/// naming another configuration here: two processes that hand out N1 and N2 tokens share one
/// with a probability of at most (N1 + N2) / 2^32, about 5 in a million for 10,000 each; any
/// other token is answered CONF_TOKEN_NOT_FOUND, and APISIX prepares again.
/// The same idempotency key gets the same token for as long as its entry lives. An entry lives
/// `lifetime` after its last use (sliding), then goes; past `capacity` entries the least recently
/// used go first.
[<Sealed>]
type ConfCache internal (lifetime: TimeSpan, capacity: int, time: TimeProvider, firstToken: uint32) =
    let byToken = ConcurrentDictionary<uint32, ConfEntry>()
    let byKey = ConcurrentDictionary<string, uint32>()
    let mutable counter = int (firstToken - 1u)
    // Uses are recorded at this granularity so that busy tokens are not written on every call.
    let touchEvery = min (TimeSpan.FromSeconds 1.0) (lifetime / 10.0)

    let now () = time.GetTimestamp()
    let lifetimeTicks = int64 (lifetime.TotalSeconds * float time.TimestampFrequency)
    let touchTicks = int64 (touchEvery.TotalSeconds * float time.TimestampFrequency)
    let expired (e: ConfEntry) (t: int64) = t - e.LastUse > lifetimeTicks

    let remove (token: uint32) (e: ConfEntry) =
        if byToken.TryRemove(KeyValuePair(token, e)) then
            if not (isNull e.Key) then
                byKey.TryRemove(KeyValuePair(e.Key, token)) |> ignore

    let rec freshToken () =
        let t = uint32 (Interlocked.Increment &counter)
        // 0 is never handed out: some clients read it as "no token".
        if t = 0u || byToken.ContainsKey t then freshToken () else t

    /// A cache whose tokens start at a random point.
    new(lifetime: TimeSpan, capacity: int, time: TimeProvider) =
        ConfCache(lifetime, capacity, time, BitConverter.ToUInt32(RandomNumberGenerator.GetBytes 4, 0))

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

    /// The token for a configuration, building its chain unless its key (null: none) already has a live one.
    member c.Prepare(key: string, build: unit -> Result<Chain, 'E>) : Result<uint32, 'E> =
        let t = now ()

        let existing =
            match if isNull key then (false, 0u) else byKey.TryGetValue key with
            | true, token ->
                match byToken.TryGetValue token with
                | true, e when not (expired e t) ->
                    e.Touch t
                    ValueSome token
                | _ -> ValueNone
            | _ -> ValueNone

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

                if not (isNull key) then byKey[key] <- token

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
