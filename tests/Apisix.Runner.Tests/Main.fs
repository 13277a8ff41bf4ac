/// The F# tests as an Expecto console app: `dotnet run -c Release -- [Expecto's options]`
/// (`--help` lists them; `--filter-test-list Fuzz` runs one list). `dotnet fsi build.fsx test`
/// runs it with the C# tests and adds up both.
module Apisix.Runner.Tests.Main

open Expecto

[<EntryPoint>]
let main argv =
    // No spinner: it redraws from a timer, and the allocation checks count every byte of the process.
    Tests.runTestsInAssemblyWithCLIArgs [ No_Spinner ] argv
