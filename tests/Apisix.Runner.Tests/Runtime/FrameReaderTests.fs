/// The receive buffer of one connection: frames up to 64 KiB in the standing buffer, larger ones in
/// an array of exactly their size once claimed, and nothing past a large frame read into its array.
module Apisix.Runner.Tests.Runtime.FrameReaderTests

open System
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.RawConnection

/// Receives `bytes` the way a session does, as far as the reader offers room; how many it took.
let private receive (r: FrameReader) (bytes: byte[]) (from: int) =
    let room = r.Free()
    let n = min room.Length (bytes.Length - from)
    ReadOnlySpan(bytes, from, n).CopyTo room.Span
    r.Received n
    n

let private body (size: int) (fill: byte) = Array.create size fill

let private typeAndLength (read: FrameRead) =
    match read with
    | Frame(t, b, _) -> Some(t, int b.Length)
    | _ -> None

[<Tests>]
let tests =
    testList "Runtime.FrameReader" [
        testCase "a frame of 64 KiB with its header is read in the standing buffer and claims nothing" <| fun () ->
            let r = FrameReader(Frame.MaxBodyLength)
            let frame = frameOf 2uy (body (65536 - 4) 7uy)
            let mutable sent = 0

            while sent < frame.Length do
                Expect.equal r.Wanted 0 "nothing to claim"
                sent <- sent + receive r frame sent

            let read = r.TryTake()
            Expect.equal (typeAndLength read) (Some(FrameType.HttpReqCall, 65532)) "the frame"
            Expect.equal r.TakenLarge 0 "from the standing buffer"
            r.Dispose()

        testCase "a larger frame waits for its claim, then gets an array of exactly its size, and nothing past it is read into it" <| fun () ->
            let r = FrameReader(Frame.MaxBodyLength)
            let small = frameOf 1uy (body 100 1uy)
            let large = frameOf 2uy (body 100_000 2uy)
            let next = frameOf 2uy (body 10 3uy)
            let stream = Array.concat [ small; large; next ]
            let mutable sent = receive r stream 0
            Expect.equal (typeAndLength (r.TryTake())) (Some(FrameType.PrepareConf, 100)) "the small frame first"
            Expect.isTrue (r.TryTake() |> typeAndLength |> Option.isNone) "the large one is incomplete"
            Expect.equal r.Wanted large.Length "the large frame's whole size, header included, to claim"
            r.Enlarge()
            Expect.equal r.Wanted 0 "claimed"
            Expect.equal (r.Free().Length) (large.Length - (sent - small.Length)) "room for the rest of the large frame only"

            while sent < small.Length + large.Length do
                sent <- sent + receive r stream sent

            let read = r.TryTake()
            Expect.equal (typeAndLength read) (Some(FrameType.HttpReqCall, 100_000)) "the large frame"
            Expect.equal r.TakenLarge large.Length "in an array of its exact size, now the caller's"

            match read with
            | Frame(_, b, _) -> Expect.isTrue (b.IsSingleSegment && b.FirstSpan.IndexOfAnyExcept(2uy) < 0) "the body, whole"
            | _ -> ()

            Expect.equal r.Buffered 0 "nothing past the large frame was read"
            sent <- sent + receive r stream sent
            Expect.equal (typeAndLength (r.TryTake())) (Some(FrameType.HttpReqCall, 10)) "the next frame, in the standing buffer"
            Expect.equal r.TakenLarge 0 "from the standing buffer"
            r.Dispose()

        testCase "a frame over the limit is TooLarge, and nothing is claimed for it" <| fun () ->
            let r = FrameReader(1024)
            receive r (header 2uy 2_000_000) 0 |> ignore
            Expect.equal r.Wanted 0 "nothing to claim"

            match r.TryTake() with
            | TooLarge n -> Expect.equal n 2_000_000 "the announced length"
            | other -> failtest $"expected TooLarge, got {typeAndLength other}"

        testCase "without its claim, a large frame is not read past the standing buffer" <| fun () ->
            let r = FrameReader(Frame.MaxBodyLength)
            let large = frameOf 2uy (body 200_000 2uy)
            let mutable sent = 0
            let mutable refused = false

            while not refused && sent < large.Length do
                try
                    sent <- sent + receive r large sent
                    r.TryTake() |> ignore
                with :? InvalidOperationException ->
                    refused <- true

            Expect.isTrue refused "the reader refuses room past 64 KiB"
            Expect.equal sent 65536 "64 KiB read, no more"
            Expect.equal r.Wanted large.Length "the claim it waits for"
    ]
