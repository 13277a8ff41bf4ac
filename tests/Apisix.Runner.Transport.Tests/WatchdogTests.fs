/// A handler that blocks its loop's thread: the watchdog hands the loop to a fresh thread, the other
/// connections keep being answered, the holder is logged once, and surplus threads retire.
module internal Apisix.Runner.Transport.Tests.WatchdogTests

open System
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Transport.Host
open Apisix.Runner.Transport.Tests.Support

let private percentile (p: float) (xs: float[]) =
    let sorted = Array.sort xs
    sorted[min (sorted.Length - 1) (int (Math.Ceiling(p * float sorted.Length)) - 1)]

/// 64 clients in lockstep for `ms`; their latencies in ms.
let private lockstep (srv: Served) (ms: int) (started: ManualResetEventSlim) =
    let clients = Array.init 64 (fun _ -> srv.Connect())

    let run (k: int) =
        Task.Factory.StartNew(
            (fun () ->
                let c = clients[k]
                let latencies = Collections.Generic.List<float>()
                let clock = Stopwatch.StartNew()
                started.Wait()

                while clock.ElapsedMilliseconds < int64 ms do
                    let f = echoFrame k 200
                    let t = Stopwatch.GetTimestamp()
                    c.Send f |> ignore
                    let _, body = (readFrame c).Value
                    latencies.Add (Stopwatch.GetElapsedTime t).TotalMilliseconds
                    Expect.equal body.Length 200 "answered"
                    Thread.Sleep 2

                c.Dispose()
                latencies.ToArray()),
            TaskCreationOptions.LongRunning
        )

    Array.init 64 run

