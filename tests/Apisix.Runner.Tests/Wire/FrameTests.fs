/// The frame layer: the 4-byte header, whole frames taken from a stream however it is cut into
/// segments, and the 24-bit length limit on both the read and the encode side.
module Apisix.Runner.Tests.Wire.FrameTests

open System
open System.Buffers
open Expecto
open FsCheck
open FsCheck.FSharp
open Apisix.Runner
open Apisix.Runner.Tests.Support.Generators

/// One link of a hand-made multi-segment sequence, as a pipe hands them out.
type private Chunk(bytes: byte[], runningIndex: int64) as this =
    inherit ReadOnlySequenceSegment<byte>()

    do
        this.Memory <- ReadOnlyMemory bytes
        this.RunningIndex <- runningIndex

    member c.Append(next: byte[]) =
        let chunk = Chunk(next, runningIndex + int64 bytes.Length)
        c.Next <- chunk
        chunk

/// A sequence made of these segments, in order; empty segments are kept as segments.
let private sequenceOf (segments: byte[] list) =
    match segments with
    | [] -> ReadOnlySequence<byte>.Empty
    | first :: rest ->
        let head = Chunk(first, 0L)
        let last = rest |> List.fold (fun (c: Chunk) s -> c.Append s) head
        ReadOnlySequence<byte>(head, 0, last, last.Memory.Length)

/// A frame header written by hand, independently of Frame.writeHeader.
let private header (frameType: byte) (length: int) =
    [| frameType; byte (length >>> 16); byte (length >>> 8); byte length |]

let private frame (frameType: byte) (body: byte[]) = Array.append (header frameType body.Length) body

/// Encodes with a fresh builder and copies the frame out (the builder reuses its memory).
let private encoded (encode: FrameBuilder -> 'T -> Result<ReadOnlyMemory<byte>, EncodeError>) (message: 'T) =
    use b = new FrameBuilder()

    match encode b message with
    | Ok f -> f.ToArray()
    | Error e -> failwith (e.Describe())

let private same (expected: 'T) (actual: 'T) =
    if expected <> actual then
        failwithf "expected %A\nbut got %A" expected actual

/// The largest body the stream tests accept; the stream holds one body of exactly this size.
let private limit = 600

let private frames =
    [ encoded
          Encode.prepareConfReq
          { Conf = [| TextEntry.Set("limit-count", """{"count":2,"time_window":60}""") |]
            Key = "route-1" }
      encoded
          Encode.httpReqCallReq
          { Id = 1u
            SrcIp = [| 127uy; 0uy; 0uy; 1uy |]
            Method = Method.GET
            Path = "/hello/wörld"
            Args = [| TextEntry.Set("a", "1"); TextEntry.Delete "flag" |]
            Headers = [| TextEntry.Set("host", "example.com") |]
            ConfToken = 7u }
      frame 3uy [||]
      encoded Encode.extraInfoReq (ExtraInfo.Var "remote_addr")
      encoded
          Encode.httpReqCallResp
          { Id = 1u
            Action = HttpReqCall.Stop { Status = 403us; Headers = [||]; Body = "forbidden"B } }
      frame 4uy (Array.init limit byte)
      // The frame layer passes any type byte through: judging it is the decoders' job.
      frame 0xFFuy [| 1uy; 2uy; 3uy |]
      encoded Encode.errResp Err.Code.CONF_TOKEN_NOT_FOUND ]

let private expected =
    [ for f in frames -> (LanguagePrimitives.EnumOfValue f[0]: FrameType), f[4..] ]

let private stream = Array.concat frames

/// Reads frames the way a pipe reader does: the segments arrive one at a time; on Incomplete the
/// next one is added to what is buffered, on Frame reading goes on with Rest. Gives the frames
/// read and how many bytes were left unread.
let private readAll maxBody (segments: byte[] list) =
    let all = sequenceOf segments

    let arrivals =
        segments
        |> List.scan (fun n (s: byte[]) -> n + int64 s.Length) 0L
        |> List.tail
        |> List.map (fun (n: int64) -> all.GetPosition n)

    let rec go (input: ReadOnlySequence<byte>) (pending: SequencePosition list) acc =
        match Frame.tryRead maxBody input, pending with
        | Frame(t, body, rest), _ -> go rest pending ((t, body.ToArray()) :: acc)
        | Incomplete, next :: later -> go (all.Slice(input.Start, next)) later acc
        | Incomplete, [] -> List.rev acc, input.Length
        | TooLarge n, _ -> failwithf "TooLarge %d in a valid stream" n

    go (all.Slice(all.Start, List.head arrivals)) (List.tail arrivals) []

