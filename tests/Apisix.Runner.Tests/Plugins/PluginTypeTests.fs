/// The naming and phase rules of plugin classes, which the C# facade uses too.
module Apisix.Runner.Tests.Plugins.PluginTypeTests

open System.Threading
open System.Threading.Tasks
open Expecto
open Apisix.Runner

type FaultInjectionPlugin() = class end

type Say() = class end

[<PluginName("custom-name")>]
type Renamed() = class end

type Generic<'T>() = class end

/// A base class whose virtual methods stand for phases, as the C# facade's PluginBase does.
type PhaseBase() =
    abstract Filter: Request * Response * CancellationToken -> ValueTask<Decision>
    default _.Filter(_, _, _) = proceed

type Overriding() =
    inherit PhaseBase()
    override _.Filter(_, _, _) = stop

type NotOverriding() =
    inherit PhaseBase()

[<Tests>]
let tests =
    testList "Plugins.PluginType" [
        testCase "a class's route name: its attribute, else its name without Plugin in kebab case" <| fun () ->
            Expect.equal (PluginType.nameOf typeof<FaultInjectionPlugin>) "fault-injection" "an F# class named like the C# sample"
            Expect.equal (PluginType.nameOf typeof<Say>) "say" "no suffix"
            Expect.equal (PluginType.nameOf typeof<Renamed>) "custom-name" "the attribute"
            Expect.equal (PluginType.nameOf typedefof<Generic<_>>) "generic" "the generic arity is dropped"
            Expect.equal (PluginType.nameOfClass "Plugin") "plugin" "a class named only Plugin keeps it"

        testCase "a class runs in a phase when it overrides that phase's method" <| fun () ->
            let parameters = [| typeof<Request>; typeof<Response>; typeof<CancellationToken> |]
            Expect.isTrue (PluginType.overrides typeof<Overriding> "Filter" parameters) "overridden"
            Expect.isFalse (PluginType.overrides typeof<NotOverriding> "Filter" parameters) "inherited"
            Expect.isFalse (PluginType.overrides typeof<PhaseBase> "Filter" parameters) "the base itself"
            Expect.isFalse (PluginType.overrides typeof<Overriding> "Missing" parameters) "no such method"
    ]
