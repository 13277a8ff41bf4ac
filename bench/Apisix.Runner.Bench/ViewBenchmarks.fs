namespace Apisix.Runner.Bench

open System
open BenchmarkDotNet.Attributes
open Apisix.Runner

/// The zero-copy HttpReqCallView (src/RequestView.fs) over the same request as CodecBenchmarks.
[<MemoryDiagnoser>]
type ViewBenchmarks() =
    let mutable body = ReadOnlyMemory<byte>.Empty
    let mutable builder: FrameBuilder = null

    static let fail (what: string) = raise (InvalidOperationException what)

    [<GlobalSetup>]
    member _.Setup() =
        body <- Requests.bodyOf (Requests.requestFrame ())
        builder <- new FrameBuilder()

        match HttpReqCallView.Read body with
        | Ok v when Decode.ofRequestView v = Requests.request -> ()
        | Ok _ -> fail "the view does not read back the request"
        | Error e -> fail (e.Describe())

        match Encode.httpReqCallResp builder Requests.stopResp with
        | Ok _ -> ()
        | Error e -> fail (e.Describe())

    [<GlobalCleanup>]
    member _.Cleanup() = builder.Dispose()

    /// HttpReqCallView.Read: validates the whole request (every entry), materialises nothing.
    [<Benchmark>]
    member _.ViewRead() : uint32 =
        match HttpReqCallView.Read body with
        | Ok v -> v.Id + uint32 v.Headers.Count
        | Error e -> fail (e.Describe())

    /// Read, then two headers by name as strings: user-agent (3rd) and cookie (last, a full scan).
    [<Benchmark>]
    member _.ViewReadTwoHeaders() : int =
        match HttpReqCallView.Read body with
        | Ok v ->
            match v.Headers.TryFind "user-agent", v.Headers.TryFind "cookie" with
            | ValueSome ua, ValueSome cookie -> ua.Length + cookie.Length
            | _ -> fail "header missing"
        | Error e -> fail (e.Describe())

    /// The same two lookups, but the values are read as UTF-8 spans (no string made).
    [<Benchmark>]
    member _.ViewReadTwoHeadersUtf8() : int =
        match HttpReqCallView.Read body with
        | Ok v ->
            let h = v.Headers
            let ua = h.IndexOf "user-agent"
            let cookie = h.IndexOf "cookie"

            if ua < 0 || cookie < 0 then
                fail "header missing"
            else
                h.ValueUtf8(ua).Length + h.ValueUtf8(cookie).Length
        | Error e -> fail (e.Describe())

    /// The per-call codec cost with the view: read the request, answer it with Stop through the
    /// span-based encoder (so no Resp record either).
    [<Benchmark>]
    member _.ViewReadEncodeStop() : int =
        match HttpReqCallView.Read body with
        | Ok v ->
            let s = Requests.stop

            match Write.httpReqCallStop (builder, v.Id, s.Status, ReadOnlySpan s.Headers, ReadOnlySpan s.Body) with
            | Ok f -> f.Length
            | Error e -> fail (e.Describe())
        | Error e -> fail (e.Describe())