/// Cuts `bytes` at the given positions (in any order, repeats give empty segments).
let private cut (bytes: byte[]) (positions: int list) =
    let bounds = 0 :: List.sort positions @ [ bytes.Length ]
    [ for a, b in List.pairwise bounds -> bytes[a .. b - 1] ]

let private reading =
    [
        testCase "the stream's frames fit the limit and one is exactly at it" <| fun () ->
            for _, body in expected do
                Expect.isLessThanOrEqual body.Length limit "a body length"

            Expect.contains [ for _, body in expected -> body.Length ] limit "a body of exactly the limit"
            Expect.contains [ for _, body in expected -> body.Length ] 0 "an empty body"

        testCase "several whole frames in one read all come out, in order" <| fun () ->
            same (expected, 0L) (readAll limit [ stream ])

        testCase "a partial frame after whole ones waits for more and consumes nothing" <| fun () ->
            let partial = frames[0][.. frames[0].Length - 2]

            for extra in [ frames[0][..2]; frames[0][..3]; partial ] do
                same (expected, int64 extra.Length) (readAll limit [ Array.append stream extra ])

        testCase "a stream split at every byte boundary gives every frame once, in order" <| fun () ->
            for k in 0 .. stream.Length do
                same (expected, 0L) (readAll limit (cut stream [ k ]))

        testCase "a stream arriving one byte at a time gives every frame once, in order" <| fun () ->
            same (expected, 0L) (readAll limit [ for b in stream -> [| b |] ])

        testPropertyWithConfig (cases 500) "a stream cut at random places, empty segments included, gives every frame once, in order"
        <| Prop.forAll (Gen.listOf (Gen.choose (0, stream.Length)) |> Arb.fromGen) (fun positions ->
            same (expected, 0L) (readAll limit (cut stream positions)))

        testCase "a header split across segments is read whole" <| fun () ->
            let f = frames[1]

            for split in 1..3 do
                let segments = [ f[.. split - 1]; f[split..3]; f[4..] ]
                same ([ expected[1] ], 0L) (readAll limit segments)
                same ([ expected[1] ], 0L) (readAll limit [ f[.. split - 1]; f[split..] ])
                // With only part of the header there is nothing to say yet.
                same ([], int64 split) (readAll limit [ f[.. split - 1] ])

        testCase "a header split after an empty first segment is read whole" <| fun () ->
            same ([ expected[1] ], 0L) (readAll limit [ [||]; frames[1][..1]; [||]; frames[1][2..] ])

        testCase "a header announcing more than the limit is TooLarge with that length, before any body" <| fun () ->
            let cases =
                [ 0, 1
                  1000, 1001
                  1000, Frame.MaxBodyLength
                  Frame.MaxBodyLength - 1, Frame.MaxBodyLength ]

            for maxBody, announced in cases do
                for split in 0..3 do
                    match Frame.tryRead maxBody (sequenceOf (cut (header 2uy announced) [ split ])) with
                    | TooLarge n -> Expect.equal n announced "n"
                    | other -> failwithf "limit %d, announced %d: %A" maxBody announced other

        testCase "a body of exactly the limit is accepted, Frame.MaxBodyLength included" <| fun () ->
            for maxBody in [ 0; 1000; Frame.MaxBodyLength ] do
                let whole = frame 2uy (Array.init maxBody byte)
                // The header arrives alone first: it must be Incomplete (or the frame, for an empty body), never TooLarge.
                same ([ FrameType.HttpReqCall, whole[4..] ], 0L) (readAll maxBody [ whole[..3]; whole[4..] ])

        testPropertyWithConfig (cases 500) "writeHeader writes the type and a 24-bit big-endian length, read back by tryRead"
        <| Prop.forAll (Gen.zip (Gen.choose (0, 255)) (Gen.choose (0, Frame.MaxBodyLength)) |> Arb.fromGen) (fun (t, n) ->
            let dest = Array.zeroCreate<byte> 4
            same (Ok()) (Frame.writeHeader (LanguagePrimitives.EnumOfValue(byte t)) n (Span dest))
            same (header (byte t) n) dest
            // A limit just below the announced length makes tryRead report the length it read.
            match Frame.tryRead (n - 1) (sequenceOf [ dest ]) with
            | TooLarge m -> Expect.equal m n "the length tryRead reports"
            | other -> failwithf "%A" other)

        testCase "writeHeader rejects negative and over-long lengths and leaves the destination alone" <| fun () ->
            for n in [ -1; Int32.MinValue; Frame.MaxBodyLength + 1; Int32.MaxValue ] do
                let dest = Array.create 4 0xAAuy
                same (Error n) (Frame.writeHeader FrameType.HttpReqCall n (Span dest))
                same (Array.create 4 0xAAuy) dest
    ]

