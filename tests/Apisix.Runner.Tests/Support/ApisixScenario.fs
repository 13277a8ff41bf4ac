/// Scenarios played by the independent client tests/interop/apisix_client.py (flatc-generated
/// Python only) against a runner process: steps as JSON, one Python run per scenario.
module Apisix.Runner.Tests.Support.ApisixScenario

open System
open System.Collections.Generic
open System.IO
open System.Text
open System.Text.Json.Nodes
open Expecto
open Apisix.Runner.Tests.Support.RunnerProcess

let interop (file: string) =
    Path.Combine(repoRoot.Value, "tests", "interop", file)

/// flatc's Python for the protocol schema, generated once per test run.
let generated =
    lazy
        let dir = Directory.CreateTempSubdirectory "a6-e2e-"
        AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> dir.Delete true)
        run "/usr/bin/flatc" [ "--python"; "-o"; dir.FullName; interop "ext-plugin.fbs" ] "" |> ignore
        dir.FullName

let b64 (text: string) = Convert.ToBase64String(Encoding.UTF8.GetBytes text)
let step (json: string) = JsonNode.Parse json
let str (s: string) : JsonNode = JsonValue.Create s
let obj (fields: (string * JsonNode) list) : JsonNode = JsonObject([ for k, v in fields -> KeyValuePair(k, v) ])

/// A PrepareConf step for `plugins` (name, JSON configuration) in order, its token remembered as `name`.
/// The key is the configuration itself, as APISIX's is derived from the route's.
let prepare (name: string) (plugins: (string * string) list) =
    let conf = JsonArray [| for p, c in plugins -> obj [ "name", str p; "value", str c ] |]
    let key = conf.ToJsonString()
    obj [ "prepare", obj [ "conf", conf; "key", str key ]; "as", str name ]

/// Plays `steps` with apisix_client.py on one connection: one result per step.
let play (socket: string) (steps: JsonNode list) : JsonNode[] =
    let scenario = obj [ "socket", str socket; "steps", JsonArray(Array.ofList steps) ]
    let out = run "/usr/bin/python3" [ interop "apisix_client.py"; generated.Value ] (scenario.ToJsonString())
    let results = JsonNode.Parse(out).AsArray() |> Seq.toArray
    Expect.equal results.Length steps.Length "one result per step"
    results

/// `actual` is exactly `expected` (JSON); `what` names it on failure.
let same (what: string) (expected: string) (actual: JsonNode) =
    let want = JsonNode.Parse expected

    if not (JsonNode.DeepEquals(want, actual)) then
        let got = if isNull actual then "null" else actual.ToJsonString()
        failtest $"{what}:\n  expected {want.ToJsonString()}\n  got      {got}"

let expect (results: JsonNode[]) (i: int) (expected: string) = same $"step {i}" expected (results[i])

/// The token of a PrepareConf step that succeeded.
let token (results: JsonNode[]) (i: int) =
    let result = results[i]
    same $"step {i} is a PrepareConf answer" "1" (result["type"])
    let msg = result["msg"]
    msg["conf_token"].GetValue<uint32>()

let serviceUnavailable = """{"type": 0, "msg": {"code": 1}}"""

