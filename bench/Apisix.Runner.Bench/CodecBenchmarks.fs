namespace Apisix.Runner.Bench

open System
open System.Buffers
open BenchmarkDotNet.Attributes
open Apisix.Runner

/// The materialising codec: decode the request, encode the answers, read a frame.
/// Inputs are built once in GlobalSetup, so each benchmark measures only the codec call.
[<MemoryDiagnoser>]
type CodecBenchmarks() =
    let mutable frame: byte[] = [||]
    let mutable body = ReadOnlyMemory<byte>.Empty
    let mutable frameSequence = ReadOnlySequence<byte>.Empty
    let mutable builder: FrameBuilder = null

    static let fail (what: string) = raise (InvalidOperationException what)

    [<GlobalSetup>]
    member _.Setup() =
        frame <- Requests.requestFrame ()
        body <- Requests.bodyOf frame
        frameSequence <- ReadOnlySequence<byte>(frame)
        builder <- new FrameBuilder()

        // Check the inputs once, and warm the builder so its buffer already has its final size.
        match Decode.httpReqCallReq body.Span with
        | Ok r when r = Requests.request -> ()
        | Ok _ -> fail "the request does not round-trip"
        | Error e -> fail (e.Describe())

        for m in [ Requests.stopResp; Requests.rewriteResp ] do
            match Encode.httpReqCallResp builder m with
            | Ok f ->
                match Decode.httpReqCallResp(f.Span.Slice Frame.HeaderLength) with
                | Ok back when back = m -> ()
                | _ -> fail "an answer does not round-trip"
            | Error e -> fail (e.Describe())

    [<GlobalCleanup>]
    member _.Cleanup() = builder.Dispose()

    /// Decode.httpReqCallReq of the 10-header request: every string and array materialised.
    [<Benchmark>]
    member _.DecodeRequest() : HttpReqCall.Req =
        match Decode.httpReqCallReq body.Span with
        | Ok r -> r
        | Error e -> fail (e.Describe())

    /// Encode.httpReqCallResp of Stop{200, 1 header, "hello"} into the warm builder.
    [<Benchmark>]
    member _.EncodeStop() : int =
        match Encode.httpReqCallResp builder Requests.stopResp with
        | Ok f -> f.Length
        | Error e -> fail (e.Describe())

    /// Encode.httpReqCallResp of Rewrite{path, 1 header, 1 arg, 22-byte body} into the warm builder.
    [<Benchmark>]
    member _.EncodeRewrite() : int =
        match Encode.httpReqCallResp builder Requests.rewriteResp with
        | Ok f -> f.Length
        | Error e -> fail (e.Describe())

    /// Write.httpReqCallStop, the span-based Stop encoder that httpReqCallResp wraps (no records needed).
    [<Benchmark>]
    member _.EncodeStopSpans() : int =
        let s = Requests.stop

        match Write.httpReqCallStop (builder, 42u, s.Status, ReadOnlySpan s.Headers, ReadOnlySpan s.Body) with
        | Ok f -> f.Length
        | Error e -> fail (e.Describe())

    /// The codec's per-call cost: decode the request, answer it with Stop (the Resp record carrying
    /// the request's id is made per call; the Stop itself is shared).
    [<Benchmark>]
    member _.DecodeRequestEncodeStop() : int =
        match Decode.httpReqCallReq body.Span with
        | Ok r ->
            match Encode.httpReqCallResp builder { Id = r.Id; Action = Requests.stopAction } with
            | Ok f -> f.Length
            | Error e -> fail (e.Describe())
        | Error e -> fail (e.Describe())

    /// Frame.tryRead on a single-segment sequence holding exactly one request frame.
    [<Benchmark>]
    member _.FrameTryRead() : int64 =
        match Frame.tryRead Frame.MaxBodyLength frameSequence with
        | FrameRead.Frame(_, b, rest) -> b.Length + rest.Length
        | _ -> fail "no frame"
