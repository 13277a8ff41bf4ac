/// The test kit runs plugins in-process on the runner's own call path and gives back the answer
/// as APISIX reads it: no socket, no APISIX.
module MyRunner.Tests.PluginTests

open Xunit
open Apisix.Runner
open MyRunner

/// Prepares `hello` with a configuration, as a route's PrepareConf would, and runs a request through it.
let private run (config: string) (request: TestRequest) =
    match PluginTestKit.Prepare [ Plugins.hello, config ] with
    | Ok chain -> PluginTestKit.RunRequestAsync(chain, request)
    | Error problems -> failwith (String.concat "; " problems)

[<Fact>]
let ``hello answers a request that says hello`` () =
    task {
        let! result = run """{"greeting": "hi"}""" (TestRequest().WithHeader("x-hello", "ops"))

        match result.Answer.Action with
        | HttpReqCall.Stop stop ->
            Assert.Equal("hi, ops", TestAnswer.text stop.Body)
            Assert.Equal("fsharp", TestAnswer.first "x-runner" stop.Headers)
        | other -> failwith $"expected a Stop, the answer is {TestAnswer.describe other}"
    }

[<Fact>]
let ``hello sends other requests upstream marked`` () =
    task {
        let! result = run "{}" (TestRequest().WithPath "/get")

        match result.Answer.Action with
        | HttpReqCall.Rewrite rewrite -> Assert.Equal("no", TestAnswer.first "x-greeted" rewrite.Headers)
        | other -> failwith $"expected a Rewrite, the answer is {TestAnswer.describe other}"
    }

[<Fact>]
let ``hello rejects a greeting that is not a string`` () =
    match PluginTestKit.Prepare [ Plugins.hello, """{"greeting": 1}""" ] with
    | Ok _ -> failwith "the configuration was accepted"
    | Error problems -> Assert.Equal<string list>([ "plugin 'hello' rejected its configuration: 'greeting' must be a string" ], problems)
