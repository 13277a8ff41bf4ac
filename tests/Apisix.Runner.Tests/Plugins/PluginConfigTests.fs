/// Typed configuration binding (PluginConfig, Plugin.ofJson): what the C# facade offers, offered
/// by the F# core; and the bounds on every plugin's configuration, in size and depth.
module Apisix.Runner.Tests.Plugins.PluginConfigTests

open System
open System.Collections.Generic
open System.Text.Json
open System.Text.Json.Serialization.Metadata
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.Expectations

/// A configuration shaped like the Go runner's fault-injection sample.
[<CLIMutable>]
type Fault =
    { HttpStatus: int
      Body: string
      Tags: string[] }

let private faultInfo = PluginConfig.reflectionTypeInfo<Fault> ()

let private noProblems (_: Fault) : string seq = Seq.empty

let private bind =
    [
        testCase "bind reads snake_case names without case and ignores unknown properties" <| fun () ->
            let fault =
                PluginConfig.bind faultInfo noProblems """{"http_status": 403, "BODY": "no", "Tags": ["a", "b"], "unknown": true}"""
                |> okValue

            Expect.equal fault.HttpStatus 403 "fault.HttpStatus"
            Expect.equal fault.Body "no" "fault.Body"
            Expect.equal fault.Tags [| "a"; "b" |] "fault.Tags"

        testList "an empty configuration reads as an empty object" [
            for json in [ ""; "   "; null ] ->
                testCase (if isNull json then "null" else $"'{json}'") <| fun () ->
                    let fault = PluginConfig.bind faultInfo noProblems json |> okValue
                    Expect.equal fault.HttpStatus 0 "the status"
                    Expect.isNull fault.Body "the body"
        ]

        testList "JSON that does not bind gives one invalid-JSON message and skips validation" [
            for json in [ "not json"; """{"http_status": "ten"}"""; "[1, 2]"; """{"http_status": 1""" ] ->
                testCase json <| fun () ->
                    let mutable validated = false

                    let validate (_: Fault) : string seq =
                        validated <- true
                        Seq.empty

                    let problems = PluginConfig.bind faultInfo validate json |> errorValue
                    Expect.hasLength problems 1 "the problems"
                    let problem = List.exactlyOne problems
                    Expect.stringStarts problem "invalid JSON configuration: " "the problem"
                    // The serializer's own explanation follows, so the operator sees what is wrong.
                    Expect.isGreaterThan problem.Length "invalid JSON configuration: ".Length "the problem's length"
                    Expect.isFalse validated "validation ran"
        ]

        testCase "the literal null is rejected with its own message" <| fun () ->
            let problems = PluginConfig.bind faultInfo noProblems " null " |> errorValue
            Expect.equal problems [ "the configuration is null: expected a JSON object" ] "problems"

        testCase "every validation message is kept, in order; none accepts the bound value" <| fun () ->
            let validate (f: Fault) =
                seq {
                    if String.IsNullOrEmpty f.Body then "body is required"
                    if f.HttpStatus < 200 then $"http_status must be at least 200, got {f.HttpStatus}"
                }

            Expect.equal (PluginConfig.bind faultInfo validate """{"http_status": 100}""" |> errorValue) [ "body is required"; "http_status must be at least 200, got 100" ] "PluginConfig.bind faultInfo validate '''('http_status': 100)''' |> ..."

            let fault = PluginConfig.bind faultInfo validate """{"http_status": 418, "body": "teapot"}""" |> okValue
            Expect.equal fault.HttpStatus 418 "fault.HttpStatus"
            Expect.equal fault.Body "teapot" "fault.Body"

        testCase "validate sees the bound configuration" <| fun () ->
            let seen = List<Fault>()

            let validate (f: Fault) : string seq =
                seen.Add f
                Seq.empty

            PluginConfig.bind faultInfo validate """{"http_status": 500}""" |> okValue |> ignore
            Expect.hasLength seen 1 "the configurations validate saw"
            Expect.equal seen[0].HttpStatus 500 "the status validate saw"

        testCase "bind works with a JsonTypeInfo made without reflection" <| fun () ->
            // Metadata as source generation produces it: no reflection-based resolver anywhere.
            let options = JsonSerializerOptions(TypeInfoResolver = JsonTypeInfoResolver.Combine())
            let intInfo = JsonMetadataServices.CreateValueInfo<int>(options, JsonMetadataServices.Int32Converter)
            let stringInfo = JsonMetadataServices.CreateValueInfo<string>(options, JsonMetadataServices.StringConverter)
            let positive (n: int) = if n > 0 then Seq.empty else Seq.singleton $"must be above 0, got {n}"

            Expect.equal (PluginConfig.bind intInfo positive "42") (Ok 42) "PluginConfig.bind intInfo positive '42'"
            Expect.equal (PluginConfig.bind intInfo positive "-1") (Error [ "must be above 0, got -1" ]) "PluginConfig.bind intInfo positive '-1'"
            Expect.stringStarts (PluginConfig.bind intInfo positive "" |> errorValue |> List.exactlyOne) "invalid JSON configuration: " "PluginConfig.bind intInfo positive '' |> errorValue |> List.exactlyOne"
            Expect.equal (PluginConfig.bind stringInfo PluginConfig.accept "\"hi\"") (Ok "hi") "PluginConfig.bind stringInfo PluginConfig.accept ''hi''"
            Expect.equal (PluginConfig.bind stringInfo PluginConfig.accept "null") (Error [ "the configuration is null: expected a JSON object" ]) "PluginConfig.bind stringInfo PluginConfig.accept 'null'"

        testCase "the reflection options are made once, read-only, with the Go runner's naming" <| fun () ->
            let options = PluginConfig.reflectionOptions ()
            Expect.isTrue (obj.ReferenceEquals(options, PluginConfig.reflectionOptions ())) "the same instance: PluginConfig.reflectionOptions ()"
            Expect.isTrue options.IsReadOnly "the options are read-only"
            Expect.isTrue options.PropertyNameCaseInsensitive "property names are case-insensitive"
            Expect.equal (options.PropertyNamingPolicy.ConvertName "HttpStatus") "http_status" "options.PropertyNamingPolicy.ConvertName 'HttpStatus'"
            Expect.isTrue (obj.ReferenceEquals(options, faultInfo.Options)) "the same instance: faultInfo.Options"

        testCase "describe and parser make the problems one message, joined as the runner logs them" <| fun () ->
            Expect.equal (PluginConfig.describe [ "a"; "b" ]) "a; b" "PluginConfig.describe [ 'a'; 'b' ]"
            Expect.equal (PluginConfig.describe []) "" "PluginConfig.describe []"

            let parse = PluginConfig.parser faultInfo (fun f -> [ "one"; $"two {f.HttpStatus}" ])
            Expect.equal (parse """{"http_status": 7}""") (Error "one; two 7") "parse '''('http_status': 7)'''"
    ]

