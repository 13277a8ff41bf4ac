/// Connections served by the epoll transport: frames in any split, sessions that leave the loop and
/// come back, large answers to slow readers, peers that vanish or half-close.
module internal Apisix.Runner.Transport.Tests.ConnectionTests

open System
open System.Diagnostics
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Expecto
open FsCheck
open Apisix.Runner.Transport.Host
open Apisix.Runner.Transport.Tests.Support

/// Sends `bytes` in pieces of the given sizes (cycled), then reads `expected` frames.
let private exchange (s: Socket) (bytes: byte[]) (pieces: int list) =
    let pieces = if List.isEmpty pieces then [ bytes.Length ] else pieces |> List.map (fun p -> max 1 p)
    let mutable at = 0
    let mutable i = 0

    while at < bytes.Length do
        let n = min (List.item (i % pieces.Length) pieces) (bytes.Length - at)
        s.Send(bytes, at, n, SocketFlags.None) |> ignore
        at <- at + n
        i <- i + 1

let private served = lazy (servedTest Task.CompletedTask)

type Piece =
    { Size: int
      Yield: bool }

let tests =
    testList
        "epoll connections"
        [ test "a frame is answered, then the next, on one connection" {
              use srv = servedTest Task.CompletedTask
              use c = srv.Connect()

              for i in 1..100 do
                  let f = echoFrame i (i * 7)
                  c.Send f |> ignore
                  let kind, body = (readFrame c).Value
                  Expect.equal kind Sessions.Kind.Echo "echo kind"
                  Expect.sequenceEqual body f[4..] "echo body"
          }

          testPropertyWithConfig
              { FsCheckConfig.defaultConfig with maxTest = 60 }
              "frames split anywhere and pipelined are each answered once, in order"
              (fun (frames: (byte * bool) list) (cuts: PositiveInt list) ->
                  let frames = frames |> List.truncate 40
                  use c = served.Value.Connect()

                  let requests =
                      frames
                      |> List.mapi (fun i (size, yield') ->
                          let body = Array.init (int size * 37) (fun j -> byte (i + j))
                          Sessions.frame (if yield' then Sessions.Kind.Yield else Sessions.Kind.Echo) (ReadOnlySpan body))

                  let all = Array.concat requests
                  let sender = Task.Run(fun () -> exchange c all (cuts |> List.map (fun p -> p.Get % 3000)))

                  for r in requests do
                      let kind, body = (readFrame c).Value
                      Expect.equal kind r[0] "kind"
                      Expect.sequenceEqual body r[4..] "body"

                  sender.Wait()
                  c.Shutdown SocketShutdown.Send
                  Expect.isTrue (closedByPeer c) "closed after the last answer")

          test "64 connections at once, half of the calls continuing on the thread pool" {
              use srv = servedTest Task.CompletedTask
              let clients = Array.init 64 (fun _ -> srv.Connect())

              let work (k: int) =
                  Task.Run(fun () ->
                      let c = clients[k]
                      let rnd = Random k

                      for i in 1..300 do
                          let kind = if rnd.Next 2 = 0 then Sessions.Kind.Yield else Sessions.Kind.Echo
                          let body = Array.init (rnd.Next 2000) (fun j -> byte (k + i + j))
                          c.Send(Sessions.frame kind (ReadOnlySpan body)) |> ignore
                          let got, answer = (readFrame c).Value
                          Expect.equal got kind "kind"
                          Expect.sequenceEqual answer body "body")

              Task.WaitAll(Array.init 64 work)

              for c in clients do
                  c.Dispose()

              Expect.isTrue (eventually 2000 (fun () -> srv.Transport.ConnectionCount = 0)) "all closed"
              Expect.equal srv.Live 0 "sessions ended"
          }

          test "two loops serve their connections" {
              use srv = new Served(Sessions.test (fun () -> Task.CompletedTask), loops = 2)
              let clients = Array.init 8 (fun _ -> srv.Connect())

              Task.WaitAll(
                  clients
                  |> Array.mapi (fun k c ->
                      Task.Run(fun () ->
                          for i in 1..200 do
                              let f = echoFrame (k + i) 100
                              c.Send f |> ignore
                              Expect.sequenceEqual (snd (readFrame c).Value) f[4..] "echo"))
              )

              Expect.equal srv.Transport.LoopCount 2 "loops"
          }

          test "a large answer to a slow reader goes out whole, and the loop serves others meanwhile" {
              use srv = servedTest Task.CompletedTask
              use slow = srv.Connect()
              use other = srv.Connect()
              let size = 12 * 1024 * 1024
              slow.Send(Sessions.intFrame Sessions.Kind.Big size) |> ignore
              // The answer fills the socket: the session now waits for room (EPOLLOUT).
              Thread.Sleep 100

              for i in 1..20 do
                  let f = echoFrame i 64
                  let clock = Stopwatch.StartNew()
                  other.Send f |> ignore
                  Expect.sequenceEqual (snd (readFrame other).Value) f[4..] "the other connection is answered"
                  Expect.isLessThan clock.ElapsedMilliseconds 1000L "promptly"

              let header = Array.zeroCreate 4
              Expect.isTrue (readExactly slow header 4) "header"
              let length = (int header[1] <<< 16) ||| (int header[2] <<< 8) ||| int header[3]
              Expect.equal length size "announced length"
              let chunk = Array.zeroCreate 65536
              let mutable got = 0
              let mutable intact = true

              while got < size do
                  let n = slow.Receive(chunk, 0, min chunk.Length (size - got), SocketFlags.None)

                  for j in 0 .. n - 1 do
                      if chunk[j] <> byte ((got + j) % 251) then intact <- false

                  got <- got + n

                  if got % (1024 * 1024) < n then Thread.Sleep 5

              Expect.isTrue intact "every byte in place"
              // The connection still works after the back-pressure.
              let f = echoFrame 3 10
              slow.Send f |> ignore
              Expect.sequenceEqual (snd (readFrame slow).Value) f[4..] "echo after the large answer"
          }

          test "a peer that vanishes mid-frame ends its session and frees its connection" {
              use srv = servedTest Task.CompletedTask
              let before = srv.Transport.ConnectionCount

              do
                  use c = srv.Connect()
                  let f = echoFrame 1 1000
                  c.Send(f, 0, 500, SocketFlags.None) |> ignore
                  Thread.Sleep 20

              Expect.isTrue (eventually 2000 (fun () -> srv.Live = 0)) "session ended"
              Expect.isTrue (eventually 2000 (fun () -> srv.Transport.ConnectionCount = before)) "connection freed"
          }

          test "a peer that vanishes mid-answer ends its session; the others are served" {
              use srv = servedTest Task.CompletedTask
              use other = srv.Connect()

              do
                  use c = srv.Connect()
                  c.Send(Sessions.intFrame Sessions.Kind.Big (16 * 1024 * 1024 - 1)) |> ignore
                  // Closed with the answer half sent: the server's next write fails (EPIPE/ECONNRESET).
                  Thread.Sleep 100

              Expect.isTrue (eventually 3000 (fun () -> srv.Live = 1)) "that session ended"
              let f = echoFrame 9 9
              other.Send f |> ignore
              Expect.sequenceEqual (snd (readFrame other).Value) f[4..] "the other is still served"
          }

          test "after a half-close the frame already sent is answered, then the connection closes" {
              use srv = servedTest Task.CompletedTask
              use c = srv.Connect()
              let f = echoFrame 5 300
              c.Send f |> ignore
              c.Shutdown SocketShutdown.Send
              Expect.sequenceEqual (snd (readFrame c).Value) f[4..] "answered"
              Expect.isTrue (closedByPeer c) "then closed"
              Expect.isTrue (eventually 2000 (fun () -> srv.Transport.ConnectionCount = 0)) "freed"
          }

          test "steady state allocates nothing per call (bench session: view read, Stop encoded)" {
              use srv = new Served(Sessions.bench)
              use c = srv.Connect()

              let request =
                  use b = new Apisix.Runner.FrameBuilder(1024)

                  let req: Apisix.Runner.HttpReqCall.Req =
                      { Id = 7u
                        SrcIp = [| 127uy; 0uy; 0uy; 1uy |]
                        Method = Apisix.Runner.Method.GET
                        Path = "/get"
                        Args = [| Apisix.Runner.TextEntry.Set("q", "apisix") |]
                        Headers = Array.init 10 (fun i -> Apisix.Runner.TextEntry.Set($"x-h{i}", "value"))
                        ConfToken = 1u }

                  match Apisix.Runner.Encode.httpReqCallReq b req with
                  | Ok frame -> frame.ToArray()
                  | Error e -> failtest (string e)

              let answer = Array.zeroCreate<byte> 4096

              let call () =
                  c.Send(request, 0, request.Length, SocketFlags.None) |> ignore
                  let mutable got = c.Receive(answer, 0, 4, SocketFlags.None)

                  while got < 4 do
                      got <- got + c.Receive(answer, got, 4 - got, SocketFlags.None)

                  let length = 4 + ((int answer[1] <<< 16) ||| (int answer[2] <<< 8) ||| int answer[3])

                  while got < length do
                      got <- got + c.Receive(answer, got, length - got, SocketFlags.None)

              for _ in 1..5000 do
                  call ()

              Expect.equal answer[0] 2uy "a HTTPReqCall answer"
              let calls = 20000

              // Bytes allocated by the loop's thread, where the transport and the session run each call.
              let onLoop () =
                  let result = TaskCompletionSource<int64>()
                  srv.Transport.Loops[0].Post(fun () -> result.SetResult(GC.GetAllocatedBytesForCurrentThread()))
                  result.Task.Result

              let before = onLoop ()

              for _ in 1..calls do
                  call ()

              let perCall = float (onLoop () - before) / float calls
              printfn $"allocated per call in steady state: {perCall:F3} B"
              Expect.isLessThan perCall 1.0 "nothing per call"
          }

          test "a closed connection answers 0 and false, and Close is idempotent" {
              let io = TaskCompletionSource<Apisix.Runner.IConnectionIo>()

              let session (c: Apisix.Runner.IConnectionIo) =
                  io.SetResult c
                  Task.CompletedTask

              use srv = new Served(session)
              use client = srv.Connect()
              let c = io.Task.Result
              c.Close()
              c.Close()
              Expect.equal (c.ReceiveAsync(Memory(Array.zeroCreate 10)).AsTask().Result) 0 "receive"
              Expect.isFalse (c.SendAsync(ReadOnlyMemory(Array.zeroCreate 10)).AsTask().Result) "send"
              Expect.isTrue (closedByPeer client) "the client sees the close"
              Expect.isTrue (eventually 2000 (fun () -> srv.Transport.ConnectionCount = 0)) "freed"
          }

          test "a receive waiting when the connection is closed from another thread completes with 0" {
              let io = TaskCompletionSource<Apisix.Runner.IConnectionIo>()
              let result = TaskCompletionSource<int>()

              let session (c: Apisix.Runner.IConnectionIo) =
                  io.SetResult c

                  task {
                      let! n = c.ReceiveAsync(Memory(Array.zeroCreate 10))
                      result.SetResult n
                  }
                  :> Task

              use srv = new Served(session)
              use _client = srv.Connect()
              let c = io.Task.Result
              Thread.Sleep 20
              Expect.isFalse result.Task.IsCompleted "waiting"
              c.Close()
              Expect.isTrue (result.Task.Wait 2000) "completed"
              Expect.equal result.Task.Result 0 "with 0"
          } ]
