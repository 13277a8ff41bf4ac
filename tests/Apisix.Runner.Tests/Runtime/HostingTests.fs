/// Registration of plugins in a service collection, as the host builds them.
module Apisix.Runner.Tests.Runtime.HostingTests

open System
open Microsoft.Extensions.DependencyInjection
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.Expectations

type private Greeting(text: string) =
    member _.Text = text

[<Tests>]
let tests =
    testSequencedGroup "Runtime.Hosting"
    <| testList "Runtime.Hosting" [
        testCase "AddPlugin with a factory makes the plugin from the built services" <| fun () ->
            let services = ServiceCollection()
            services.AddSingleton(Greeting "bonjour") |> ignore
            let mutable made = 0

            services.AddPlugin(
                Func<IServiceProvider, Plugin>(fun sp ->
                    made <- made + 1
                    let greeting = sp.GetRequiredService<Greeting>()
                    Plugin.ofFilter "greet" (respond 200 [] greeting.Text))
            )
            |> ignore

            Expect.equal made 0 "made"
            use provider = services.BuildServiceProvider()
            let plugins = provider.GetServices<Plugin>() |> List.ofSeq
            Expect.equal ((List.exactlyOne plugins).Name) "greet" "(List.exactlyOne plugins).Name"
            Expect.isTrue (obj.ReferenceEquals(List.exactlyOne plugins, provider.GetRequiredService<Plugin>())) "the same instance: provider.GetRequiredService<Plugin>()"
            Expect.equal made 1 "made"

            let chain = PluginTestKit.Prepare [ List.exactlyOne plugins, "" ] |> okValue

            match (PluginTestKit.RunRequestAsync(chain, TestRequest()).Result).Answer.Action with
            | HttpReqCall.Stop stop -> Expect.equal (TestAnswer.text stop.Body) "bonjour" "TestAnswer.text stop.Body"
            | other -> failwith $"expected a Stop, got {TestAnswer.describe other}"
    ]
