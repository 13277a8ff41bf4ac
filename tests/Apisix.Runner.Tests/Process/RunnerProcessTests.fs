/// The tests' own runner processes: none is left running, whatever happens at its start or in the
/// test that started it.
module Apisix.Runner.Tests.Process.RunnerProcessTests

open System
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Expecto
open Apisix.Runner.Tests.Support.RunnerProcess

/// Runs alone with the other tests that start runner processes: a start is timed here.
[<Tests>]
let tests =
    testSequenced
    <| testList "Process.RunnerProcess" [
        testCase "a start that times out kills the runner's process tree and says so" <| fun () ->
            use sandbox = new Sandbox()

            let pid =
                try
                    // No runner accepts connections within a millisecond of its start: the wait gives up
                    // while the process is up and starting.
                    use _runner = Runner.Ready(sandbox.Socket, readyWithin = TimeSpan.FromMilliseconds 1.0)
                    failtest "the runner was ready within 1 ms"
                with :? RunnerNotReady as e ->
                    Expect.stringContains e.Message "did not accept connections within" "why the start failed"
                    e.Pid

            Expect.isEmpty (processesServing sandbox.Socket) $"processes left of the runner that was pid {pid}"

        testCase "a test that fails with its runner running leaves no runner process behind" <| fun () ->
            use sandbox = new Sandbox()

            let failing () =
                use runner = Runner.Ready sandbox.Socket
                Expect.isNonEmpty (processesServing sandbox.Socket) "the runner's processes while it runs"
                failwith "the test fails"

            Expect.throwsC failing (fun e -> Expect.equal e.Message "the test fails" "the test's own failure")
            Expect.isEmpty (processesServing sandbox.Socket) "processes left of the runner"

        testCase "a runner that exits before it is ready fails the start at once, with its output" <| fun () ->
            use sandbox = new Sandbox()

            try
                // A setting the runner refuses: it exits at once, with a message naming it.
                use _runner = Runner.Ready(sandbox.Socket, [ "Runner__MaxFrameBytes", "10" ])
                failtest "a runner with MaxFrameBytes=10 accepted connections"
            with :? RunnerNotReady as e ->
                Expect.stringContains e.Message "exited before it accepted connections" "why the start failed"
                Expect.stringContains e.Message "MaxFrameBytes" "the runner's output in the error"

            Expect.isEmpty (processesServing sandbox.Socket) "processes left of the runner"

        testCaseTask "a test past its deadline fails at once, and its runner processes are killed" <| fun () ->
            task {
                use sandbox = new Sandbox()
                let clock = Stopwatch.StartNew()

                let hung () =
                    task {
                        use _runner = Runner.Ready sandbox.Socket
                        do! Task.Delay Timeout.Infinite
                    }

                let! failure =
                    task {
                        try
                            do! runWithin (TimeSpan.FromSeconds 5.0) hung
                            return None
                        with e ->
                            return Some e
                    }

                match failure with
                | Some e -> Expect.stringContains e.Message "not over within 00:00:05" "why the test failed"
                | None -> failtest "a test that never ends was over"

                Expect.isLessThan clock.Elapsed (TimeSpan.FromSeconds 15.0) "the time the failure took"
                Expect.isEmpty (processesServing sandbox.Socket) "processes left of the runner"
            }
    ]