let tests =
    testSequenced
    <| testList
        "epoll watchdog"
        [ test "one connection blocking its thread: the 64 others keep being answered" {
              use srv = new Served(Sessions.test (fun () -> Task.CompletedTask), loops = 1, stallMs = 20.0)
              use blocker = srv.Connect()
              use started = new ManualResetEventSlim(false)
              let others = lockstep srv 3000 started
              started.Set()
              Thread.Sleep 300

              for _ in 1..3 do
                  blocker.Send(Sessions.intFrame Sessions.Kind.Sleep 600) |> ignore
                  Expect.isSome (readFrame blocker) "the blocking call is answered too"
                  Thread.Sleep 100

              let all = others |> Array.collect (fun t -> t.Result)
              let p50, p99, worst = percentile 0.5 all, percentile 0.99 all, Array.max all
              printfn $"blocking handler (3 x 600 ms, stall threshold 20 ms): {all.Length} calls by 64 others, p50 {p50:F2} ms, p99 {p99:F2} ms, max {worst:F1} ms; handoffs {srv.Transport.Handoffs}"
              Expect.isGreaterThanOrEqual srv.Transport.Handoffs 3 "each stall handed the loop over"
              // Without the watchdog the others would wait up to 600 ms; generous bound for a shared machine.
              Expect.isLessThan worst 400.0 "no other call waited for the blocking one"
          }

          test "the holder is logged once, by the description the session gives, and surplus threads retire" {
              let describe (_: IConnectionIo) = "plugin slow-one"
              use srv = new Served(Sessions.test (fun () -> Task.CompletedTask), stallMs = 20.0, describe = describe)
              use blocker = srv.Connect()
              use other = srv.Connect()

              for _ in 1..3 do
                  blocker.Send(Sessions.intFrame Sessions.Kind.Sleep 100) |> ignore
                  Thread.Sleep 50
                  let f = echoFrame 1 10
                  other.Send f |> ignore
                  Expect.sequenceEqual (snd (readFrame other).Value) f[4..] "the other, during the stall"
                  Expect.isSome (readFrame blocker) "the blocker, after it"

              let held = srv.Log.Named "LoopHeld"
              Expect.equal held.Length 1 $"logged once: {held}"
              Expect.stringContains held.Head "plugin slow-one" "names the holder"
              Expect.isGreaterThanOrEqual srv.Transport.Handoffs 3 "three stalls, three handoffs"
              Expect.isTrue (eventually 2000 (fun () -> srv.Transport.LoopThreads = 1)) "one thread per loop again"
              // The held connection is served by the fresh thread afterwards.
              let f = echoFrame 2 20
              blocker.Send f |> ignore
              Expect.sequenceEqual (snd (readFrame blocker).Value) f[4..] "the holder, later"
          }

          test "a handler that computes without end (a spin) is handed off like a blocking one" {
              use srv = new Served(Sessions.test (fun () -> Task.CompletedTask), stallMs = 20.0)
              use spinner = srv.Connect()
              use other = srv.Connect()
              spinner.Send(Sessions.intFrame Sessions.Kind.Spin 1500) |> ignore
              Thread.Sleep 50

              for i in 1..20 do
                  let clock = Stopwatch.StartNew()
                  let f = echoFrame i 16
                  other.Send f |> ignore
                  Expect.sequenceEqual (snd (readFrame other).Value) f[4..] "answered"
                  Expect.isLessThan clock.ElapsedMilliseconds 500L "while the other spins"

              Expect.isSome (readFrame spinner) "the spinner, when done"
              Expect.isGreaterThanOrEqual srv.Transport.Handoffs 1 "handed off"
          }

          test "the scheduler's view of a thread: a sleeping one sleeps, a running one runs" {
              let tid = TaskCompletionSource<int>()
              let release = new ManualResetEventSlim(false)

              let sleeper =
                  Thread(fun () ->
                      tid.SetResult(Apisix.Runner.Linux.Native.gettid ())
                      release.Wait())

              sleeper.Start()
              Thread.Sleep 100

              match Apisix.Runner.Linux.ThreadStats.read tid.Task.Result with
              | Some(sleeping, _, _) -> Expect.isTrue sleeping "the waiting thread sleeps"
              | None -> failtest "no statistics"

              release.Set()

              match Apisix.Runner.Linux.ThreadStats.read (Apisix.Runner.Linux.Native.gettid ()) with
              | Some(sleeping, ran, _) ->
                  Expect.isFalse sleeping "this thread runs"
                  Expect.isGreaterThan ran 0L "and has run"
              | None -> failtest "no statistics"
          }

          test "after the runner was idle (the watchdog sleeping), a stall is still handed off" {
              use srv = new Served(Sessions.test (fun () -> Task.CompletedTask), stallMs = 20.0)
              use blocker = srv.Connect()
              use other = srv.Connect()
              Thread.Sleep 1500
              blocker.Send(Sessions.intFrame Sessions.Kind.Sleep 800) |> ignore
              Thread.Sleep 50
              let clock = Stopwatch.StartNew()
              let f = echoFrame 4 4
              other.Send f |> ignore
              Expect.sequenceEqual (snd (readFrame other).Value) f[4..] "answered"
              Expect.isLessThan clock.ElapsedMilliseconds 500L "during the stall"
              Expect.isSome (readFrame blocker) "the blocker too, later"
          }

          test "a session start that blocks (serve) does not stop the others" {
              let mutable n = 0

              let session (io: IConnectionIo) =
                  if Interlocked.Increment(&n) = 2 then Thread.Sleep 500
                  Sessions.test (fun () -> Task.CompletedTask) io

              use srv = new Served(session, stallMs = 20.0)
              use first = srv.Connect()
              first.Send(echoFrame 1 1) |> ignore
              readFrame first |> ignore
              use second = srv.Connect()
              Thread.Sleep 50
              let clock = Stopwatch.StartNew()
              let f = echoFrame 3 3
              first.Send f |> ignore
              Expect.sequenceEqual (snd (readFrame first).Value) f[4..] "first answered"
              Expect.isLessThan clock.ElapsedMilliseconds 400L "during the blocked start"
              second.Send f |> ignore
              Expect.sequenceEqual (snd (readFrame second).Value) f[4..] "second answered after its start"
              // A session starts where its connection is accepted, outside any call.
              match srv.Log.Named "LoopHeldOutsideCall" with
              | [ line ] -> Expect.stringContains line "accepting a connection" "the holder named"
              | lines -> failtest $"one stall logged, got {lines}"
          } ]