/// How a message with a body of n bytes fares at the encoding limit, in one direction.
let private checkEncodingLimit
    (encode: FrameBuilder -> 'M -> Result<ReadOnlyMemory<byte>, EncodeError>)
    (decode: FrameType -> byte[] -> Result<'M, DecodeError>)
    (withBody: int -> 'M)
    =
    use b = new FrameBuilder()

    /// Encodes with the one builder, checks the frame decodes to the message, gives the body length.
    let roundTrip n =
        match encode b (withBody n) with
        | Ok f ->
            let f = f.ToArray()
            same (header f[0] (f.Length - Frame.HeaderLength)) f[..3]
            same (Ok(withBody n)) (decode (LanguagePrimitives.EnumOfValue f[0]) f[4..])
            f.Length - Frame.HeaderLength
        | Error e -> failwith (e.Describe())

    // The body bytes come last: a fixed overhead, then the body padded to 4 bytes. Measured below
    // the limit, it gives the exact length of every frame, also those that do not fit.
    let overhead = roundTrip 4 - 4
    let bodyOf n = (n + overhead + 3) / 4 * 4

    for n in 1..8 do
        Expect.equal (roundTrip n) (bodyOf n) $"the body length of a {n}-byte payload"

    let fits = (Frame.MaxBodyLength - overhead) / 4 * 4
    Expect.equal (roundTrip fits) (bodyOf fits) "the largest payload that fits"
    Expect.isGreaterThan (Frame.MaxBodyLength + 1) (roundTrip fits) "within the limit"
    Expect.isGreaterThan (bodyOf (fits + 1)) Frame.MaxBodyLength "one byte more is over it"

    for n in [ fits + 1; 16 * 1024 * 1024 ] do
        match encode b (withBody n) with
        | Error(FrameTooLarge len) -> Expect.equal len (bodyOf n) "the length reported"
        | Ok f -> failwithf "a %d-byte body gave a %d-byte frame instead of an error" n f.Length

    // The builder stays usable after refusing a frame.
    Expect.equal (roundTrip 1) (bodyOf 1) "roundTrip 1"

let private encodingLimit =
    [
        testCase "a Stop just under the 24-bit limit encodes and decodes; one byte more is FrameTooLarge" <| fun () ->
            checkEncodingLimit
                Encode.runnerMessage
                (fun t body -> Decode.runnerMessage t (ReadOnlySpan body))
                (fun n ->
                    HttpReqCallResp
                        { Id = 9u
                          Action = HttpReqCall.Stop { Status = 200us; Headers = [| TextEntry.Set("x", "y") |]; Body = Array.create n 7uy } })

        testCase "an ExtraInfo answer just under the 24-bit limit encodes and decodes; one byte more is FrameTooLarge" <| fun () ->
            checkEncodingLimit
                Encode.apisixMessage
                (fun t body -> Decode.apisixMessage t (ReadOnlySpan body))
                (fun n -> ExtraInfoResp { Result = ValueSome(Array.create n 1uy) })
    ]

[<Tests>]
let tests =
    testSequencedGroup "Wire.Frame" <| testList "Wire.Frame" (reading @ encodingLimit)
