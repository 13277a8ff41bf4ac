/// What the runner logs: every value from the wire escaped and cut, problems listed within a bound,
/// exceptions shown escaped with their stack traces.
module Apisix.Runner.Tests.Runtime.LogTests

open System
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient
open Apisix.Runner.Tests.Support.Expectations

/// A value from the wire and how it must appear in a log line.
let private escapes =
    [ "plain text, ünïcødé 👋 \\n", "plain text, ünïcødé 👋 \\n"
      "a\nb\rc\td", "a\\nb\\rc\\td"
      "\u001b[31mred\u0007\u0000\u007f\u0085", "\\u001b[31mred\\u0007\\u0000\\u007f\\u0085"
      "line\u2028para\u2029 \u202eevil\u2066", "line\\u2028para\\u2029 \\u202eevil\\u2066" ]

[<Tests>]
let tests =
    testSequencedGroup "Runtime.Log"
    <| testList "Runtime.Log" [
        testList "Log.escape writes every control character as an escape and leaves the rest" [
            for value, expected in escapes ->
                // Named by the escaped form: a raw control character would garble the test's name.
                testCase expected <| fun () -> Expect.equal (Log.escape value) expected "the escaped value"
        ]

        testCase "Log.escape cuts a long value and says how much was left out; a clean short value is returned as is" <| fun () ->
            Expect.equal (Log.escape (String('x', 5000))) (String('x', Log.MaxValueLength) + "... (3976 more characters)") "a value of 5000 characters"
            Expect.equal (Log.escape (String('x', Log.MaxValueLength + 1))) (String('x', Log.MaxValueLength) + "... (1 more characters)") "a value one character too long"
            let clean = String('x', Log.MaxValueLength)
            Expect.isTrue (obj.ReferenceEquals(clean, Log.escape clean)) "a clean value is returned as is"

        testCase "a rejected configuration is one log line that lists at most 10 problems, escaped" <| fun () ->
            let line = Log.problems [ for i in 1..3000 -> $"unknown plugin 'p{i}\n'" ]
            Expect.stringStarts line (@"unknown plugin 'p1\n'; unknown plugin 'p2\n'; ") "line"
            Expect.stringContains line @"unknown plugin 'p10\n'; and 2990 more" "the line"
            Expect.isFalse (line.Contains "p11") "the line lists the 11th problem"
            Expect.equal (Log.problems [ "one"; "two" ]) "one; two" "Log.problems [ 'one'; 'two' ]"

        testCaseTask "an exception message that echoes the request is escaped in the log, with its stack trace kept" <| fun () ->
            task {
                let echo =
                    Plugin.ofFilter "echo" (fun req _ -> raise (InvalidOperationException("no such host: " + (req.Header "host" |> ValueOption.defaultValue ""))))

                use server = new TestServer([ echo ])
                use client = server.Connect()
                let! token = client.PrepareAsync([ "echo", "" ], "echo")
                let host = "x\nfail: forged[0]\r\n\u001b[31mred"
                let! answer = client.RequestAsync({ httpRequest token 5u with Headers = [| TextEntry.Set("host", host) |] }, unset)
                same (ErrResp Err.Code.SERVICE_UNAVAILABLE) answer
                let entry = server.Log.Entries |> List.find (fun e -> not (isNull e.Exception))
                let escaped = @"no such host: x\nfail: forged[0]\r\n\u001b[31mred"
                Expect.equal entry.Exception.Message escaped "entry.Exception.Message"
                let shown = entry.Exception.ToString()
                Expect.stringStarts shown ("System.InvalidOperationException: " + escaped) "shown"
                Expect.stringContains shown " at " "the exception as shown" // the stack trace is kept
                Expect.isFalse (shown |> Seq.exists (fun c -> unsafeInLog c && c <> '\n')) "the exception as shown holds a raw control character"
                Expect.isFalse (shown.Split '\n' |> Seq.exists (fun l -> l.StartsWith("fail: forged", StringComparison.Ordinal))) "a line of the exception as shown is forged"
                Expect.isFalse (entry.Message |> Seq.exists unsafeInLog) "the log message holds a raw control character"
            }
    ]