let private faultFilter (f: Fault) : Filter = respond f.HttpStatus [ "x-tags", String.Join(",", f.Tags) ] f.Body

let private requireBody (f: Fault) =
    if String.IsNullOrEmpty f.Body then Seq.singleton "body is required" else Seq.empty

let private ofJson =
    [
        testCase "ofJson binds once per PrepareConf and runs the request filter made from the configuration" <| fun () ->
            let plugin = Plugin.ofJson "fault" faultInfo requireBody faultFilter

            let chain =
                PluginTestKit.Prepare [ plugin, """{"http_status": 503, "body": "down", "tags": ["x", "y"]}""" ] |> okValue

            Expect.equal chain.Request.Plugins.Length 1 "the request filters"
            Expect.isEmpty chain.Response.Plugins "the response filters"

            let result = PluginTestKit.RunRequestAsync(chain, TestRequest()).Result

            match result.Answer.Action with
            | HttpReqCall.Stop stop ->
                Expect.equal stop.Status 503us "stop.Status"
                Expect.equal (TestAnswer.text stop.Body) "down" "TestAnswer.text stop.Body"
                Expect.equal (TestAnswer.first "X-Tags" stop.Headers) "x,y" "TestAnswer.first 'X-Tags' stop.Headers"
            | other -> failwith $"expected a Stop, got {TestAnswer.describe other}"

        testCase "ofJson rejects a configuration with the joined problems, naming the plugin" <| fun () ->
            let plugin = Plugin.ofJson "fault" faultInfo requireBody faultFilter
            match plugin.Prepare "{}" with
            | Error problem -> Expect.equal problem "body is required" "the problem"
            | Ok _ -> failtest "a configuration without a body was taken"

            let problems = PluginTestKit.Prepare [ plugin, "{oops" ] |> errorValue
            Expect.stringStarts (List.exactlyOne problems) "plugin 'fault' rejected its configuration: invalid JSON configuration: " "List.exactlyOne problems"

        testCase "ofJsonResponse makes a response-phase plugin" <| fun () ->
            let shout (f: Fault) : Filter =
                fun _ resp ->
                    resp.Status <- f.HttpStatus
                    resp.SetBody f.Body
                    proceed

            let plugin = Plugin.ofJsonResponse "shout" faultInfo requireBody shout
            let chain = PluginTestKit.Prepare [ plugin, """{"http_status": 201, "body": "LOUD"}""" ] |> okValue
            Expect.isEmpty chain.Request.Plugins "the request filters"
            let result = PluginTestKit.RunResponseAsync(chain, TestUpstream()).Result
            Expect.equal result.Answer.Status 201us "result.Answer.Status"
            Expect.equal (TestAnswer.text result.Answer.Body) "LOUD" "TestAnswer.text result.Answer.Body"
            Expect.isFalse (TestAnswer.isUnchanged result.Answer) "TestAnswer.isUnchanged result.Answer"
    ]

