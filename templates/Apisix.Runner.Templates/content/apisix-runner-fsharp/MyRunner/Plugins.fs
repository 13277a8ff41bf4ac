/// The runner's plugins: each is a name, a configuration parser, and a filter composed from
/// smaller ones with the core's combinators:
///   a >=> b      b runs when a decided Continue
///   guard p      goes on when p holds for the request, skips the rest of its composition if not
///   choose [..]  the first filter that does not skip
module MyRunner.Plugins

open Apisix.Runner

/// Answers at once with `greeting, NAME`, NAME being the x-hello header's value.
let private greet (greeting: string) : Filter =
    ofSync (fun req resp ->
        let who = req.GetHeader "x-hello"
        resp.SetHeader("content-type", "text/plain")
        resp.SetBody($"{greeting}, {who}")
        Decision.Stop)

/// `hello` {"greeting": "hello"}: answers a request that carries an x-hello header itself; the
/// others go upstream with an x-greeted: no header.
let hello =
    Plugin.create "hello" (Config.optionalString "greeting") (fun greeting ->
        let greeting = defaultArg greeting "hello"

        choose
            [ guard (fun req -> (req.Header "x-hello").IsSome) >=> setResponseHeader "x-runner" "fsharp" >=> greet greeting
              setHeader "x-greeted" "no" ])

/// Every plugin of the runner, registered at start.
let all = [ hello ]
