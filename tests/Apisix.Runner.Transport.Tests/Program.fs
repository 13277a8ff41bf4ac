module Apisix.Runner.Transport.Tests.Program

open Expecto

[<EntryPoint>]
let main argv =
    let all =
        testList
            "transport"
            [ ConnectionTests.tests
              DrainTests.tests
              WatchdogTests.tests
              ProcessTests.tests ]

    runTestsWithCLIArgs [] argv all
