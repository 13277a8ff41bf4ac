namespace Apisix.Runner.Bench

open System
open BenchmarkDotNet.Attributes
open BenchmarkDotNet.Configs
open Apisix.Runner
open Apisix.Runner.Bench.Legacy

/// MEASUREMENT SCAFFOLDING, to be deleted after the run: the same four benchmarks as
/// CodecBenchmarks/ViewBenchmarks (EncodeStop, EncodeRewrite, EncodeStopSpans, ViewReadEncodeStop),
/// once with the old front-to-back builder (Legacy, the baseline of each category) and once with
/// FrameBuilder over Google.FlatBuffers, same inputs, same run.
[<MemoryDiagnoser; GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory); CategoriesColumn>]
type BuilderSideBySide() =
    let mutable body = ReadOnlyMemory<byte>.Empty
    let mutable legacy: LegacyFlatBufferBuilder = null
    let mutable google: FrameBuilder = null

    static let fail (what: string) = raise (InvalidOperationException what)

    static let length (r: Result<ReadOnlyMemory<byte>, EncodeError>) =
        match r with
        | Ok f -> f.Length
        | Error e -> fail (e.Describe())

    [<GlobalSetup>]
    member _.Setup() =
        body <- Requests.bodyOf (Requests.requestFrame ())
        legacy <- new LegacyFlatBufferBuilder()
        google <- new FrameBuilder()

        // Both encoders give answers that decode to the message, and both builders are warm.
        for m in [ Requests.stopResp; Requests.rewriteResp ] do
            for frame in [ LegacyEncode.httpReqCallResp legacy m; Encode.httpReqCallResp google m ] do
                match frame with
                | Ok f ->
                    match Decode.httpReqCallResp (f.Span.Slice Frame.HeaderLength) with
                    | Ok back when back = m -> ()
                    | _ -> fail "an answer does not round-trip"
                | Error e -> fail (e.Describe())

    [<GlobalCleanup>]
    member _.Cleanup() =
        legacy.Dispose()
        google.Dispose()

    [<Benchmark(Baseline = true); BenchmarkCategory("EncodeStop")>]
    member _.Legacy_EncodeStop() = length (LegacyEncode.httpReqCallResp legacy Requests.stopResp)

    [<Benchmark; BenchmarkCategory("EncodeStop")>]
    member _.Google_EncodeStop() = length (Encode.httpReqCallResp google Requests.stopResp)

    [<Benchmark(Baseline = true); BenchmarkCategory("EncodeRewrite")>]
    member _.Legacy_EncodeRewrite() = length (LegacyEncode.httpReqCallResp legacy Requests.rewriteResp)

    [<Benchmark; BenchmarkCategory("EncodeRewrite")>]
    member _.Google_EncodeRewrite() = length (Encode.httpReqCallResp google Requests.rewriteResp)

    [<Benchmark(Baseline = true); BenchmarkCategory("EncodeStopSpans")>]
    member _.Legacy_EncodeStopSpans() =
        let s = Requests.stop
        length (LegacyWrite.httpReqCallStop (legacy, 42u, s.Status, ReadOnlySpan s.Headers, ReadOnlySpan s.Body))

    [<Benchmark; BenchmarkCategory("EncodeStopSpans")>]
    member _.Google_EncodeStopSpans() =
        let s = Requests.stop
        length (Write.httpReqCallStop (google, 42u, s.Status, ReadOnlySpan s.Headers, ReadOnlySpan s.Body))

    [<Benchmark(Baseline = true); BenchmarkCategory("ViewReadEncodeStop")>]
    member _.Legacy_ViewReadEncodeStop() =
        match HttpReqCallView.Read body with
        | Ok v ->
            let s = Requests.stop
            length (LegacyWrite.httpReqCallStop (legacy, v.Id, s.Status, ReadOnlySpan s.Headers, ReadOnlySpan s.Body))
        | Error e -> fail (e.Describe())

    [<Benchmark; BenchmarkCategory("ViewReadEncodeStop")>]
    member _.Google_ViewReadEncodeStop() =
        match HttpReqCallView.Read body with
        | Ok v ->
            let s = Requests.stop
            length (Write.httpReqCallStop (google, v.Id, s.Status, ReadOnlySpan s.Headers, ReadOnlySpan s.Body))
        | Error e -> fail (e.Describe())
