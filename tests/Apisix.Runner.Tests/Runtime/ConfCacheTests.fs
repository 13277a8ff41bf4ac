module Apisix.Runner.Tests.ConfCacheTests

open System
open System.Collections.Generic
open System.Reflection
open System.Threading
open Xunit
open FsCheck
open FsCheck.FSharp
open Apisix.Runner

/// A clock that moves only when told: expiry is tested without waiting. Timestamps are ticks.
type ManualClock() =
    inherit TimeProvider()
    let epoch = DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero)
    let mutable ticks = 0L

    member _.Advance(by: TimeSpan) = Interlocked.Add(&ticks, by.Ticks) |> ignore
    override _.TimestampFrequency = TimeSpan.TicksPerSecond
    override _.GetTimestamp() = Interlocked.Read &ticks
    override _.GetUtcNow() = epoch.AddTicks(Interlocked.Read &ticks)

/// A chain told apart by the name of its one plugin.
let private chainNamed (name: string) : Chain =
    { RequestFilters = [| struct (name, Filter.pass) |]
      ResponseFilters = [||]
      RequestPrefetch = [||]
      ResponsePrefetch = [||] }

let private minute = TimeSpan.FromMinutes 1.0

let private cacheOf (capacity: int) =
    let clock = ManualClock()
    ConfCache(minute, capacity, clock), clock

/// Prepares a chain named after the key (or "anonymous"); fails the test if the build is refused.
let private prepare (cache: ConfCache) (key: string voption) =
    match cache.Prepare(key, fun () -> Ok(chainNamed (ValueOption.defaultValue "anonymous" key))) with
    | Ok token -> token
    | Error(e: string) -> failwith e

/// The live token of a key without building anything: none when the key has no live entry.
let private liveToken (cache: ConfCache) (key: string) =
    match cache.Prepare(ValueSome key, fun () -> Error "not cached") with
    | Ok token -> Some token
    | Error _ -> None

/// The plugin name of a live token's chain.
let private chainName (cache: ConfCache) (token: uint32) =
    let mutable chain = Unchecked.defaultof<Chain>

    if cache.TryGet(token, &chain) then
        let struct (name, _) = chain.RequestFilters[0]
        Some name
    else
        None

[<Fact>]
let ``same key gives the same token, distinct keys distinct tokens, no key a new token each time`` () =
    // Keys from a small alphabet so that repeats are common; None is a PrepareConf without a key.
    let keys = Gen.listOf (Gen.optionOf (Gen.elements [ "r1"; "r2"; "r3"; "r4" ])) |> Arb.fromGen

    Check.One(
        Config.QuickThrowOnFailure.WithMaxTest 200,
        Prop.forAll keys (fun keys ->
            let cache, _ = cacheOf 1000
            let issued = keys |> List.map (fun k -> k, prepare cache (ValueOption.ofOption k))
            let byKey = issued |> List.choose (fun (k, t) -> k |> Option.map (fun k -> k, t)) |> List.distinct
            // One token per key, and no token shared by two keys or by an anonymous preparation.
            Assert.Equal(byKey |> List.map fst |> List.distinct |> List.length, byKey.Length)
            let anonymous = issued |> List.filter (fst >> Option.isNone) |> List.map snd
            let all = (byKey |> List.map snd) @ anonymous
            Assert.Equal(all.Length, (List.distinct all).Length)
            Assert.DoesNotContain(0u, all)

            for k, t in byKey do
                Assert.Equal(Some k, chainName cache t))
    )

/// Sets the cache's token counter so that the next token is `next`; the counter is private state.
let private setNextToken (cache: ConfCache) (next: uint32) =
    let field = typeof<ConfCache>.GetField("counter", BindingFlags.NonPublic ||| BindingFlags.Instance)
    Assert.True(not (isNull field), "ConfCache has no 'counter' field any more; update this test")
    field.SetValue(cache, int (next - 1u))

[<Fact>]
let ``after the counter wraps, 0 and live tokens are skipped`` () =
    let cache, _ = cacheOf 1000
    let one = prepare cache (ValueSome "one")
    let two = prepare cache (ValueSome "two")
    Assert.Equal<uint32 list>([ 1u; 2u ], [ one; two ])
    setNextToken cache (UInt32.MaxValue - 1u)
    let wrapped = [ for k in [ "a"; "b"; "c" ] -> prepare cache (ValueSome k) ]
    // MaxValue-1, MaxValue, then past 0, 1 and 2 (live) to 3.
    Assert.Equal<uint32 list>([ UInt32.MaxValue - 1u; UInt32.MaxValue; 3u ], wrapped)
    Assert.Equal(Some "one", chainName cache one)
    Assert.Equal(Some "two", chainName cache two)
    Assert.Equal(Some "c", chainName cache 3u)

[<Fact>]
let ``an entry expires after its lifetime without use and is then not found`` () =
    let cache, clock = cacheOf 1000
    let used = prepare cache (ValueSome "used")
    let idle = prepare cache (ValueSome "idle")
    clock.Advance minute
    Assert.Equal(Some "used", chainName cache used)
    clock.Advance(TimeSpan.FromSeconds 1.0)
    // A lifetime and a second since its last use: gone; the other was used a second ago.
    Assert.Equal(None, chainName cache idle)
    Assert.Equal(None, liveToken cache "idle")
    Assert.Equal(Some "used", chainName cache used)
    Assert.Equal(1, cache.Count)

