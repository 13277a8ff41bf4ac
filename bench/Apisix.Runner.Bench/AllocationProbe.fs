/// Bytes allocated per call by the whole runner (frame read, decode, conf lookup, chain, encode,
/// write), measured in-process: a RunnerServer on a temporary socket, driven by a client on
/// blocking sockets with preallocated buffers, which allocates nothing itself. Run with
/// `dotnet run -c Release -- alloc [calls]`.
module Apisix.Runner.Bench.AllocationProbe

open System
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Text
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.Logging.Abstractions
open Apisix.Runner

/// The two answers of most calls: a Stop (`say`) and a Rewrite (`request-body-rewrite`);
/// and a plugin that reads one nginx variable through ExtraInfo, declared up front (`var-prefetched`)
/// or asked for while it runs and awaited in a `task` (`var-asked`).
let private plugins =
    let hello = ReadOnlyMemory(Encoding.UTF8.GetBytes "hello")
    let newBody = ReadOnlyMemory(Encoding.UTF8.GetBytes """{"rewritten":true}""")

    [ Plugin.ofFilter "say" (fun _ resp ->
          resp.AddHeader("X-Resp-A6-Runner", "DotNet")
          resp.SetBody hello
          stop)
      Plugin.ofFilter "request-body-rewrite" (fun req _ ->
          req.SetBody newBody
          proceed)
      Plugin.ofFilter "var-prefetched" (fun req _ ->
          // Prefetched: the read completes at once.
          match req.Var("remote_addr").Result with
          | ValueSome _ -> proceed
          | ValueNone -> stop)
      |> Plugin.prefetch [ ExtraInfo.Var "remote_addr" ]
      Plugin.ofFilter "var-asked" (fun req _ ->
          ValueTask<Decision>(
              task {
                  match! req.Var "remote_addr" with
                  | ValueSome _ -> return Decision.Continue
                  | ValueNone -> return Decision.Stop
              }
          )) ]

let private frameOf (encode: FrameBuilder -> Result<ReadOnlyMemory<byte>, EncodeError>) =
    use b = new FrameBuilder()

    match encode b with
    | Ok f -> f.ToArray()
    | Error e -> failwith (e.Describe())

/// Fills `buffer` from `start` up to `count` bytes; returns the new fill level.
let private fill (s: Socket) (buffer: byte[]) (start: int) (count: int) =
    let mutable got = start

    while got < count do
        let r = s.Receive(buffer, got, count - got, SocketFlags.None)
        if r = 0 then failwith "the runner closed the connection"
        got <- got + r

    got

/// Reads one whole frame into `buffer` (no closure: the client must allocate nothing); returns its type byte.
let private readFrame (s: Socket) (buffer: byte[]) =
    let got = fill s buffer 0 4
    fill s buffer got (4 + ((int buffer[1] <<< 16) ||| (int buffer[2] <<< 8) ||| int buffer[3])) |> ignore
    buffer[0]

let private measure (s: Socket) (plugin: string) (calls: int) =
    let buffer = Array.zeroCreate<byte> 65536
    s.Send(frameOf (fun b -> Encode.prepareConfReq b { Conf = [| TextEntry.Set(plugin, "{}") |]; Key = plugin })) |> ignore
    readFrame s buffer |> ignore

    let token =
        match Decode.prepareConfResp (ReadOnlySpan(buffer, 4, buffer.Length - 4)) with
        | Ok r -> r.ConfToken
        | Error e -> failwith (e.Describe())

    let call = frameOf (fun b -> Encode.httpReqCallReq b { Requests.request with ConfToken = token })
    let reply = frameOf (fun b -> Encode.extraInfoResp b { Result = ValueSome "10.0.0.1"B })

    let once () =
        s.Send call |> ignore
        let mutable frame = readFrame s buffer

        while frame = byte FrameType.ExtraInfo do
            s.Send reply |> ignore
            frame <- readFrame s buffer

        if frame <> byte FrameType.HttpReqCall then
            failwith "the runner answered with an error frame"

    for _ in 1..20_000 do
        once ()

    match Decode.httpReqCallResp (ReadOnlySpan(buffer, 4, buffer.Length - 4)) with
    | Ok r -> printfn "%-22s answer: %A" plugin r.Action
    | Error e -> failwith (e.Describe())

    GC.Collect()
    let before = GC.GetTotalAllocatedBytes true
    let clock = Stopwatch.StartNew()

    for _ in 1..calls do
        once ()

    let elapsed = clock.Elapsed
    let allocated = GC.GetTotalAllocatedBytes true - before
    printfn "%-22s %d calls: %.2f bytes allocated per call, %.1f us per call (1 connection, round trip)" plugin calls (float allocated / float calls) (elapsed.TotalMicroseconds / float calls)

let run (calls: int) =
    let path = Path.Combine(Path.GetTempPath(), $"apisix-probe-{Environment.ProcessId}.sock")
    let options = RunnerOptions(ListenAddress = "unix:" + path)
    let server = RunnerServer(options, plugins, NullLoggerFactory.Instance, TimeProvider.System)
    match server.Open() with
    | Ok() -> ()
    | Error e -> failwith (e.Describe())

    try
        for plugin in [ "say"; "request-body-rewrite"; "var-prefetched"; "var-asked" ] do
            use s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            s.Connect(UnixDomainSocketEndPoint path)
            measure s plugin calls
    finally
        server.StopAsync(CancellationToken.None).Wait()

    0
