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

        testCase "Skip ends its composition, choose tries the next, and a chain of plugins goes on after it" <| fun () ->
            for skipAsync in both do
                let log = List<string>()
                let req, resp, _ = requestCall ()
                let skipping = step log "skip" Decision.Skip skipAsync >=> step log "after skip" Decision.Stop false
                Expect.equal (run skipping req resp) Decision.Skip "a Skip ends the composition"
                let chosen = choose [ skipping; step log "second" Decision.Stop skipAsync; step log "third" Decision.Stop false ]
                Expect.equal (run chosen req resp) Decision.Stop "choose takes the first that does not skip"
                Expect.equal (run (choose [ skipping ]) req resp) Decision.Skip "choose skips when every filter skips"
                Expect.equal (run (choose []) req resp) Decision.Skip "an empty choose skips"
                Expect.equal (List.ofSeq log) [ "skip"; "skip"; "second"; "skip" ] "what ran"

        testCase "guard and guardAsync go on when the predicate holds and skip the rest otherwise" <| fun () ->
            let log = List<string>()
            let req, resp, _ = requestCall ()
            let isPost (r: Request) = r.Method = Method.POST
            let isPostLater (r: Request) =
                ValueTask<bool>(
                    task {
                        do! Task.Yield()
                        return isPost r
                    }
                )

            let stopping name = step log name Decision.Stop false
            Expect.equal (run (guard isPost >=> stopping "post") req resp) Decision.Stop "guard holds"
            Expect.equal (run (guard (isPost >> not) >=> stopping "not post") req resp) Decision.Skip "guard fails"
            Expect.equal (run (guardAsync isPostLater >=> stopping "post later") req resp) Decision.Stop "guardAsync holds"
            Expect.equal (run (guardAsync (fun r -> ValueTask<bool>(not (isPost r))) >=> stopping "never") req resp) Decision.Skip "guardAsync fails"
            Expect.equal (List.ofSeq log) [ "post"; "post later" ] "what ran"

        testCase "a route's plugin that skips lets the next plugin run" <| fun () ->
            let skipper = Plugin.ofFilter "skipper" (guard (fun _ -> false) >=> respond 403 [] "never")
            let answer = Plugin.ofFilter "answer" (respond 200 [] "hello")
            let chain = PluginTestKit.Prepare [ skipper, ""; answer, "" ] |> Result.defaultWith (fun e -> failwithf "%A" e)
            let result = PluginTestKit.RunRequestAsync(chain, TestRequest()).Result

            match result.Answer.Action with
            | HttpReqCall.Stop stop -> Expect.equal (TestAnswer.text stop.Body) "hello" "the second plugin answered"
            | other -> failtest $"expected a Stop, got {TestAnswer.describe other}"

        testCase "ofTask, ofAsync and ofSync make filters of each kind of function" <| fun () ->
            let req, resp, _ = requestCall ()
            Expect.equal (run (ofTask (fun _ _ -> task { return Decision.Stop })) req resp) Decision.Stop "ofTask"
            Expect.equal (run (ofAsync (fun _ _ -> async { return Decision.Skip })) req resp) Decision.Skip "ofAsync"
            Expect.equal (run (ofSync (fun _ _ -> Decision.Continue)) req resp) Decision.Continue "ofSync"

        testCase "around runs code before and after the rest of a composition, and may replace its decision" <| fun () ->
            for innerAsync in both do
                let log = List<string>()
                let req, resp, _ = requestCall ()

                let recover (inner: Filter) (req: Request) (resp: Response) =
                    ValueTask<Decision>(
                        task {
                            log.Add "before"

                            try
                                let! d = inner req resp
                                log.Add "after"
                                return d
                            with _ ->
                                log.Add "caught"
                                resp.Status <- 500
                                return Decision.Stop
                        }
                    )

                let failing: Filter =
                    fun _ _ ->
                        if innerAsync then
                            ValueTask<Decision>(
                                task {
                                    do! Task.Yield()
                                    return failwith "boom"
                                }
                            )
                        else
                            failwith "boom"

                Expect.equal (run (step log "inner" Decision.Continue innerAsync >=> step log "rest" Decision.Stop false |> around recover) req resp) Decision.Stop "the rest ran inside"
                Expect.equal (run (around recover failing) req resp) Decision.Stop "the failure became a Stop"
                Expect.equal resp.Status 500 "with the status the wrapper set"
                Expect.equal (List.ofSeq log) [ "before"; "inner"; "rest"; "after"; "before"; "caught" ] "the order of events"

        testCase "timed reports the decision and time of the filter it wraps" <| fun () ->
            for innerAsync in both do
                let reports = List<Decision * System.TimeSpan>()
                let req, resp, _ = requestCall ()

                // Takes 20 ms, so the report must be a measurement; only a lower bound is checked,
                // as load can only make it longer.
                let slow: Filter =
                    fun _ _ ->
                        if innerAsync then
                            ValueTask<Decision>(
                                task {
                                    do! Task.Delay 20
                                    return Decision.Stop
                                }
                            )
                        else
                            System.Threading.Thread.Sleep 20
                            ValueTask<Decision>(Decision.Stop)

                let decision = run (timed (fun _ elapsed d -> reports.Add(d, elapsed)) slow) req resp
                Expect.equal decision Decision.Stop "the decision goes through"
                Expect.equal (reports |> Seq.map fst |> List.ofSeq) [ Decision.Stop ] "one report with the decision"
                Expect.isGreaterThanOrEqual (snd reports[0]).TotalMilliseconds 15.0 $"the elapsed time reported for a filter that takes 20 ms (async: {innerAsync})"

        testCase "a synchronous chain of combinators allocates nothing per call" <| fun () ->
            let req, resp, _ = requestCall ()
            let chain =
                sequence
                    [ guard (fun r -> r.Method = Method.POST)
                      setHeader "x-a" "1" >=> choose [ guard (fun _ -> false) >=> pass; setResponseHeader "x-b" "2" ]
                      onlyIf (fun _ -> true) pass ]

            let runOnce () = (chain req resp).Result |> ignore

            for _ in 1..1000 do
                runOnce ()

            let before = System.GC.GetAllocatedBytesForCurrentThread()

            for _ in 1..10_000 do
                runOnce ()

            Expect.equal (System.GC.GetAllocatedBytesForCurrentThread() - before) 0L "bytes allocated by 10,000 runs"

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
