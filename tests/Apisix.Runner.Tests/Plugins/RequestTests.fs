/// A call's request and response as plugins see them: reads, changes seen by later reads, only
/// what changed sent, variables and bodies asked of APISIX once, every value of a header.
module Apisix.Runner.Tests.Plugins.RequestTests

open System
open System.Collections.Generic
open System.Text
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.Calls

/// The values of `name` in a response-phase answer, as APISIX gets them.
let private sent (resp: Response) (name: string) =
    let answer = resp.AnswerHeaders.ToArray()
    // No change sends no headers: APISIX keeps the upstream's.
    let answer = if answer.Length = 0 then resp.UpstreamHeaders.ToArray() else answer
    TestAnswer.values name answer

[<Tests>]
let tests =
    testSequencedGroup "Plugins.Request"
    <| testList "Plugins.Request" [
        testList "request" [
            testCase "reading the request marks nothing as changed" <| fun () ->
                let req, resp, source = requestCall ()

                Expect.equal req.Path "/orig" "req.Path"
                Expect.equal (req.Header "host") (ValueSome "example.com") "req.Header 'host'"
                Expect.equal (req.Arg "a") (ValueSome "1") "req.Arg 'a'"
                Expect.equal (req.ArgValues "a") [| "1"; "2" |] "req.ArgValues 'a'"
                Expect.equal (req.Body().AsTask().Result) (ValueSome(utf8 "request body")) "req.Body().AsTask().Result"
                Expect.equal (req.Var("remote_addr").AsTask().Result) (ValueSome "10.0.0.1") "req.Var('remote_addr').AsTask().Result"

                Expect.isFalse req.Changed "req.Changed"
                Expect.isNull req.PathChange "req.PathChange"
                Expect.equal req.HeaderChanges.Length 0 "req.HeaderChanges.Length"
                Expect.equal req.ArgChanges.Length 0 "req.ArgChanges.Length"
                Expect.isTrue req.BodyChange.IsEmpty "req.BodyChange.IsEmpty"
                Expect.equal resp.HeaderChanges.Length 0 "resp.HeaderChanges.Length"
                Expect.equal source.Asked [ ExtraInfo.ReqBody; ExtraInfo.Var "remote_addr" ] "source.Asked"

            testCase "request identity: id, method, client address and the original entries" <| fun () ->
                let req, _, _ = requestCall ()
                Expect.equal req.Id 7u "req.Id"
                Expect.equal req.Method Method.POST "req.Method"
                Expect.equal req.SrcIp (Net.IPAddress.Parse "10.0.0.1") "req.SrcIp"
                Expect.equal (req.OriginalHeaders.ToArray()) original.Headers "req.OriginalHeaders.ToArray()"
                Expect.equal (req.OriginalArgs.ToArray()) original.Args "req.OriginalArgs.ToArray()"

            testCase "header names are case-insensitive for reads and changes" <| fun () ->
                let req, _, _ = requestCall ()
                Expect.equal (req.Header "HOST") (ValueSome "example.com") "req.Header 'HOST'"
                Expect.equal (req.Header "X-Multi") (ValueSome "1") "req.Header 'X-Multi'"
                req.SetHeader("X-New", "v")
                Expect.equal (req.Header "x-new") (ValueSome "v") "req.Header 'x-new'"
                req.SetHeader("x-NEW", "w")
                Expect.equal (req.HeaderChanges.ToArray()) [| TextEntry.Set("x-NEW", "w") |] "req.HeaderChanges.ToArray()"

            testCase "SetHeader and DeleteHeader are seen by later reads and sent once each" <| fun () ->
                let req, _, _ = requestCall ()
                req.SetHeader("host", "other.example")
                req.DeleteHeader "x-multi"
                Expect.equal (req.Header "host") (ValueSome "other.example") "req.Header 'host'"
                Expect.equal (req.Header "x-multi") ValueNone "req.Header 'x-multi'"
                Expect.isTrue req.Changed "req.Changed"

                Expect.equal (req.HeaderChanges.ToArray()) [| TextEntry.Set("host", "other.example"); TextEntry.Delete "x-multi" |] "req.HeaderChanges.ToArray()"

                // Setting a deleted header again leaves only the new value to send.
                req.SetHeader("x-multi", "3")
                Expect.equal (req.Header "x-multi") (ValueSome "3") "req.Header 'x-multi'"
                Expect.equal (req.HeaderChanges.ToArray()) [| TextEntry.Set("host", "other.example"); TextEntry.Set("x-multi", "3") |] "req.HeaderChanges.ToArray()"

            testCase "SetArg replaces every value, AddArg keeps them, DeleteArg removes them" <| fun () ->
                let req, _, _ = requestCall ()
                req.AddArg("a", "3")
                Expect.equal (req.ArgValues "a") [| "1"; "2"; "3" |] "req.ArgValues 'a'"
                Expect.equal (req.Arg "a") (ValueSome "1") "req.Arg 'a'"
                req.SetArg("b", "x")
                req.AddArg("b", "y")
                Expect.equal (req.ArgValues "b") [| "x"; "y" |] "req.ArgValues 'b'"
                req.DeleteArg "flag"
                Expect.equal (req.ArgValues "flag") [||] "req.ArgValues 'flag'"

                // Exactly what APISIX needs to rebuild the query: repeated names are a multi-value argument.
                Expect.equal
                    (req.ArgChanges.ToArray())
                    [| TextEntry.Set("a", "1")
                       TextEntry.Set("a", "2")
                       TextEntry.Set("a", "3")
                       TextEntry.Set("b", "x")
                       TextEntry.Set("b", "y")
                       TextEntry.Delete "flag" |]
                    "the argument changes"

                req.SetArg("a", "9")
                Expect.equal (req.ArgValues "a") [| "9" |] "req.ArgValues 'a'"
                Expect.equal (req.Arg "a") (ValueSome "9") "req.Arg 'a'"

            testCase "an argument without a value is present but has no value" <| fun () ->
                let req, _, _ = requestCall ()
                Expect.equal (req.Arg "flag") ValueNone "req.Arg 'flag'"
                Expect.equal (req.ArgValues "flag") [||] "req.ArgValues 'flag'"
                let i = req.OriginalArgs.IndexOf "flag"
                Expect.isTrue (i >= 0) "i >= 0"
                Expect.isNull (req.OriginalArgs.Value i) "req.OriginalArgs.Value i"
                Expect.equal (req.OriginalArgs.IndexOf "absent") -1 "req.OriginalArgs.IndexOf 'absent'"

            testCase "a value added after a delete is what later reads see" <| fun () ->
                let req, resp, _ = requestCall ()
                req.DeleteArg "a"
                req.AddArg("a", "x")
                Expect.equal (req.ArgValues "a") [| "x" |] "req.ArgValues 'a'"
                // Arg must agree with ArgValues: a later plugin reading `a` sees the value the request will carry.
                Expect.equal (req.Arg "a") (ValueSome "x") "req.Arg 'a'"
                resp.DeleteHeader "x-h"
                resp.AddHeader("x-h", "v")
                Expect.equal (resp.Header "x-h") (ValueSome "v") "resp.Header 'x-h'"

            testCase "SetPath and SetBody are seen by later reads without asking APISIX" <| fun () ->
                let req, _, source = requestCall ()
                req.SetPath "/new"
                req.SetBody "replaced"
                Expect.equal req.Path "/new" "req.Path"
                Expect.equal req.PathChange "/new" "req.PathChange"
                Expect.equal (req.Body().AsTask().Result) (ValueSome(utf8 "replaced")) "req.Body().AsTask().Result"
                Expect.equal (Encoding.UTF8.GetString(req.BodyChange)) "replaced" "Encoding.UTF8.GetString(req.BodyChange)"
                Expect.isTrue req.Changed "req.Changed"
                Expect.isEmpty source.Asked "source.Asked"

            testCase "an empty body set is no change, since APISIX applies only a non-empty one" <| fun () ->
                let req, _, _ = requestCall ()
                req.SetBody ""
                Expect.isFalse req.Changed "req.Changed"

            testCase "a variable or the body read twice is asked of APISIX once; an unset variable is none" <| fun () ->
                let req, _, source = requestCall ()

                for _ in 1..2 do
                    Expect.equal (req.Var("remote_addr").AsTask().Result) (ValueSome "10.0.0.1") "req.Var('remote_addr').AsTask().Result"
                    Expect.equal (req.Var("unset_var").AsTask().Result) ValueNone "req.Var('unset_var').AsTask().Result"
                    Expect.equal (req.Body().AsTask().Result) (ValueSome(utf8 "request body")) "req.Body().AsTask().Result"

                Expect.equal source.Asked [ ExtraInfo.Var "remote_addr"; ExtraInfo.Var "unset_var"; ExtraInfo.ReqBody ] "source.Asked"

            testCase "a later filter sees the rewrites of earlier ones" <| fun () ->
                let req, resp, _ = requestCall ()
                let seen = List<string * string voption * string list * string voption>()

                let record: Filter =
                    ofSync (fun r _ ->
                        seen.Add((r.Path, r.Header "x-step", List.ofArray (r.ArgValues "a"), r.Header "host"))
                        Decision.Continue)

                let rewrite: Filter =
                    fun r _ ->
                        task {
                            do! Task.Yield()
                            r.SetArg("a", "9")
                            r.DeleteHeader "host"
                            return Decision.Continue
                        }
                        |> ValueTask<Decision>

                let chain = sequence [ record; setPath "/v2"; setHeader "x-step" "1"; rewrite; record ]
                Expect.equal (run chain req resp) Decision.Continue "run chain req resp"

                Expect.equal (List.ofSeq seen) [ "/orig", ValueNone, [ "1"; "2" ], ValueSome "example.com"; "/v2", ValueSome "1", [ "9" ], ValueNone ] "List.ofSeq seen"
        ]
        testList "response" [
            testCase "request phase: the response starts empty and holds what filters set" <| fun () ->
                let req, resp, source = requestCall ()
                Expect.equal resp.Status 0 "resp.Status"
                Expect.throwsT<InvalidOperationException> (fun () -> resp.UpstreamStatus |> ignore) "there is no upstream status in the request phase"
                Expect.equal (resp.Header "host") ValueNone "resp.Header 'host'"
                Expect.isTrue resp.Body.IsNone "resp.Body.IsNone"
                // There is no upstream yet: nothing to ask APISIX for.
                Expect.equal (resp.UpstreamBody().AsTask().Result) ValueNone "resp.UpstreamBody().AsTask().Result"
                resp.Status <- 201
                resp.SetHeader("X-A", "1")
                resp.AddHeader("x-a", "2")
                resp.SetBody "made here"
                Expect.equal resp.Status 201 "resp.Status"
                Expect.equal (resp.Header "x-a") (ValueSome "1") "resp.Header 'x-a'"
                Expect.equal (resp.Body |> ValueOption.map (fun b -> Encoding.UTF8.GetString b.Span)) (ValueSome "made here") "resp.Body |> ValueOption.map (fun b -> Encoding.UTF8.GetString b.Span)"
                Expect.equal (resp.HeaderChanges.ToArray()) [| TextEntry.Set("X-A", "1"); TextEntry.Set("x-a", "2") |] "resp.HeaderChanges.ToArray()"
                Expect.isFalse req.Changed "req.Changed"
                Expect.isEmpty source.Asked "source.Asked"

            testCase "response phase: the upstream answer is visible and reading it changes nothing" <| fun () ->
                let _, resp, source = responseCall ()
                Expect.equal resp.UpstreamStatus 502 "resp.UpstreamStatus"
                Expect.equal resp.Status 502 "resp.Status"
                Expect.equal (resp.Header "Content-Type") (ValueSome "text/plain") "resp.Header 'Content-Type'"
                Expect.equal (resp.Header "set-cookie") (ValueSome "a=1") "resp.Header 'set-cookie'"
                Expect.equal resp.UpstreamHeaders.Count 3 "resp.UpstreamHeaders.Count"

                for _ in 1..2 do
                    Expect.equal (resp.UpstreamBody().AsTask().Result) (ValueSome(utf8 "upstream body")) "resp.UpstreamBody().AsTask().Result"

                Expect.equal source.Asked [ ExtraInfo.RespBody ] "source.Asked"
                Expect.equal resp.StatusChange 0us "resp.StatusChange"
                Expect.equal resp.HeaderChanges.Length 0 "resp.HeaderChanges.Length"
                Expect.isTrue resp.BodyChange.IsEmpty "resp.BodyChange.IsEmpty"

            testCase "response phase: status, headers and body set are seen by later reads" <| fun () ->
                let req, resp, _ = responseCall ()
                resp.Status <- 200
                resp.SetHeader("content-type", "application/json")
                resp.DeleteHeader "set-cookie"
                resp.SetBody "{}"
                Expect.equal resp.Status 200 "resp.Status"
                Expect.equal resp.UpstreamStatus 502 "resp.UpstreamStatus"
                Expect.equal (resp.Header "content-type") (ValueSome "application/json") "resp.Header 'content-type'"
                Expect.equal (resp.Header "set-cookie") ValueNone "resp.Header 'set-cookie'"
                Expect.equal (Encoding.UTF8.GetString(resp.BodyChange)) "{}" "Encoding.UTF8.GetString(resp.BodyChange)"
                Expect.equal req.Id 9u "req.Id"
        ]
        testList "HeaderValues" [
            testCase "Request.HeaderValues gives every original value in order, case ignored" <| fun () ->
                let req, _ =
                    requestWith [| TextEntry.Set("accept", "a/b"); TextEntry.Set("x-multi", "1"); TextEntry.Set("host", "h"); TextEntry.Set("x-multi", "2") |]

                Expect.equal (req.HeaderValues "X-Multi") [| "1"; "2" |] "req.HeaderValues 'X-Multi'"
                Expect.equal (req.HeaderValues "host") [| "h" |] "req.HeaderValues 'host'"
                Expect.equal (req.HeaderValues "absent") [||] "req.HeaderValues 'absent'"
                Expect.isFalse req.Changed "req.Changed"

            testCase "Request.HeaderValues applies the chain's changes" <| fun () ->
                let req, _ = requestWith [| TextEntry.Set("x-multi", "1"); TextEntry.Set("x-multi", "2"); TextEntry.Set("x-gone", "v") |]
                req.SetHeader("X-MULTI", "3")
                req.DeleteHeader "x-gone"
                req.SetHeader("x-new", "n")
                Expect.equal (req.HeaderValues "x-multi") [| "3" |] "req.HeaderValues 'x-multi'"
                Expect.equal (req.HeaderValues "x-gone") [||] "req.HeaderValues 'x-gone'"
                Expect.equal (req.HeaderValues "X-New") [| "n" |] "req.HeaderValues 'X-New'"
                // The first value agrees with Header.
                let values = req.HeaderValues "x-multi"
                Expect.equal (ValueSome values[0]) (req.Header "x-multi") "ValueSome values[0]"

            testCase "the request line and headers refuse to be read in the response phase, where APISIX sends none" <| fun () ->
                let req, _ = upstreamWith [| TextEntry.Set("x-multi", "1") |]
                Expect.equal req.Phase CallPhase.Response "req.Phase"
                Expect.equal req.Id 1u "the call id is there in both phases"

                for read, what in
                    [ (fun () -> req.HeaderValues "x-multi" |> ignore), "HeaderValues"
                      (fun () -> req.GetHeader "x-multi" |> ignore), "GetHeader"
                      (fun () -> req.Method |> ignore), "Method"
                      (fun () -> req.Path |> ignore), "Path"
                      (fun () -> req.SrcIp |> ignore), "SrcIp"
                      (fun () -> req.OriginalArgs |> ignore), "OriginalArgs" ] do
                    let e = Expect.throwsC read id

                    Expect.isTrue
                        (e :? InvalidOperationException && e.Message.Contains "response phase")
                        $"{what} says why it cannot answer: {e.Message}"

            testCase "Response.HeaderValues in the request phase holds what filters set" <| fun () ->
                let _, resp = requestWith [| TextEntry.Set("x-a", "from the request") |]
                Expect.equal (resp.HeaderValues "x-a") [||] "resp.HeaderValues 'x-a'"
                resp.SetHeader("X-A", "1")
                resp.AddHeader("x-a", "2")
                Expect.equal (resp.HeaderValues "x-a") [| "1"; "2" |] "resp.HeaderValues 'x-a'"
                resp.DeleteHeader "x-a"
                Expect.equal (resp.HeaderValues "x-a") [||] "resp.HeaderValues 'x-a'"

            testCase "Response.HeaderValues in the response phase is what the answer will carry" <| fun () ->
                let _, resp =
                    upstreamWith [| TextEntry.Set("set-cookie", "a=1"); TextEntry.Set("content-type", "text/plain"); TextEntry.Set("set-cookie", "b=2") |]

                Expect.equal (resp.HeaderValues "Set-Cookie") [| "a=1"; "b=2" |] "resp.HeaderValues 'Set-Cookie'"
                Expect.equal (resp.HeaderValues "set-cookie") (sent resp "set-cookie") "resp.HeaderValues 'set-cookie'"

                resp.AddHeader("x-added", "1")
                resp.AddHeader("x-added", "2")
                resp.DeleteHeader "content-type"

                for name in [ "set-cookie"; "x-added"; "content-type"; "absent" ] do
                    Expect.equal (resp.HeaderValues name) (sent resp name) "resp.HeaderValues name"

                Expect.equal (resp.HeaderValues "x-added") [| "1"; "2" |] "resp.HeaderValues 'x-added'"
                Expect.equal (resp.HeaderValues "content-type") [||] "resp.HeaderValues 'content-type'"

                resp.SetHeader("set-cookie", "c=3")
                Expect.equal (resp.HeaderValues "set-cookie") [| "c=3" |] "resp.HeaderValues 'set-cookie'"
                Expect.equal (resp.HeaderValues "set-cookie") (sent resp "set-cookie") "resp.HeaderValues 'set-cookie'"
        ]
        testList "names" [
            // One rule for APISIX's entries (UTF-8 in the frame) and for the changes (strings): ASCII
            // letters without case, every other character exactly.
            testCase "a name is found among APISIX's entries exactly when it is found among the changes, non-ASCII names included" <| fun () ->
                let names = [ "x-ñame"; "X-ñame"; "x-Ñame"; "X-ÑAME"; "ünï"; "ÜNÏ"; "x-plain"; "X-PLAIN"; "k"; "K"; "\u212A"; "\u0131"; "I"; "i" ]

                for original in names do
                    for query in names do
                        let req, _ = requestWith [| TextEntry.Set(original, "from APISIX") |]
                        let inOriginal = not (isNull (req.GetHeader query))
                        req.SetHeader(original, "changed")
                        let inChanges = req.GetHeader query = "changed"
                        let same = EntryName.equals original query
                        Expect.equal inOriginal same $"'{query}' among APISIX's entries named '{original}'"
                        Expect.equal inChanges same $"'{query}' among the changes naming '{original}'"

            testCase "ASCII letters compare without case, other characters exactly" <| fun () ->
                Expect.isTrue (EntryName.equals "x-ñame" "X-ñAME") "ASCII letters differ in case"
                Expect.isFalse (EntryName.equals "x-ñame" "x-Ñame") "a non-ASCII letter differs in case"
                Expect.isFalse (EntryName.equals "\u212A" "k") "the Kelvin sign is not k"
                Expect.isTrue (EntryName.equalsUtf8 (ReadOnlySpan(Text.Encoding.UTF8.GetBytes "X-ñAME")) "x-ñame") "UTF-8 against a string"
                Expect.isFalse (EntryName.equalsUtf8 (ReadOnlySpan(Text.Encoding.UTF8.GetBytes "x-ñame")) "x-ñam") "a prefix is not the name"
        ]
    ]
