/// The real TestHost process, started as APISIX starts it, driven over its socket by the independent
/// client tests/interop/apisix_client.py (flatc-generated Python only). One Python run per scenario,
/// each scenario one connection with many steps.
module Apisix.Runner.Tests.Process.EndToEndTests

open System
open System.Collections.Generic
open System.IO
open System.Text
open System.Text.Json.Nodes
open Expecto
open Apisix.Runner.Tests.Support.RunnerProcess
open Apisix.Runner.Tests.Support.ApisixScenario

/// One TestHost for every scenario: they use distinct conf keys, so they do not meet. Started by the
/// first scenario that runs, stopped when the tests end.
let private host =
    lazy
        let sandbox = new Sandbox()

        try
            let runner = Runner.Ready sandbox.Socket
            runner.ServeUntilTestsEnd()
            afterRunTests (fun () -> (sandbox :> IDisposable).Dispose())
            runner
        with _ ->
            (sandbox :> IDisposable).Dispose()
            reraise ()

[<Tests>]
let tests =
    testSequencedGroup "Process.EndToEnd"
    <| testList "Process.EndToEnd" [
        testCase "PrepareConf gives tokens; an unknown plugin or a rejected config is an error, never skipped" <| fun () ->
            let r =
                play host.Value.Socket
                    [ prepare "stop" [ "stop", """{"status": 403}""" ]
                      prepare "stop again" [ "stop", """{"status": 403}""" ]
                      prepare "unknown" [ "stop", "{}"; "no-such-plugin", "{}" ]
                      prepare "rejected" [ "stop", "{}"; "picky", """{"ok": false}""" ]
                      prepare "accepted" [ "picky", """{"ok": true}""" ]
                      step """{"call": "HTTPReqCallReq", "msg": {"id": 1, "path": "/"}, "token": "accepted"}"""
                      step """{"call": "HTTPReqCallReq", "msg": {"id": 2, "path": "/"}, "token": "stop"}""" ]

            Expect.equal (token r 1) (token r 0) "token r 1"
            expect r 2 serviceUnavailable
            expect r 3 serviceUnavailable
            Expect.notEqual (token r 4) (token r 0) "token r 4"
            expect r 5 """{"type": 2, "msg": {"id": 1, "action": null}, "extra_info": []}"""
            expect r 6 """{"type": 2, "msg": {"id": 2, "action": {"stop": {"status": 403, "headers": null, "body": null}}}, "extra_info": []}"""

        testCase "HTTPReqCall: stop, rewrite, what a filter sees, variables on demand, prefetch, body" <| fun () ->
            let big = String('x', 300_000) // several reads each way
            let r =
                play host.Value.Socket
                    [ prepare "stop" [ "stop", """{"status": 401, "headers": {"www-authenticate": "Basic"}, "body": "who?"}""" ]
                      prepare "rewrite" [ "rewrite", """{"path": "/new", "headers": {"x-add": "1", "x-del": null}, "args": {"a": "9", "gone": null}, "resp_headers": {"x-resp": "r"}, "body": "new body"}""" ]
                      prepare "mirror" [ "mirror", "{}" ]
                      prepare "vars" [ "vars", """{"names": ["remote_addr", "unset_var"]}""" ]
                      prepare "prefetch" [ "prefetch", """{"names": ["remote_addr", "request_time"]}""" ]
                      prepare "body" [ "body", "{}" ]
                      step """{"call": "HTTPReqCallReq", "msg": {"id": 1, "path": "/"}, "token": "stop"}"""
                      step """{"call": "HTTPReqCallReq", "msg": {"id": 2, "path": "/old", "args": [{"name": "a", "value": "1"}], "headers": [{"name": "x-del", "value": "v"}]}, "token": "rewrite"}"""
                      // From 10.0.0.1, POST.
                      step
                          """{"call": "HTTPReqCallReq", "token": "mirror",
                              "msg": {"id": 3, "src_ip": "CgAAAQ==", "method": 2, "path": "/seen",
                                      "args": [{"name": "a", "value": "1"}, {"name": "flag", "value": null}, {"name": "a", "value": "2"}],
                                      "headers": [{"name": "host", "value": "example.com"}]}}"""
                      step $$"""{"call": "HTTPReqCallReq", "msg": {"id": 4, "path": "/"}, "token": "vars", "extra_info": {"var:remote_addr": "{{b64 "10.0.0.1"}}", "var:unset_var": null} }"""
                      step $$"""{"call": "HTTPReqCallReq", "msg": {"id": 5, "path": "/"}, "token": "prefetch", "pipelined": 3, "extra_info": {"var:remote_addr": "{{b64 "10.0.0.1"}}", "var:request_time": "{{b64 "0.5"}}", "req_body": "{{b64 "ignored"}}"} }"""
                      step $$"""{"call": "HTTPReqCallReq", "msg": {"id": 6, "path": "/"}, "token": "body", "extra_info": {"req_body": "{{b64 big}}"} }"""
                      step """{"call": "HTTPReqCallReq", "msg": {"id": 7, "path": "/"}, "token": "body", "extra_info": {"req_body": null}}""" ]

            expect r 6 $$"""{"type": 2, "msg": {"id": 1, "action": {"stop": {"status": 401, "headers": [{"name": "www-authenticate", "value": "Basic"}], "body": "{{b64 "who?"}}"} } }, "extra_info": []}"""

            expect r 7 $$"""{"type": 2, "msg": {"id": 2, "action": {"rewrite": {"path": "/new",
                "headers": [{"name": "x-add", "value": "1"}, {"name": "x-del", "value": null}],
                "args": [{"name": "a", "value": "1"}, {"name": "a", "value": "9"}, {"name": "gone", "value": null}],
                "resp_headers": [{"name": "x-resp", "value": "r"}], "body": "{{b64 "new body"}}"} } }, "extra_info": []}"""

            let seen (name, value) = $$"""{"name": "x-seen-{{name}}", "value": "{{value}}"}"""
            let mirrored = [ "path", "/seen"; "method", "2"; "ip", "10.0.0.1"; "host", "example.com"; "args", "1,2" ] |> List.map seen
            expect r 8 $$"""{"type": 2, "msg": {"id": 3, "action": {"rewrite": {"path": null, "headers": [{{String.Join(", ", mirrored)}}], "args": null, "resp_headers": null, "body": null} } }, "extra_info": []}"""

            // Each variable is read twice by the filter and asked once.
            expect r 9 """{"type": 2, "msg": {"id": 4, "action": {"rewrite": {"path": null,
                "headers": [{"name": "x-var-remote_addr", "value": "10.0.0.1"}, {"name": "x-var-unset_var", "value": "(unset)"}],
                "args": null, "resp_headers": null, "body": null}}},
                "extra_info": [{"var": "remote_addr"}, {"var": "unset_var"}]}"""

            // All three asked at once before any reply (the client checks), and nothing asked again.
            expect r 10 """{"type": 2, "msg": {"id": 5, "action": {"rewrite": {"path": null,
                "headers": [{"name": "x-var-remote_addr", "value": "10.0.0.1"}, {"name": "x-var-request_time", "value": "0.5"}],
                "args": null, "resp_headers": null, "body": null}}},
                "extra_info": [{"var": "remote_addr"}, {"var": "request_time"}, {"req_body": {}}]}"""

            expect r 11 $$"""{"type": 2, "msg": {"id": 6, "action": {"rewrite": {"path": null,
                "headers": [{"name": "x-body-length", "value": "{{big.Length}}"}],
                "args": null, "resp_headers": null, "body": "{{b64 (big.ToUpperInvariant())}}"} } },
                "extra_info": [{"req_body": {} }]}"""

            expect r 12 """{"type": 2, "msg": {"id": 7, "action": {"rewrite": {"path": null,
                "headers": [{"name": "x-body-length", "value": "(none)"}], "args": null, "resp_headers": null, "body": null}}},
                "extra_info": [{"req_body": {}}]}"""

        // APISIX replaces the upstream's headers with the answer's when it has any (PROTOCOL.md), so the
        // answer must carry the upstream headers the plugin left alone, next to the ones it set.
        testCase "HTTPRespCall: the response filter reads the upstream body and changes status, headers and body" <| fun () ->
            let r =
                play host.Value.Socket
                    [ prepare "resp" [ "resp", """{"status": 201}""" ]
                      step
                          $$"""{"call": "HTTPRespCallReq", "token": "resp", "extra_info": {"resp_body": "{{b64 "from upstream"}}"},
                              "msg": {"id": 9, "status": 502, "headers": [{"name": "content-type", "value": "text/plain"},
                                      {"name": "set-cookie", "value": "a=1"}, {"name": "set-cookie", "value": "b=2"}]} }""" ]

            let answer = r[1]
            same "frame type" "4" (answer["type"])
            same "ExtraInfo asked" """[{"resp_body": {}}]""" (answer["extra_info"])
            let msg = answer["msg"]
            same "id" "9" (msg["id"])
            same "status" "201" (msg["status"])
            same "body" (JsonValue.Create(b64 "FROM UPSTREAM").ToJsonString()) (msg["body"])

            // Names may come in any order; the values of one name keep theirs.
            let headers =
                match msg["headers"] with
                | null -> []
                | h -> [ for e in h.AsArray() -> string e["name"], string e["value"] ] |> List.sortBy fst

            Expect.equal
                headers
                [ "content-type", "text/plain"
                  "set-cookie", "a=1"
                  "set-cookie", "b=2"
                  "x-upstream-status", "502"
                  "x-upstream-type", "text/plain" ]
                "the answer's headers"

        testCase "errors: a failing plugin and an unknown token leave the connection working; garbage closes it" <| fun () ->
            let call id token = step $$"""{"call": "HTTPReqCallReq", "msg": {"id": {{id}}, "path": "/"}, "token": "{{token}}"}"""
            let stopped id = $$"""{"type": 2, "msg": {"id": {{id}}, "action": {"stop": {"status": 200, "headers": null, "body": null} } }, "extra_info": []}"""
            let notFound = """{"type": 0, "msg": {"code": 2}, "extra_info": []}"""

            let r =
                play host.Value.Socket
                    [ prepare "throw" [ "throw", "{}" ]
                      prepare "ok" [ "stop", """{"status": 200}""" ]
                      call 1 "throw"
                      call 2 "ok"
                      step """{"call": "HTTPReqCallReq", "msg": {"id": 3, "path": "/", "conf_token": 4000000000}}"""
                      step """{"call": "HTTPRespCallReq", "msg": {"id": 4, "status": 200, "conf_token": 4000000000}}"""
                      call 5 "ok"
                      // A call frame whose body is no FlatBuffers table.
                      step $$"""{"raw": "{{Convert.ToBase64String [| 2uy; 0uy; 0uy; 3uy; 1uy; 2uy; 3uy |]}}"}"""
                      step """{"expect_close": true}""" ]

            expect r 2 """{"type": 0, "msg": {"code": 1}, "extra_info": []}"""
            expect r 3 (stopped 2)
            expect r 4 notFound
            expect r 5 notFound
            expect r 6 (stopped 5)
            expect r 7 """{"type": 0, "msg": {"code": 0}}"""
            expect r 8 """{"closed": true}"""
    ]
