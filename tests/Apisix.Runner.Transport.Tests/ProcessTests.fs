/// Tests that need the transport in its own process: file-descriptor limits (EMFILE) and 10,000
/// idle connections (more descriptors than one test process may hold for both ends).
module internal Apisix.Runner.Transport.Tests.ProcessTests

open System
open System.Net.Sockets
open System.Threading
open Expecto
open Apisix.Runner.Transport.Host
open Apisix.Runner.Transport.Tests.Support

let private echoes (c: Socket) (seed: int) =
    let f = echoFrame seed 32
    c.Send f |> ignore

    match readFrame c with
    | Some(_, body) -> body = f[4..]
    | None -> false

let tests =
    testSequenced
    <| testList
        "epoll process"
        [ test "out of file descriptors: open connections are served, the error is logged once, accepting resumes" {
              use host = new Host("test", "")
              // Room for a few more descriptors only: the next accepts fail with EMFILE.
              Expect.equal (host.Ask "limit 4") "limit 0" "limit set"
              let clients = Array.init 12 (fun _ -> host.Connect())

              for c in clients do
                  c.Send(echoFrame 1 32) |> ignore

              // Those accepted answer; the others' frames wait in their sockets.
              let answered () = clients |> Array.map (fun c -> c.Available >= 36)
              Expect.isTrue (eventually 5000 (fun () -> answered () |> Array.exists id)) $"some were accepted: {host.Errors}"
              Thread.Sleep 500
              let served = answered ()
              let accepted = served |> Array.filter id |> Array.length
              Expect.isLessThan accepted clients.Length "not all: the limit was hit"

              for i in 0 .. clients.Length - 1 do
                  if served[i] then
                      Expect.isSome (readFrame clients[i]) "the first answer"
                      // The accepted ones go on being served while the others wait.
                      Expect.isTrue (echoes clients[i] 2) "still served"

              Expect.equal (host.Errors |> List.filter (fun l -> l.Contains "AcceptLimit") |> List.length) 1 "logged once"
              Expect.equal (host.Ask "nolimit") "limit 0" "limit raised"
              // Accepting is retried: the waiting connections are accepted and answer.
              for i in 0 .. clients.Length - 1 do
                  clients[i].ReceiveTimeout <- 5000

                  if not served[i] then
                      // Their first frame is still in the socket, unanswered until now.
                      Expect.isSome (readFrame clients[i]) "the waiting frame is answered"

                  Expect.isTrue (echoes clients[i] 3) "served"

              Expect.isTrue (host.Errors |> List.exists (fun l -> l.Contains "AcceptResumed")) "resumption logged"
          }

          test "10,000 idle connections are held, each still answers, and all are freed" {
              use host = new Host("test", "")
              let before = host.RssKb
              let clients = Array.init 10000 (fun _ -> host.Connect())
              Expect.isTrue (eventually 10000 (fun () -> host.Ask "count" = "count 10000 10000")) "all accepted"
              let loaded = host.RssKb
              printfn $"10,000 idle connections: host RSS {before} kB idle, {loaded} kB with them ({(loaded - before) * 1024L / 10000L} B each)"

              for i in 0..99..9999 do
                  Expect.isTrue (echoes clients[i] i) $"connection {i} answers"

              for c in clients do
                  c.Dispose()

              Expect.isTrue (eventually 10000 (fun () -> host.Ask "count" = "count 0 0")) "all freed"
          }

          test "SIGTERM on the host: the call in progress is answered, then it exits" {
              use host = new Host("test", "")
              use c = host.Connect()
              Expect.isTrue (echoes c 1) "served"
              c.Send(Sessions.intFrame Sessions.Kind.Sleep 200) |> ignore
              Thread.Sleep 50
              Diagnostics.Process.Start("kill", $"-TERM {host.Process.Id}").WaitForExit()
              Expect.isSome (readFrame c) "answered"
              Expect.isTrue (closedByPeer c) "closed"
              Expect.isTrue (host.Process.WaitForExit 2000) "exited"
          } ]
