/// The conf cache: tokens by key, expiry after a lifetime without use, sweeping, wrap-around of the
/// token counter, capacity.
module Apisix.Runner.Tests.Runtime.ConfCacheTests

open System
open System.Collections.Generic
open System.Reflection
open Expecto
open FsCheck
open FsCheck.FSharp
open Apisix.Runner
open Apisix.Runner.Tests.Support.Generators
open Apisix.Runner.Tests.Support.ManualClock

/// A chain told apart by the name of its one plugin.
let private chainNamed (name: string) : Chain =
    { Request = { Run = pass; Plugins = [| name |]; Prefetch = [||] }
      Response = { Run = pass; Plugins = [||]; Prefetch = [||] } }

let private minute = TimeSpan.FromMinutes 1.0

let private cacheOf (capacity: int) =
    let clock = ManualClock()
    // Tokens from 1, so that the wrap-around below is reached on purpose; a real cache starts at random.
    ConfCache(minute, capacity, clock, 1u), clock

/// Prepares a chain named after the key (or "anonymous"); fails the test if the build is refused.
let private prepare (cache: ConfCache) (key: string voption) =
    match cache.Prepare(ValueOption.toObj key, fun () -> Ok(chainNamed (ValueOption.defaultValue "anonymous" key))) with
    | Ok token -> token
    | Error(e: string) -> failwith e

/// The live token of a key without building anything: none when the key has no live entry.
let private liveToken (cache: ConfCache) (key: string) =
    match cache.Prepare(key, fun () -> Error "not cached") with
    | Ok token -> Some token
    | Error _ -> None

/// The plugin name of a live token's chain.
let private chainName (cache: ConfCache) (token: uint32) =
    let mutable chain = Unchecked.defaultof<Chain>

    if cache.TryGet(token, &chain) then
        Some chain.Request.Plugins[0]
    else
        None

let private tokens =
    [
        testPropertyWithConfig (cases 200) "same key gives the same token, distinct keys distinct tokens, no key a new token each time"
        // Keys from a small alphabet so that repeats are common; None is a PrepareConf without a key.
        <| Prop.forAll (Gen.listOf (Gen.optionOf (Gen.elements [ "r1"; "r2"; "r3"; "r4" ])) |> Arb.fromGen) (fun keys ->
            let cache, _ = cacheOf 1000
            let issued = keys |> List.map (fun k -> k, prepare cache (ValueOption.ofOption k))
            let byKey = issued |> List.choose (fun (k, t) -> k |> Option.map (fun k -> k, t)) |> List.distinct
            // One token per key, and no token shared by two keys or by an anonymous preparation.
            Expect.equal byKey.Length (byKey |> List.map fst |> List.distinct |> List.length) "tokens per key"
            let anonymous = issued |> List.filter (fst >> Option.isNone) |> List.map snd
            let all = (byKey |> List.map snd) @ anonymous
            Expect.equal (List.distinct all).Length all.Length "distinct tokens"
            Expect.isFalse (List.contains 0u all) "token 0 was issued"

            for k, t in byKey do
                Expect.equal (chainName cache t) (Some k) "the chain of the key's token")
    ]

/// Sets the cache's token counter so that the next token is `next`; the counter is private state.
let private setNextToken (cache: ConfCache) (next: uint32) =
    let field = typeof<ConfCache>.GetField("counter", BindingFlags.NonPublic ||| BindingFlags.Instance)
    Expect.isTrue (not (isNull field)) "ConfCache has no 'counter' field any more; update this test"
    field.SetValue(cache, int (next - 1u))

