/// Building a route's chain from its configuration: plugins found by name, each configuration
/// parsed, the route's order kept, phases split, prefetch deduplicated; every problem named.
module Apisix.Runner.Tests.Plugins.ChainTests

open System
open System.Collections.Generic
open Expecto
open Apisix.Runner

let private registry (plugins: Plugin list) =
    let d = Dictionary<string, Plugin>()

    for p in plugins do
        d[p.Name] <- p

    d :> IReadOnlyDictionary<_, _>

let private accepting = Plugin.ofFilter "accepting" pass

let private picky =
    Plugin.create "picky" (fun json -> if json = "ok" then Ok() else Error $"wanted ok, got '{json}'") (fun () -> pass)

let private throwing =
    Plugin.create "throwing" (fun (_: string) -> raise (FormatException "parser blew up")) (fun () -> pass)


[<Tests>]
let tests =
    testSequencedGroup "Plugins.Chain"
    <| testList "Plugins.Chain" [
        testCase "Chain.build names every unknown plugin, rejected configuration and throwing parser" <| fun () ->
            let conf =
                [| TextEntry.Set("accepting", "")
                   TextEntry.Set("missing", "{}")
                   TextEntry.Set("picky", "nope")
                   TextEntry.Set("throwing", "{}") |]

            match Chain.build (registry [ accepting; picky; throwing ]) conf with
            | Ok _ -> failwith "a configuration with broken plugins was accepted"
            | Error problems ->
                Expect.equal problems.Length 3 "problems.Length"
                Expect.stringContains problems[0] "missing" "the first problem"
                Expect.stringContains problems[1] "picky" "the second problem"
                Expect.stringContains problems[1] "wanted ok, got 'nope'" "the second problem"
                Expect.stringContains problems[2] "throwing" "the third problem"
                Expect.stringContains problems[2] "parser blew up" "the third problem"

        testCase "Chain.build keeps the route's order, splits phases and deduplicates prefetch per phase" <| fun () ->
            let reader name infos = Plugin.ofFilter name pass |> Plugin.prefetch infos
            let respond = Plugin.createResponse "respond" Ok (fun _ -> pass) |> Plugin.prefetch [ ExtraInfo.RespBody ]
            let plugins = [ reader "b" [ ExtraInfo.Var "x"; ExtraInfo.ReqBody ]; reader "a" [ ExtraInfo.Var "x" ]; respond; picky ]
            let conf = [| yield TextEntry.Set("picky", "ok"); for n in [ "b"; "respond"; "a"; "b" ] -> TextEntry.Set(n, "") |]

            match Chain.build (registry plugins) conf with
            | Error problems -> failwith (String.Join("; ", problems))
            | Ok chain ->
                Expect.equal chain.Request.Plugins [| "picky"; "b"; "a"; "b" |] "the request phase's plugins"
                Expect.equal chain.Response.Plugins [| "respond" |] "the response phase's plugins"
                Expect.equal chain.Request.Prefetch [| ExtraInfo.Var "x"; ExtraInfo.ReqBody |] "the request phase's prefetch"
                Expect.equal chain.Response.Prefetch [| ExtraInfo.RespBody |] "the response phase's prefetch"
    ]