// ---- bounds on every configuration ----

[<CLIMutable>]
type BoundedConfig = { Body: string; Nested: JsonElement }

let private boundedInfo = PluginConfig.reflectionTypeInfo<BoundedConfig> ()

let private bindBounded (json: string) =
    PluginConfig.bind boundedInfo PluginConfig.accept json

/// `{"nested": [[…]]}` with `levels` of nesting in all, the outer object included.
let private nested (levels: int) =
    "{\"nested\": " + String('[', levels - 1) + String(']', levels - 1) + "}"

/// `{"body": "aaa…"}` of exactly `size` bytes.
let private ofSize (size: int) =
    "{\"body\": \"" + String('a', size - 12) + "\"}"

let private bounds =
    [
        testCase "a configuration of 1 MiB binds; one byte more is refused with its size and the limit" <| fun () ->
            match bindBounded (ofSize PluginConfig.MaxBytes) with
            | Ok c -> Expect.equal c.Body.Length (PluginConfig.MaxBytes - 12) "c.Body.Length"
            | Error e -> failtest $"refused: {e}"

            match bindBounded (ofSize (PluginConfig.MaxBytes + 1)) with
            | Error [ problem ] -> Expect.equal problem "the configuration is 1048577 bytes, over the limit of 1048576" "problem"
            | other -> failtest $"expected one problem, got {other}"

        testCase "the size limit counts UTF-8 bytes, not characters" <| fun () ->
            let json = "{\"body\": \"" + String('é', 600_000) + "\"}"
            Expect.isTrue (json.Length < PluginConfig.MaxBytes) "json.Length < PluginConfig.MaxBytes"

            match bindBounded json with
            | Error [ problem ] -> Expect.equal problem "the configuration is 1200012 bytes, over the limit of 1048576" "problem"
            | other -> failtest $"expected one problem, got {other}"

        testCase "nesting of 64 levels binds; 65 is refused with the limit" <| fun () ->
            match bindBounded (nested 64) with
            | Ok c -> Expect.equal c.Nested.ValueKind JsonValueKind.Array "c.Nested.ValueKind"
            | Error e -> failtest $"refused: {e}"

            match bindBounded (nested 65) with
            | Error [ problem ] -> Expect.equal problem "the configuration nests objects and arrays deeper than 64 levels" "problem"
            | other -> failtest $"expected one problem, got {other}"

        testCase "the depth limit holds whatever the plugin's serializer options allow, and brackets in strings are not nesting" <| fun () ->
            let options = JsonSerializerOptions(MaxDepth = 1000, PropertyNameCaseInsensitive = true, TypeInfoResolver = DefaultJsonTypeInfoResolver())
            let info = options.GetTypeInfo typeof<BoundedConfig> :?> JsonTypeInfo<BoundedConfig>

            for levels in [ 65; 500 ] do
                match PluginConfig.bind info PluginConfig.accept (nested levels) with
                | Error [ problem ] -> Expect.equal problem "the configuration nests objects and arrays deeper than 64 levels" "problem"
                | other -> failtest $"{levels} levels: expected one problem, got {other}"

            match PluginConfig.bind info PluginConfig.accept ("{\"body\": \"" + String('[', 5000) + String('{', 5000) + "\"}") with
            | Ok c -> Expect.equal c.Body.Length (10_000) "c.Body.Length"
            | Error e -> failtest $"refused: {e}"

        testCase "every plugin's configuration is bounded, whatever parser it brings" <| fun () ->
            let raw = Plugin.create "raw" (fun (json: string) -> Ok json.Length) (fun _ -> pass)

            match Plugin.prepare raw (String('x', PluginConfig.MaxBytes + 1)) with
            | Error problem -> Expect.equal problem "the configuration is 1048577 bytes, over the limit of 1048576" "problem"
            | Ok _ -> failtest "an oversized configuration was taken"

            match Plugin.prepare raw (String('[', 65)) with
            | Error problem -> Expect.equal problem "the configuration nests objects and arrays deeper than 64 levels" "problem"
            | Ok _ -> failtest "a configuration nested 65 levels deep was taken"

            // Not JSON, but within bounds: the plugin's own parser decides.
            for json in [ "ok"; String('x', PluginConfig.MaxBytes) ] do
                match Plugin.prepare raw json with
                | Ok _ -> ()
                | Error problem -> failtest $"a configuration of {json.Length} characters was refused: {problem}"
    ]

[<Tests>]
let tests =
    testSequencedGroup "Plugins.PluginConfig"
    <| testList "Plugins.PluginConfig" [
        testList "PluginConfig.bind" bind
        testList "Plugin.ofJson" ofJson
        testList "bounds" bounds
    ]
