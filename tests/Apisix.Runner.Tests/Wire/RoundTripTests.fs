/// Encode, read the frame back, decode: every message comes back exactly as it was.
module Apisix.Runner.Tests.Wire.RoundTripTests

open System
open System.Buffers
open Expecto
open FsCheck
open FsCheck.FSharp
open Apisix.Runner
open Apisix.Runner.Tests.Support
open Apisix.Runner.Tests.Support.Generators

/// A body decoder given the frame type; a delegate because F# function values cannot take spans.
type Decoder<'T> = delegate of FrameType * ReadOnlySpan<byte> -> Result<'T, DecodeError>

type Encoder<'T> = FrameBuilder -> 'T -> Result<ReadOnlyMemory<byte>, EncodeError>

let encodeOrFail (encode: Encoder<'T>) (b: FrameBuilder) (value: 'T) =
    match encode b value with
    | Ok frame -> frame
    | Error e -> failwith (e.Describe())

/// Encodes `value` with `b`, checks the frame around it and that it decodes back to `value`.
let private check (b: FrameBuilder) (frameType: FrameType) (encode: Encoder<'T>) (decode: Decoder<'T>) (value: 'T) =
    let frame = encodeOrFail encode b value
    // A reused builder must write what a fresh one writes: stale bytes from an earlier frame
    // would make output nondeterministic and leak another call's data to APISIX.
    use fresh = new FrameBuilder()
    Expect.isTrue (frame.Span.SequenceEqual((encodeOrFail encode fresh value).Span)) "reused builder differs from a fresh one"
    // The header is read by hand, so a mistake shared by writeHeader and tryRead cannot hide.
    let header = frame.Span
    Expect.equal header[0] (byte frameType) "the header's frame type"
    Expect.equal ((int header[1] <<< 16) ||| (int header[2] <<< 8) ||| int header[3]) (frame.Length - Frame.HeaderLength) "the header's body length"

    match Frame.tryRead Frame.MaxBodyLength (ReadOnlySequence frame) with
    | Frame(typ, body, rest) ->
        Expect.equal typ frameType "the frame type tryRead reads"
        Expect.isTrue rest.IsEmpty "bytes left after the frame"
        let decoded = decode.Invoke(typ, body.FirstSpan)

        if decoded <> Ok value then
            failwithf "decoded %A\nexpected %A" decoded value
    | _ -> failwith "Frame.tryRead did not find the whole frame"

/// A property over 1000 values, all through ONE builder, which starts small: it grows on the rare
/// large values and then serves small ones again. The builder is made when the first case runs.
let private roundTrip name (gen: Gen<'T>) (frameType: 'T -> FrameType) (encode: Encoder<'T>) (decode: Decoder<'T>) =
    let b = lazy (new FrameBuilder(64))
    testPropertyWithConfig (cases 1000) name (Prop.forAll (Arb.fromGen gen) (fun value -> check b.Value (frameType value) encode decode value))

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

[<Tests>]
let tests =
    testSequencedGroup "Wire.RoundTrip"
    <| testList "Wire.RoundTrip" [
        roundTrip "PrepareConf.Req round trips" Generators.prepareConfReq (fun _ -> FrameType.PrepareConf) Encode.prepareConfReq (Decoder(fun _ b -> Decode.prepareConfReq b))

        roundTrip "PrepareConf.Resp round trips" Generators.prepareConfResp (fun _ -> FrameType.PrepareConf) Encode.prepareConfResp (Decoder(fun _ b -> Decode.prepareConfResp b))

        roundTrip "HTTPReqCall.Req round trips" Generators.httpReqCallReq (fun _ -> FrameType.HttpReqCall) Encode.httpReqCallReq (Decoder(fun _ b -> Decode.httpReqCallReq b))

        roundTrip "HTTPReqCall.Resp round trips" Generators.httpReqCallResp (fun _ -> FrameType.HttpReqCall) Encode.httpReqCallResp (Decoder(fun _ b -> Decode.httpReqCallResp b))

        roundTrip "ExtraInfo.Req round trips" Generators.extraInfo (fun _ -> FrameType.ExtraInfo) Encode.extraInfoReq (Decoder(fun _ b -> Decode.extraInfoReq b))

        roundTrip "ExtraInfo.Resp round trips" Generators.extraInfoResp (fun _ -> FrameType.ExtraInfo) Encode.extraInfoResp (Decoder(fun _ b -> Decode.extraInfoResp b))

        roundTrip "HTTPRespCall.Req round trips" Generators.httpRespCallReq (fun _ -> FrameType.HttpRespCall) Encode.httpRespCallReq (Decoder(fun _ b -> Decode.httpRespCallReq b))

        roundTrip "HTTPRespCall.Resp round trips" Generators.httpRespCallResp (fun _ -> FrameType.HttpRespCall) Encode.httpRespCallResp (Decoder(fun _ b -> Decode.httpRespCallResp b))

        roundTrip "Err.Resp round trips" Generators.errCode (fun _ -> FrameType.RpcError) Encode.errResp (Decoder(fun _ b -> Decode.errResp b))

        roundTrip "ApisixMessage round trips through the dispatchers" Generators.apisixMessage apisixFrameType Encode.apisixMessage (Decoder(fun t b -> Decode.apisixMessage t b))

        roundTrip "RunnerMessage round trips through the dispatchers" Generators.runnerMessage runnerFrameType Encode.runnerMessage runnerDecoder

        testCase "a builder reused right after a large frame writes small frames correctly" <| fun () ->
            // Non-zero everywhere, so leftovers would show in the small frame's padding or absent fields.
            let large =
                HttpRespCallResp
                    { Id = UInt32.MaxValue
                      Status = UInt16.MaxValue
                      Headers = Array.init 3000 (fun i -> TextEntry.Set($"x-large-{i}", String('\u00FF', 40)))
                      Body = Array.create 60_000 0xFFuy }

            use b = new FrameBuilder()

            for small in Gen.sampleWithSize 20 200 Generators.runnerMessage do
                check b (runnerFrameType large) Encode.runnerMessage runnerDecoder large
                check b (runnerFrameType small) Encode.runnerMessage runnerDecoder small

        testCase "a body too long for the 24-bit length is refused and the builder still works after" <| fun () ->
            use b = new FrameBuilder()
            let huge = { ExtraInfo.Resp.Result = ValueSome(Array.zeroCreate Frame.MaxBodyLength) }

            match Encode.extraInfoResp b huge with
            | Error(FrameTooLarge n) -> Expect.isGreaterThan n Frame.MaxBodyLength "the length of the refused frame"
            | Ok _ -> failwith "a body over 2^24-1 bytes was framed"

            let small = ExtraInfoResp { Result = ValueSome [| 1uy; 2uy |] }
            check b FrameType.ExtraInfo Encode.apisixMessage (Decoder(fun t body -> Decode.apisixMessage t body)) small
    ]
