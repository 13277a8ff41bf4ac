module Apisix.Runner.Tests.Generators

open FsCheck
open FsCheck.FSharp
open Apisix.Runner

let text = ArbMap.defaults |> ArbMap.generate<NonNull<string>> |> Gen.map _.Get
