/// The filter combinators: composition, sequences, conditions, Stop as the short-circuit value.
module Apisix.Runner.Tests.Plugins.FilterTests

open System.Collections.Generic
open System.Text
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.Calls

/// A filter that records its name when it runs, then decides; synchronously or after a yield.
let private step (log: List<string>) (name: string) (decision: Decision) (async': bool) : Filter =
    fun _ _ ->
        if async' then
            ValueTask<Decision>(
                task {
                    do! Task.Yield()
                    log.Add name
                    return decision
                }
            )
        else
            log.Add name
            ValueTask<Decision>(decision)

let private both = [ false; true ]

[<Tests>]
let tests =
    testSequencedGroup "Plugins.Filter"
    <| testList "Plugins.Filter" [
        testCase "compose runs both filters in order, sync or async, and >=> is compose" <| fun () ->
            for firstAsync in both do
                for secondAsync in both do
                    let log = List<string>()
                    let req, resp, _ = requestCall ()
                    let first = step log "first" Decision.Continue firstAsync
                    let second = step log "second" Decision.Continue secondAsync
                    Expect.equal (run (compose first second) req resp) Decision.Continue "run (compose first second) req resp"
                    Expect.equal (run (first >=> second) req resp) Decision.Continue "run (first >=> second) req resp"
                    Expect.equal (List.ofSeq log) [ "first"; "second"; "first"; "second" ] "List.ofSeq log"

        testCase "Stop short-circuits compose whether the stopping filter is sync or async" <| fun () ->
            for firstAsync in both do
                let log = List<string>()
                let req, resp, _ = requestCall ()
                let decision = run (step log "first" Decision.Stop firstAsync >=> step log "second" Decision.Continue false) req resp
                Expect.equal decision Decision.Stop "decision"
                Expect.equal (List.ofSeq log) [ "first" ] "List.ofSeq log"

        testCase "sequence runs filters in order until one stops; an empty sequence goes on" <| fun () ->
            let log = List<string>()
            let req, resp, _ = requestCall ()

            let chain =
                sequence
                    [ step log "a" Decision.Continue false
                      step log "b" Decision.Continue true
                      step log "c" Decision.Stop true
                      step log "d" Decision.Continue false ]

            Expect.equal (run chain req resp) Decision.Stop "run chain req resp"
            Expect.equal (List.ofSeq log) [ "a"; "b"; "c" ] "List.ofSeq log"
            Expect.equal (run (sequence []) req resp) Decision.Continue "run (sequence []) req resp"

        testCase "onlyIf runs the filter only when the predicate holds" <| fun () ->
            let log = List<string>()
            let req, resp, _ = requestCall ()
            let isOrig (r: Request) = r.Path = "/orig"
            Expect.equal (run (onlyIf isOrig (step log "yes" Decision.Stop false)) req resp) Decision.Stop "run (onlyIf isOrig (step log 'yes' Decision.Stop false)) req resp"
            Expect.equal (run (onlyIf (isOrig >> not) (step log "no" Decision.Stop false)) req resp) Decision.Continue "run (onlyIf (isOrig >> not) (step log 'no' Decision.Stop false)) re..."
            Expect.equal (List.ofSeq log) [ "yes" ] "List.ofSeq log"

        testCase "branch picks one of two filters by the predicate" <| fun () ->
            let log = List<string>()
            let req, resp, _ = requestCall ()
            let pick predicate = branch predicate (step log "true" Decision.Stop false) (step log "false" Decision.Continue true)
            Expect.equal (run (pick (fun r -> r.Method = Method.POST)) req resp) Decision.Stop "run (pick (fun r -> r.Method = Method.POST)) req resp"
            Expect.equal (run (pick (fun r -> r.Method = Method.GET)) req resp) Decision.Continue "run (pick (fun r -> r.Method = Method.GET)) req resp"
            Expect.equal (List.ofSeq log) [ "true"; "false" ] "List.ofSeq log"

        testCase "respond stops with its status, every header value and the body" <| fun () ->
            let req, resp, _ = requestCall ()
            let filter = respond 403 [ "x-why", "denied"; "set-cookie", "a=1"; "set-cookie", "b=2" ] "go away"
            Expect.equal (run filter req resp) Decision.Stop "run filter req resp"
            Expect.equal resp.Status 403 "resp.Status"

            Expect.equal (resp.HeaderChanges.ToArray()) [| TextEntry.Set("x-why", "denied"); TextEntry.Set("set-cookie", "a=1"); TextEntry.Set("set-cookie", "b=2") |] "resp.HeaderChanges.ToArray()"

            Expect.equal (Encoding.UTF8.GetString(resp.BodyChange)) "go away" "Encoding.UTF8.GetString(resp.BodyChange)"

        testCase "ofSync completes synchronously with the function's decision" <| fun () ->
            let req, resp, _ = requestCall ()
            let d = ofSync (fun _ _ -> Decision.Stop) req resp
            Expect.isTrue d.IsCompletedSuccessfully "d.IsCompletedSuccessfully"
            Expect.equal d.Result Decision.Stop "d.Result"
    ]
