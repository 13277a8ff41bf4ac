/// The test kit's answer helpers (TestAnswer): reading the entries, bodies and actions of answers.
module Apisix.Runner.Tests.Testing.TestAnswerTests

open System.Text
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.Expectations

let private entries =
    [| TextEntry.Set("X-A", "1")
       TextEntry.Delete "x-gone"
       TextEntry.Set("x-a", "2")
       TextEntry.Set("x-b", "")
       TextEntry.Set("X-Gone", "back") |]

[<Tests>]
let tests =
    testSequencedGroup "Testing.TestAnswer"
    <| testList "Testing.TestAnswer" [
        testCase "first gives the first value of a name, case ignored, deletions skipped" <| fun () ->
            Expect.equal (TestAnswer.first "x-a" entries) "1" "TestAnswer.first 'x-a' entries"
            Expect.equal (TestAnswer.first "X-B" entries) "" "TestAnswer.first 'X-B' entries"
            Expect.equal (TestAnswer.first "x-gone" entries) "back" "TestAnswer.first 'x-gone' entries"
            Expect.equal (TestAnswer.first "absent" entries) null "TestAnswer.first 'absent' entries"
            Expect.equal (TestAnswer.first "x-a" [||]) null "TestAnswer.first 'x-a' [||]"

        testCase "values gives every value of a name in order; deletes finds an entry without a value" <| fun () ->
            Expect.equal (TestAnswer.values "X-a" entries) [| "1"; "2" |] "TestAnswer.values 'X-a' entries"
            Expect.equal (TestAnswer.values "x-gone" entries) [| "back" |] "TestAnswer.values 'x-gone' entries"
            Expect.equal (TestAnswer.values "absent" entries) [||] "TestAnswer.values 'absent' entries"
            Expect.isTrue (TestAnswer.deletes "X-GONE" entries) "TestAnswer.deletes 'X-GONE' entries"
            Expect.isFalse (TestAnswer.deletes "x-a" entries) "TestAnswer.deletes 'x-a' entries"
            Expect.isFalse (TestAnswer.deletes "absent" entries) "TestAnswer.deletes 'absent' entries"

        testCase "text, isUnchanged and describe read answers" <| fun () ->
            Expect.equal (TestAnswer.text (Encoding.UTF8.GetBytes "héllo")) "héllo" "TestAnswer.text (Encoding.UTF8.GetBytes 'héllo')"
            Expect.equal (TestAnswer.text [||]) "" "TestAnswer.text [||]"
            Expect.equal (TestAnswer.text null) "" "TestAnswer.text null"

            let unchanged: HttpRespCall.Resp = { Id = 1u; Status = 0us; Headers = [||]; Body = [||] }
            Expect.isTrue (TestAnswer.isUnchanged unchanged) "TestAnswer.isUnchanged unchanged"
            Expect.isFalse (TestAnswer.isUnchanged { unchanged with Status = 200us }) "a status changed"
            Expect.isFalse (TestAnswer.isUnchanged { unchanged with Headers = [| TextEntry.Set("a", "b") |] }) "a header changed"
            Expect.isFalse (TestAnswer.isUnchanged { unchanged with Body = [| 1uy |] }) "the body changed"

            Expect.equal (TestAnswer.describe HttpReqCall.NoAction) "no action" "TestAnswer.describe HttpReqCall.NoAction"
            Expect.equal (TestAnswer.describe (HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] })) "Stop" "a Stop described"

            let rewrite =
                HttpReqCall.Rewrite
                    { Path = null
                      Headers = [||]
                      Args = [||]
                      RespHeaders = [||]
                      Body = [||] }

            Expect.equal (TestAnswer.describe rewrite) "Rewrite" "a Rewrite described"

        testCase "the helpers read a Rewrite decoded from a real run" <| fun () ->
            let rewrite =
                Plugin.ofFilter "rw" (fun req resp ->
                    req.SetHeader("X-Set", "v")
                    req.DeleteHeader "x-drop"
                    req.AddArg("a", "3")
                    req.DeleteArg "b"
                    resp.SetHeader("x-resp", "r")
                    proceed)

            let chain = PluginTestKit.Prepare [ rewrite, "" ] |> okValue

            let request =
                TestRequest().WithHeader("x-drop", "1").WithArg("a", "1").WithArg("a", "2").WithArg("b", "x")

            match (PluginTestKit.RunRequestAsync(chain, request).Result).Answer.Action with
            | HttpReqCall.Rewrite rw ->
                Expect.equal (TestAnswer.first "x-set" rw.Headers) "v" "TestAnswer.first 'x-set' rw.Headers"
                Expect.isTrue (TestAnswer.deletes "X-Drop" rw.Headers) "TestAnswer.deletes 'X-Drop' rw.Headers"
                Expect.equal (TestAnswer.values "a" rw.Args) [| "1"; "2"; "3" |] "TestAnswer.values 'a' rw.Args"
                Expect.isTrue (TestAnswer.deletes "b" rw.Args) "TestAnswer.deletes 'b' rw.Args"
                Expect.equal (TestAnswer.first "b" rw.Args) null "TestAnswer.first 'b' rw.Args"
                Expect.equal (TestAnswer.first "x-resp" rw.RespHeaders) "r" "TestAnswer.first 'x-resp' rw.RespHeaders"
            | other -> failwith $"expected a Rewrite, got {TestAnswer.describe other}"
    ]