[<Fact>]
let ``use slides the lifetime: TryGet and re-preparing the key keep an entry alive`` () =
    let cache, clock = cacheOf 1000
    let token = prepare cache (ValueSome "k")

    // Well over the lifetime in total, but never a lifetime without a use.
    for i in 1..6 do
        clock.Advance(TimeSpan.FromSeconds 40.0)

        if i % 2 = 0 then
            Assert.Equal(Some "k", chainName cache token)
        else
            Assert.Equal(Some token, liveToken cache "k")

    clock.Advance(TimeSpan.FromSeconds 62.0)
    Assert.Equal(None, chainName cache token)

[<Fact>]
let ``a key prepared again after expiry gets a new, working token`` () =
    let cache, clock = cacheOf 1000
    let old = prepare cache (ValueSome "k")
    clock.Advance(minute * 2.0)
    let fresh = prepare cache (ValueSome "k")
    Assert.NotEqual(old, fresh)
    Assert.Equal(Some "k", chainName cache fresh)
    Assert.Equal(None, chainName cache old)
    // Removing the expired entry must not take the key's new token with it.
    Assert.Equal(Some fresh, liveToken cache "k")

[<Fact>]
let ``Sweep removes every expired entry`` () =
    let cache, clock = cacheOf 1000
    let tokens = [ for k in [ "a"; "b"; "c" ] -> prepare cache (ValueSome k) ]
    clock.Advance(TimeSpan.FromSeconds 30.0)
    let kept = prepare cache (ValueSome "d")
    clock.Advance(TimeSpan.FromSeconds 31.0)
    Assert.Equal(3, cache.Sweep())
    Assert.Equal(1, cache.Count)
    Assert.Equal(Some "d", chainName cache kept)
    Assert.All(tokens, fun t -> Assert.Equal(None, chainName cache t))

[<Fact>]
let ``capacity bounds the cache and the most recently used entries survive`` () =
    let capacity = 1000
    let clock = ManualClock()
    let cache = ConfCache(TimeSpan.FromHours 1.0, capacity, clock)
    let tokens = Dictionary<string, uint32>()
    let hot = prepare cache (ValueSome "hot")

    for i in 0..99_999 do
        // Distinct timestamps make "least recently used" exact; 100 k steps stay within the lifetime.
        clock.Advance(TimeSpan.FromMilliseconds 5.0)
        let key = $"route-{i}"
        tokens[key] <- prepare cache (ValueSome key)
        // Used every 0.5 s; uses are recorded at a 1 s granularity, so it is never more than
        // 1.5 s (300 entries) behind the newest: always among the most recent `capacity`.
        if i % 100 = 0 then
            Assert.Equal(Some "hot", chainName cache hot)

        if i % 5000 = 0 then
            Assert.InRange(cache.Count, 1, capacity + 1)

    Assert.InRange(cache.Count, 1, capacity + 1)
    Assert.Equal(Some "hot", chainName cache hot)

    for i in 99_500..99_999 do
        let key = $"route-{i}"
        Assert.Equal(Some tokens[key], liveToken cache key)

    Assert.Equal(None, liveToken cache "route-0")

// ---- Chain.build ----

let private registry (plugins: Plugin list) =
    let d = Dictionary<string, Plugin>()

    for p in plugins do
        d[p.Name] <- p

    d :> IReadOnlyDictionary<_, _>

let private accepting = Plugin.ofFilter "accepting" Filter.pass

let private picky =
    Plugin.create "picky" (fun json -> if json = "ok" then Ok() else Error $"wanted ok, got '{json}'") (fun () -> Filter.pass)

let private throwing =
    Plugin.create "throwing" (fun (_: string) -> raise (FormatException "parser blew up")) (fun () -> Filter.pass)

let private names (filters: struct (string * Filter)[]) = [ for struct (n, _) in filters -> n ]

[<Fact>]
let ``Chain.build names every unknown plugin, rejected configuration and throwing parser`` () =
    let conf =
        [| TextEntry.Set("accepting", "")
           TextEntry.Set("missing", "{}")
           TextEntry.Set("picky", "nope")
           TextEntry.Set("throwing", "{}") |]

    match Chain.build (registry [ accepting; picky; throwing ]) conf with
    | Ok _ -> failwith "a configuration with broken plugins was accepted"
    | Error problems ->
        Assert.Equal(3, problems.Length)
        Assert.Contains("missing", problems[0])
        Assert.Contains("picky", problems[1])
        Assert.Contains("wanted ok, got 'nope'", problems[1])
        Assert.Contains("throwing", problems[2])
        Assert.Contains("parser blew up", problems[2])

[<Fact>]
let ``Chain.build keeps the route's order, splits phases and deduplicates prefetch per phase`` () =
    let reader name infos = Plugin.ofFilter name Filter.pass |> Plugin.prefetch infos
    let respond = Plugin.createResponse "respond" Ok (fun _ -> Filter.pass) |> Plugin.prefetch [ ExtraInfo.RespBody ]
    let plugins = [ reader "b" [ ExtraInfo.Var "x"; ExtraInfo.ReqBody ]; reader "a" [ ExtraInfo.Var "x" ]; respond; picky ]
    let conf = [| yield TextEntry.Set("picky", "ok"); for n in [ "b"; "respond"; "a"; "b" ] -> TextEntry.Set(n, "") |]

    match Chain.build (registry plugins) conf with
    | Error problems -> failwith (String.Join("; ", problems))
    | Ok chain ->
        Assert.Equal<string list>([ "picky"; "b"; "a"; "b" ], names chain.RequestFilters)
        Assert.Equal<string list>([ "respond" ], names chain.ResponseFilters)
        Assert.Equal<ExtraInfo.Info[]>([| ExtraInfo.Var "x"; ExtraInfo.ReqBody |], chain.RequestPrefetch)
        Assert.Equal<ExtraInfo.Info[]>([| ExtraInfo.RespBody |], chain.ResponsePrefetch)
