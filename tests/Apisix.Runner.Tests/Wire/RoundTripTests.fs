/// Encode, read the frame back, decode: every message comes back exactly as it was.
module Apisix.Runner.Tests.RoundTripTests

open System
open System.Buffers
open FsCheck
open FsCheck.FSharp
open Xunit
open Apisix.Runner

/// A body decoder given the frame type; a delegate because F# function values cannot take spans.
type Decoder<'T> = delegate of FrameType * ReadOnlySpan<byte> -> Result<'T, DecodeError>

type Encoder<'T> = FlatBufferBuilder -> 'T -> Result<ReadOnlyMemory<byte>, EncodeError>

let encodeOrFail (encode: Encoder<'T>) (b: FlatBufferBuilder) (value: 'T) =
    match encode b value with
    | Ok frame -> frame
    | Error e -> failwith (e.Describe())

/// Encodes `value` with `b`, checks the frame around it and that it decodes back to `value`.
let private check (b: FlatBufferBuilder) (frameType: FrameType) (encode: Encoder<'T>) (decode: Decoder<'T>) (value: 'T) =
    let frame = encodeOrFail encode b value
    // A reused builder must write what a fresh one writes: stale bytes from an earlier frame
    // would make output nondeterministic and leak another call's data to APISIX.
    use fresh = new FlatBufferBuilder()
    Assert.True(frame.Span.SequenceEqual((encodeOrFail encode fresh value).Span), "reused builder differs from a fresh one")
    // The header is read by hand, so a mistake shared by writeHeader and tryRead cannot hide.
    let header = frame.Span
    Assert.Equal(byte frameType, header[0])
    Assert.Equal(frame.Length - Frame.HeaderLength, (int header[1] <<< 16) ||| (int header[2] <<< 8) ||| int header[3])

    match Frame.tryRead Frame.MaxBodyLength (ReadOnlySequence frame) with
    | Frame(typ, body, rest) ->
        Assert.Equal(frameType, typ)
        Assert.True(rest.IsEmpty, "bytes left after the frame")
        let decoded = decode.Invoke(typ, body.FirstSpan)

        if decoded <> Ok value then
            failwithf "decoded %A\nexpected %A" decoded value
    | _ -> failwith "Frame.tryRead did not find the whole frame"

/// `cases` values through ONE builder, which starts small: it grows on the rare large values and
/// then serves small ones again.
let private roundTrip (gen: Gen<'T>) (frameType: 'T -> FrameType) (encode: Encoder<'T>) (decode: Decoder<'T>) =
    use b = new FlatBufferBuilder(64)
    let config = Config.QuickThrowOnFailure.WithMaxTest 1000
    Check.One(config, Prop.forAll (Arb.fromGen gen) (fun value -> check b (frameType value) encode decode value))

/// Frame types from PROTOCOL.md's table, written out rather than taken from the encoder.
let private apisixFrameType =
    function
    | PrepareConfReq _ -> FrameType.PrepareConf
    | HttpReqCallReq _ -> FrameType.HttpReqCall
    | ExtraInfoResp _ -> FrameType.ExtraInfo
    | HttpRespCallReq _ -> FrameType.HttpRespCall

let private runnerFrameType =
    function
    | ErrResp _ -> FrameType.RpcError
    | PrepareConfResp _ -> FrameType.PrepareConf
    | HttpReqCallResp _ -> FrameType.HttpReqCall
    | ExtraInfoReq _ -> FrameType.ExtraInfo
    | HttpRespCallResp _ -> FrameType.HttpRespCall

let private runnerDecoder = Decoder(fun t body -> Decode.runnerMessage t body)

[<Fact>]
let ``PrepareConf.Req round trips`` () =
    roundTrip Generators.prepareConfReq (fun _ -> FrameType.PrepareConf) Encode.prepareConfReq (Decoder(fun _ b -> Decode.prepareConfReq b))

[<Fact>]
let ``PrepareConf.Resp round trips`` () =
    roundTrip Generators.prepareConfResp (fun _ -> FrameType.PrepareConf) Encode.prepareConfResp (Decoder(fun _ b -> Decode.prepareConfResp b))

[<Fact>]
let ``HTTPReqCall.Req round trips`` () =
    roundTrip Generators.httpReqCallReq (fun _ -> FrameType.HttpReqCall) Encode.httpReqCallReq (Decoder(fun _ b -> Decode.httpReqCallReq b))

[<Fact>]
let ``HTTPReqCall.Resp round trips`` () =
    roundTrip Generators.httpReqCallResp (fun _ -> FrameType.HttpReqCall) Encode.httpReqCallResp (Decoder(fun _ b -> Decode.httpReqCallResp b))

[<Fact>]
let ``ExtraInfo.Req round trips`` () =
    roundTrip Generators.extraInfo (fun _ -> FrameType.ExtraInfo) Encode.extraInfoReq (Decoder(fun _ b -> Decode.extraInfoReq b))

[<Fact>]
let ``ExtraInfo.Resp round trips`` () =
    roundTrip Generators.extraInfoResp (fun _ -> FrameType.ExtraInfo) Encode.extraInfoResp (Decoder(fun _ b -> Decode.extraInfoResp b))

[<Fact>]
let ``HTTPRespCall.Req round trips`` () =
    roundTrip Generators.httpRespCallReq (fun _ -> FrameType.HttpRespCall) Encode.httpRespCallReq (Decoder(fun _ b -> Decode.httpRespCallReq b))

[<Fact>]
let ``HTTPRespCall.Resp round trips`` () =
    roundTrip Generators.httpRespCallResp (fun _ -> FrameType.HttpRespCall) Encode.httpRespCallResp (Decoder(fun _ b -> Decode.httpRespCallResp b))

[<Fact>]
let ``Err.Resp round trips`` () =
    roundTrip Generators.errCode (fun _ -> FrameType.RpcError) Encode.errResp (Decoder(fun _ b -> Decode.errResp b))

[<Fact>]
let ``ApisixMessage round trips through the dispatchers`` () =
    roundTrip Generators.apisixMessage apisixFrameType Encode.apisixMessage (Decoder(fun t b -> Decode.apisixMessage t b))

[<Fact>]
let ``RunnerMessage round trips through the dispatchers`` () =
    roundTrip Generators.runnerMessage runnerFrameType Encode.runnerMessage runnerDecoder

[<Fact>]
let ``a builder reused right after a large frame writes small frames correctly`` () =
    // Non-zero everywhere, so leftovers would show in the small frame's padding or absent fields.
    let large =
        HttpRespCallResp
            { Id = UInt32.MaxValue
              Status = UInt16.MaxValue
              Headers = Array.init 3000 (fun i -> TextEntry.Set($"x-large-{i}", String('\u00FF', 40)))
              Body = Array.create 60_000 0xFFuy }

    use b = new FlatBufferBuilder()

    for small in Gen.sampleWithSize 20 200 Generators.runnerMessage do
        check b (runnerFrameType large) Encode.runnerMessage runnerDecoder large
        check b (runnerFrameType small) Encode.runnerMessage runnerDecoder small

[<Fact>]
let ``a body too long for the 24-bit length is refused and the builder still works after`` () =
    use b = new FlatBufferBuilder()
    let huge = { ExtraInfo.Resp.Result = ValueSome(Array.zeroCreate Frame.MaxBodyLength) }

    match Encode.extraInfoResp b huge with
    | Error(FrameTooLarge n) -> Assert.True(n > Frame.MaxBodyLength)
    | Ok _ -> failwith "a body over 2^24-1 bytes was framed"

    let small = ExtraInfoResp { Result = ValueSome [| 1uy; 2uy |] }
    check b FrameType.ExtraInfo Encode.apisixMessage (Decoder(fun t body -> Decode.apisixMessage t body)) small
