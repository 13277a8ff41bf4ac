/// What counts as a plugin in an assembly loaded from a plugin folder: classes of a marked base
/// class, made by its factory, and public static Plugin values such as an F# module's.
module Apisix.Runner.Tests.Plugins.PluginDiscoveryTests

open System
open Microsoft.Extensions.DependencyInjection
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.Expectations

/// Makes the plugins of TestBase's subclasses, as the C# facade's factory does for PluginBase's:
/// each named by the core's rule, with the runner's services at hand.
type TestFactory() =
    interface IPluginClassFactory with
        member _.Create(pluginType, services) =
            if pluginType.Name = "Unmakeable" then
                invalidArg "pluginType" "no usable constructor"

            let greeting = services.GetService<string>()
            Plugin.ofFilter (PluginType.nameOf pluginType) (respond 200 [] (if isNull greeting then "none" else greeting))

/// A plugin base class the core does not know, marked as the facade's PluginBase is.
[<AbstractClass; PluginBaseClass(typeof<TestFactory>)>]
type TestBase() = class end

type FoundPlugin() =
    inherit TestBase()

/// A subclass of a subclass is a plugin too: the mark is looked for up the chain.
type DerivedPlugin() =
    inherit FoundPlugin()

[<AbstractClass>]
type AbstractPlugin() =
    inherit TestBase()

type GenericPlugin<'T>() =
    inherit TestBase()

type Unmakeable() =
    inherit TestBase()

type Unrelated() = class end

/// Plugins as values, the F# way: a module's public `let` of type Plugin.
module Values =
    type Marker = class end

    let greet = Plugin.ofFilter "greet" pass

    let private hidden = Plugin.ofFilter "hidden" pass

    let notAPlugin = 42

    /// Keeps `hidden` used.
    let internal hiddenName = hidden.Name

module private PrivateValues =
    type Marker = class end

    let secret = Plugin.ofFilter "secret" pass

type ThrowingValue() =
    static member Broken: Plugin = failwith "boom"

type NullValue() =
    static member Nothing: Plugin = Unchecked.defaultof<Plugin>

let private services () =
    ServiceCollection().AddSingleton<string>("from the runner").BuildServiceProvider() :> IServiceProvider

let private names (found: Result<Plugin list, string>) =
    found |> okValue |> List.map (fun p -> p.Name)

[<Tests>]
let tests =
    testList "Plugins.PluginDiscovery" [
        testCase "a concrete class of a marked base class is a plugin, named by the core's rule and made by the base class's factory" <| fun () ->
            let found =
                PluginDiscovery.ofTypes
                    [ typeof<FoundPlugin>; typeof<DerivedPlugin>; typeof<AbstractPlugin>; typedefof<GenericPlugin<_>>; typeof<Unrelated>; typeof<TestBase> ]
                    (services ())

            Expect.equal (names found) [ "found"; "derived" ] "abstract, open generic and unmarked classes are not plugins"

            let chain = PluginTestKit.Prepare [ List.head (okValue found), "" ] |> okValue

            match (PluginTestKit.RunRequestAsync(chain, TestRequest()).Result).Answer.Action with
            | HttpReqCall.Stop stop -> Expect.equal (TestAnswer.text stop.Body) "from the runner" "the factory had the runner's services"
            | other -> failtest $"expected a Stop, got {TestAnswer.describe other}"

        testCase "a public static Plugin of a public type is a plugin: an F# module's public value, not its private ones" <| fun () ->
            let found =
                PluginDiscovery.ofTypes [ typeof<Values.Marker>.DeclaringType; typeof<PrivateValues.Marker>.DeclaringType ] (services ())

            Expect.equal (names found) [ "greet" ] "the public Plugin value only"

        testCase "a class whose factory refuses it names the class and the reason" <| fun () ->
            let found = PluginDiscovery.ofTypes [ typeof<FoundPlugin>; typeof<Unmakeable> ] (services ())
            let problem = errorValue found
            Expect.stringContains problem "cannot make plugin class Apisix.Runner.Tests.Plugins.PluginDiscoveryTests+Unmakeable" "the class"
            Expect.stringContains problem "no usable constructor" "the factory's reason"

        testCase "a value that throws or is null names the value" <| fun () ->
            let thrown = PluginDiscovery.ofTypes [ typeof<ThrowingValue> ] (services ()) |> errorValue
            Expect.stringContains thrown "plugin value Apisix.Runner.Tests.Plugins.PluginDiscoveryTests+ThrowingValue.Broken threw" "the value"
            Expect.stringContains thrown "boom" "the exception's message"

            let empty = PluginDiscovery.ofTypes [ typeof<NullValue> ] (services ()) |> errorValue
            Expect.stringContains empty "NullValue.Nothing is null" "the null value"
    ]