let private lifetimes =
    [
        testCase "after the counter wraps, 0 and live tokens are skipped" <| fun () ->
            let cache, _ = cacheOf 1000
            let one = prepare cache (ValueSome "one")
            let two = prepare cache (ValueSome "two")
            Expect.equal [ one; two ] [ 1u; 2u ] "the first tokens"
            setNextToken cache (UInt32.MaxValue - 1u)
            let wrapped = [ for k in [ "a"; "b"; "c" ] -> prepare cache (ValueSome k) ]
            // MaxValue-1, MaxValue, then past 0, 1 and 2 (live) to 3.
            Expect.equal wrapped [ UInt32.MaxValue - 1u; UInt32.MaxValue; 3u ] "wrapped"
            Expect.equal (chainName cache one) (Some "one") "chainName cache one"
            Expect.equal (chainName cache two) (Some "two") "chainName cache two"
            Expect.equal (chainName cache 3u) (Some "c") "chainName cache 3u"

        testCase "an entry expires after its lifetime without use and is then not found" <| fun () ->
            let cache, clock = cacheOf 1000
            let used = prepare cache (ValueSome "used")
            let idle = prepare cache (ValueSome "idle")
            clock.Advance minute
            Expect.equal (chainName cache used) (Some "used") "chainName cache used"
            clock.Advance(TimeSpan.FromSeconds 1.0)
            // A lifetime and a second since its last use: gone; the other was used a second ago.
            Expect.equal (chainName cache idle) None "chainName cache idle"
            Expect.equal (liveToken cache "idle") None "liveToken cache 'idle'"
            Expect.equal (chainName cache used) (Some "used") "chainName cache used"
            Expect.equal cache.Count 1 "cache.Count"

        testCase "use slides the lifetime: TryGet and re-preparing the key keep an entry alive" <| fun () ->
            let cache, clock = cacheOf 1000
            let token = prepare cache (ValueSome "k")

            // Well over the lifetime in total, but never a lifetime without a use.
            for i in 1..6 do
                clock.Advance(TimeSpan.FromSeconds 40.0)

                if i % 2 = 0 then
                    Expect.equal (chainName cache token) (Some "k") "chainName cache token"
                else
                    Expect.equal (liveToken cache "k") (Some token) "liveToken cache 'k'"

            clock.Advance(TimeSpan.FromSeconds 62.0)
            Expect.equal (chainName cache token) None "chainName cache token"

        testCase "a key prepared again after expiry gets a new, working token" <| fun () ->
            let cache, clock = cacheOf 1000
            let old = prepare cache (ValueSome "k")
            clock.Advance(minute * 2.0)
            let fresh = prepare cache (ValueSome "k")
            Expect.notEqual fresh old "fresh"
            Expect.equal (chainName cache fresh) (Some "k") "chainName cache fresh"
            Expect.equal (chainName cache old) None "chainName cache old"
            // Removing the expired entry must not take the key's new token with it.
            Expect.equal (liveToken cache "k") (Some fresh) "liveToken cache 'k'"

        testCase "Sweep removes every expired entry" <| fun () ->
            let cache, clock = cacheOf 1000
            let tokens = [ for k in [ "a"; "b"; "c" ] -> prepare cache (ValueSome k) ]
            clock.Advance(TimeSpan.FromSeconds 30.0)
            let kept = prepare cache (ValueSome "d")
            clock.Advance(TimeSpan.FromSeconds 31.0)
            Expect.equal (cache.Sweep()) 3 "cache.Sweep()"
            Expect.equal cache.Count 1 "cache.Count"
            Expect.equal (chainName cache kept) (Some "d") "chainName cache kept"
            for t in tokens do
                Expect.equal (chainName cache t) None "the chain of a swept token"

        testCase "capacity bounds the cache and the most recently used entries survive" <| fun () ->
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
                    Expect.equal (chainName cache hot) (Some "hot") "chainName cache hot"

                if i % 5000 = 0 then
                    Expect.isGreaterThanOrEqual cache.Count 1 "the entries"
                    Expect.isLessThanOrEqual cache.Count (capacity + 1) "the entries"

            Expect.isGreaterThanOrEqual cache.Count 1 "the entries"
            Expect.isLessThanOrEqual cache.Count (capacity + 1) "the entries"
            Expect.equal (chainName cache hot) (Some "hot") "chainName cache hot"

            for i in 99_500..99_999 do
                let key = $"route-{i}"
                Expect.equal (liveToken cache key) (Some tokens[key]) "liveToken cache key"

            Expect.equal (liveToken cache "route-0") None "liveToken cache 'route-0'"
    ]

[<Tests>]
let tests =
    testSequencedGroup "Runtime.ConfCache" <| testList "Runtime.ConfCache" (tokens @ lifetimes)
