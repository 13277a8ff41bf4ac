/// The sample runner's plugins, as routes written for the Go runner's samples use them, played by
/// the independent Python client against the real process: once as built (JIT) and once as the
/// Native AOT binary, which must behave the same.
module Apisix.Runner.Tests.Process.SampleEndToEndTests

open System
open Expecto
open Apisix.Runner.Tests.Support.RunnerProcess
open Apisix.Runner.Tests.Support.ApisixScenario

let private call (id: int) (token: string) =
    step $$"""{"call": "HTTPReqCallReq", "msg": {"id": {{id}}, "path": "/get", "args": [{"name": "page", "value": "2"}]}, "token": "{{token}}"}"""

let private stop (id: int) (status: int) (headers: string) (body: string) =
    let content = if isNull body then "null" else $"\"{b64 body}\""
    $$"""{"type": 2, "msg": {"id": {{id}}, "action": {"stop": {"status": {{status}}, "headers": {{headers}}, "body": {{content}} } } }, "extra_info": []}"""

let private noAction (id: int) =
    $$"""{"type": 2, "msg": {"id": {{id}}, "action": null}, "extra_info": []}"""

/// Runs a scenario on a fresh runner process: the plugins keep state (limit-req's bucket).
let private onFreshRunner (program: Lazy<string>) (scenario: string -> unit) () =
    use sandbox = new Sandbox()
    use _runner = Runner.Ready(sandbox.Socket, program = program.Value)
    scenario sandbox.Socket

/// The scenarios, each on its own process of `program`.
let private scenarios (program: Lazy<string>) =
    [
        testCase "say, fault-injection, limit-req, request-body-rewrite, stop and rewrite answer as configured" <| onFreshRunner program (fun socket ->
            let r =
                play socket
                    [ prepare "say" [ "say", """{"body": "hello"}""" ]
                      prepare "say nothing" [ "say", "{}" ]
                      prepare "fault" [ "fault-injection", """{"body": "oops", "http_status": 503}""" ]
                      prepare "no fault" [ "fault-injection", """{"http_status": 503, "percentage": 0}""" ]
                      prepare "limit" [ "limit-req", """{"rate": 1, "burst": 0}""" ]
                      prepare "body" [ "request-body-rewrite", """{"new_body": "changed"}""" ]
                      prepare "stop" [ "stop", """{"status": 403, "headers": {"x-reason": "blocked"}, "body": "no"}""" ]
                      prepare "rewrite" [ "rewrite", """{"path": "/new", "headers": {"x-added": "1"}, "args": {"page": "3"}}""" ]
                      call 1 "say"
                      call 2 "say nothing"
                      call 3 "fault"
                      call 4 "no fault"
                      call 5 "limit"
                      call 6 "limit"
                      call 7 "body"
                      call 8 "stop"
                      call 9 "rewrite" ]

            expect r 8 (stop 1 200 """[{"name": "X-Resp-A6-Runner", "value": "DotNet"}]""" "hello")
            expect r 9 (noAction 2)
            expect r 10 (stop 3 503 "null" "oops")
            expect r 11 (noAction 4)
            expect r 12 (noAction 5)
            // A rate of 1 per second and no burst: the next call at once is over the limit.
            expect r 13 (stop 6 503 "null" null)

            expect r 14 $$"""{"type": 2, "msg": {"id": 7, "action": {"rewrite": {"path": null, "headers": null, "args": null, "resp_headers": null, "body": "{{b64 "changed"}}"} } }, "extra_info": []}"""

            expect r 15 (stop 8 403 """[{"name": "x-reason", "value": "blocked"}]""" "no")

            expect r 16 """{"type": 2, "msg": {"id": 9, "action": {"rewrite": {"path": "/new", "headers": [{"name": "x-added", "value": "1"}],
                "args": [{"name": "page", "value": "3"}], "resp_headers": null, "body": null}}}, "extra_info": []}""")

        testCase "response-rewrite reads the upstream body through ExtraInfo and rewrites status, headers and body" <| onFreshRunner program (fun socket ->
            let r =
                play socket
                    [ prepare "rr" [ "response-rewrite", """{"status": 201, "headers": {"x-a": "1"}, "filters": [{"regex": "world", "scope": "global", "replace": "apisix"}]}""" ]
                      step
                          $$"""{"call": "HTTPRespCallReq", "token": "rr", "extra_info": {"resp_body": "{{b64 "hello world world"}}"},
                              "msg": {"id": 21, "status": 200, "headers": [{"name": "content-type", "value": "text/plain"},
                                      {"name": "content-length", "value": "17"}]} }""" ]

            // The new body makes the upstream's content-length wrong: the whole header set goes without it.
            expect r 1 $$"""{"type": 4, "msg": {"id": 21, "status": 201,
                "headers": [{"name": "content-type", "value": "text/plain"}, {"name": "X-Resp-A6-Runner", "value": "DotNet"},
                            {"name": "x-a", "value": "1"}],
                "body": "{{b64 "hello apisix apisix"}}"}, "extra_info": [{"resp_body": {} }] }""")

        testCase "invalid configurations are rejected at PrepareConf, not skipped" <| onFreshRunner program (fun socket ->
            let r =
                play socket
                    [ prepare "bad status" [ "fault-injection", """{"http_status": 100}""" ]
                      prepare "bad percentage" [ "fault-injection", """{"http_status": 503, "percentage": 101}""" ]
                      prepare "bad rate" [ "limit-req", """{"rate": 0, "burst": 1}""" ]
                      prepare "bad regex" [ "response-rewrite", """{"filters": [{"regex": "(", "scope": "once", "replace": ""}]}""" ]
                      prepare "bad scope" [ "response-rewrite", """{"filters": [{"regex": "a", "scope": "twice", "replace": ""}]}""" ]
                      prepare "not json" [ "say", "{body" ]
                      prepare "unknown" [ "say", "{}"; "no-such-plugin", "{}" ] ]

            for i in 0 .. r.Length - 1 do
                expect r i serviceUnavailable)

    ]

/// The JIT runner as built, and the Native AOT binary, which must behave the same; each kind one
/// scenario at a time, as one group.
[<Tests>]
let tests =
    testList "Process.SampleEndToEnd" [
        testSequencedGroup "Process.SampleEndToEnd.JIT" <| testList "JIT" (scenarios sampleRunnerDll)
        testSequencedGroup "Process.SampleEndToEnd.AOT" <| testList "Native AOT" (scenarios aotSampleRunner)
    ]
