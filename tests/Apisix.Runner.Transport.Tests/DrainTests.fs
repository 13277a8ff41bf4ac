/// Drain and Abort: idle connections end, what already arrived is still answered, nothing new is
/// accepted, and Abort closes everything.
module internal Apisix.Runner.Transport.Tests.DrainTests

open System
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Transport.Host
open Apisix.Runner.Transport.Tests.Support

let tests =
    testList
        "epoll drain"
        [ test "idle connections get 0 on drain and close" {
              use srv = servedTest Task.CompletedTask
              let clients = Array.init 5 (fun _ -> srv.Connect())

              for c in clients do
                  let f = echoFrame 1 10
                  c.Send f |> ignore
                  readFrame c |> ignore

              srv.Transport.Drain()

              for c in clients do
                  Expect.isTrue (closedByPeer c) "closed by the runner"
                  c.Dispose()

              Expect.isTrue (eventually 2000 (fun () -> srv.Live = 0)) "sessions ended"
              Expect.isTrue (eventually 2000 (fun () -> srv.Transport.ConnectionCount = 0)) "freed"
          }

          test "a frame that arrived while its session was busy is still answered after drain" {
              let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
              use srv = servedTest gate.Task
              use c = srv.Connect()
              let first = Sessions.frame Sessions.Kind.Gate (ReadOnlySpan "first"B)
              let second = echoFrame 7 77
              c.Send first |> ignore
              Thread.Sleep 20
              c.Send second |> ignore
              Thread.Sleep 20
              srv.Transport.Drain()
              Thread.Sleep 20
              gate.SetResult()
              Expect.sequenceEqual (snd (readFrame c).Value) "first"B "the call in progress"
              Expect.sequenceEqual (snd (readFrame c).Value) second[4..] "the call that had arrived"
              Expect.isTrue (closedByPeer c) "then closed"
          }

          test "a frame racing the drain is answered, never lost (50 rounds x 4 connections)" {
              for round in 1..50 do
                  use srv = servedTest Task.CompletedTask
                  let clients = Array.init 4 (fun _ -> srv.Connect())

                  for c in clients do
                      c.Send(echoFrame 0 4) |> ignore
                      readFrame c |> ignore

                  let frames = clients |> Array.mapi (fun i _ -> echoFrame (round + i) (100 + i))

                  for i in 0 .. clients.Length - 1 do
                      clients[i].Send frames[i] |> ignore

                  if round % 2 = 0 then Thread.SpinWait(round * 50)
                  srv.Transport.Drain()

                  for i in 0 .. clients.Length - 1 do
                      match readFrame clients[i] with
                      | Some(_, body) -> Expect.sequenceEqual body (frames[i][4..]) $"round {round}: answered"
                      | None -> failtest $"round {round}: a frame sent before the drain was lost"

                      Expect.isTrue (closedByPeer clients[i]) "then closed"
                      clients[i].Dispose()
          }

          test "after drain no new connection is served" {
              use srv = servedTest Task.CompletedTask
              srv.Transport.Drain()
              Thread.Sleep 50

              let answered =
                  try
                      use c = srv.Connect()
                      c.ReceiveTimeout <- 300
                      c.Send(echoFrame 1 1) |> ignore
                      (readFrame c).IsSome
                  with :? SocketException ->
                      false

              Expect.isFalse answered "not served"
          }

          test "abort closes connections that wait and connections in a call" {
              let gate = TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
              use srv = servedTest gate.Task
              use idle = srv.Connect()
              use busy = srv.Connect()
              busy.Send(Sessions.frame Sessions.Kind.Gate (ReadOnlySpan "x"B)) |> ignore
              Thread.Sleep 30
              srv.Transport.Abort()
              Expect.isTrue (closedByPeer idle) "the idle one"
              Expect.isTrue (closedByPeer busy) "the busy one"
              gate.SetResult()
              Expect.isTrue (eventually 2000 (fun () -> srv.Live = 0)) "sessions ended"
              Expect.isTrue (eventually 2000 (fun () -> srv.Transport.ConnectionCount = 0)) "freed"
          } ]
