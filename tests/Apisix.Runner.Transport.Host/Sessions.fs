/// Small sessions over IConnectionIo, in the shape of the runner's own (receive, take whole frames,
/// answer, receive again), for the bench and the transport tests.
module internal Apisix.Runner.Transport.Host.Sessions

open System
open System.Buffers
open System.Buffers.Binary
open System.Threading
open System.Threading.Tasks
open Apisix.Runner

/// Frame types of the test session (beside 1 and 2, which the bench session also answers).
module Kind =
    /// Echo: the answer is the request (type and body).
    [<Literal>]
    let Echo = 2uy

    /// Sleep: blocks the session's thread for the milliseconds in the body (int32), then answers empty.
    [<Literal>]
    let Sleep = 5uy

    /// Big: answers a body of the byte count in the body (int32), byte i being i % 251.
    [<Literal>]
    let Big = 6uy

    /// Yield: continues on the thread pool (Task.Yield) before it echoes.
    [<Literal>]
    let Yield = 7uy

    /// Gate: awaits the gate the test gave the session before it echoes.
    [<Literal>]
    let Gate = 8uy

    /// Spin: keeps its thread busy computing for the milliseconds in the body (int32), then answers empty.
    [<Literal>]
    let Spin = 9uy

/// A frame of `kind` with `body`, header in front.
let frame (kind: byte) (body: ReadOnlySpan<byte>) : byte[] =
    let f = Array.zeroCreate (Frame.HeaderLength + body.Length)
    Frame.writeHeader (LanguagePrimitives.EnumOfValue kind) body.Length (Span f) |> ignore
    body.CopyTo(Span(f, Frame.HeaderLength, body.Length))
    f

/// A frame whose body is one int32 (Sleep, Big).
let intFrame (kind: byte) (value: int) : byte[] =
    let b = Array.zeroCreate 4
    BinaryPrimitives.WriteInt32LittleEndian(Span b, value)
    frame kind (ReadOnlySpan b)

let private stopHeaders = [| TextEntry.Set("X-Resp-A6-Runner", "dotnet") |]
let private hello = "hello"B

/// The bench answer to one frame: PrepareConf gets token 1, HTTPReqCall is read as a view (fully
/// validated, as the runner reads it) and answered with an encoded Stop, anything else BAD_REQUEST.
let private benchAnswer (builder: FrameBuilder) (kind: FrameType) (body: ReadOnlySequence<byte>) =
    match kind with
    | FrameType.PrepareConf -> Write.prepareConfResp (builder, 1u)
    | FrameType.HttpReqCall ->
        match HttpReqCallView.Read body.First with
        | Ok view -> Write.httpReqCallStop (builder, view.Id, 200us, ReadOnlySpan stopHeaders, ReadOnlySpan hello)
        | Error _ -> Write.errResp (builder, Err.Code.BAD_REQUEST)
    | _ -> Write.errResp (builder, Err.Code.BAD_REQUEST)

/// A Stop answer encoded once, and where its id goes: the transport's own cost without the codec's.
/// Lazy: the test session must not need the FlatBuffers assembly, which the fd-limit test leaves no
/// descriptor to load.
let private precomputed =
    lazy
        use b = new FrameBuilder(256)

        match Write.httpReqCallStop (b, 0xA5A5A5A5u, 200us, ReadOnlySpan stopHeaders, ReadOnlySpan hello) with
        | Ok frame ->
            let bytes = frame.ToArray()
            let at = Span<byte>(bytes).IndexOf(ReadOnlySpan [| 0xA5uy; 0xA5uy; 0xA5uy; 0xA5uy |])
            struct (bytes, at)
        | Error e -> failwith (string e)

/// The id of an HTTPReqCall.Req read as the floor reads it (root, vtable, slot 0), without validation.
let private requestId (body: ReadOnlySpan<byte>) =
    let table = int (BinaryPrimitives.ReadUInt32LittleEndian body)
    let vtable = table - BinaryPrimitives.ReadInt32LittleEndian(body.Slice table)
    let field = int (BinaryPrimitives.ReadUInt16LittleEndian(body.Slice(vtable + 4)))
    if field = 0 then 0u else BinaryPrimitives.ReadUInt32LittleEndian(body.Slice(table + field))

/// The bench answer with the Stop encoded once and only its id patched (`--precomputed`).
let private precomputedAnswer (builder: FrameBuilder) (kind: FrameType) (body: ReadOnlySequence<byte>) =
    match kind with
    | FrameType.HttpReqCall when body.IsSingleSegment && body.Length >= 8L ->
        let struct (frame, at) = precomputed.Value
        BinaryPrimitives.WriteUInt32LittleEndian(Span(frame, at, 4), requestId body.FirstSpan)
        Ok(ReadOnlyMemory frame)
    | _ -> benchAnswer builder kind body

/// The bench session: what loadgen needs, with the runner's decode and encode (or, `precomputed`,
/// the floor's way: the id read and patched into a Stop encoded once).
let benchWith (precompute: bool) (io: IConnectionIo) : Task =
    task {
        let input = FrameReader(Frame.MaxBodyLength)
        let builder = new FrameBuilder(1024)
        let mutable go = true

        try
            while go do
                match input.TryTake() with
                | Frame(kind, body, _) ->
                    let answer =
                        if precompute then precomputedAnswer builder kind body else benchAnswer builder kind body

                    match answer with
                    | Ok answer ->
                        let! sent = io.SendAsync answer
                        go <- sent
                    | Error _ -> go <- false
                | TooLarge _ -> go <- false
                | Incomplete ->
                    let! n = io.ReceiveAsync(input.Free())

                    if n = 0 then go <- false else input.Received n
        finally
            io.Close()
            input.Dispose()
            builder.Dispose()
    }

/// The bench session with the runner's decode and encode.
let bench (io: IConnectionIo) : Task = benchWith false io

/// Writes the test session's answer to one frame into `out`, or a larger array; the array and the length.
let private testAnswer (out: byte[]) (kind: byte) (body: ReadOnlySequence<byte>) : struct (byte[] * int) =
    let length =
        match kind with
        | Kind.Sleep
        | Kind.Spin -> 0
        | Kind.Big ->
            let mutable n = 0
            let mutable r = SequenceReader<byte>(body)
            r.TryReadLittleEndian(&n) |> ignore
            n
        | _ -> int body.Length

    let total = Frame.HeaderLength + length

    let out = if out.Length < total then Array.zeroCreate (max total (2 * out.Length)) else out

    Frame.writeHeader (LanguagePrimitives.EnumOfValue kind) length (Span out) |> ignore

    match kind with
    | Kind.Sleep
    | Kind.Spin -> ()
    | Kind.Big ->
        for i in 0 .. length - 1 do
            out[Frame.HeaderLength + i] <- byte (i % 251)
    | _ -> body.CopyTo(Span(out, Frame.HeaderLength, length))

    struct (out, total)

let private sleepOf (body: ReadOnlySequence<byte>) =
    let mutable n = 0
    let mutable r = SequenceReader<byte>(body)
    r.TryReadLittleEndian(&n) |> ignore
    n

/// The test session: answers every frame by its kind (see Kind), until the peer closes, the
/// transport answers 0, or a send fails; then closes the connection. `gate` is awaited by Gate frames.
let test (gate: unit -> Task) (io: IConnectionIo) : Task =
    task {
        let input = FrameReader(Frame.MaxBodyLength)
        let mutable out = Array.zeroCreate<byte> 4096
        let mutable go = true

        try
            while go do
                match input.TryTake() with
                | Frame(kind, body, _) ->
                    let kind = byte kind

                    match kind with
                    | Kind.Sleep -> Thread.Sleep(sleepOf body)
                    | Kind.Spin ->
                        let until = Environment.TickCount64 + int64 (sleepOf body)

                        while Environment.TickCount64 < until do
                            Thread.SpinWait 1000
                    | Kind.Yield -> do! Task.Yield()
                    | Kind.Gate -> do! gate ()
                    | _ -> ()

                    // After an await the body is still valid: nothing received into the reader since.
                    let struct (buffer, n) = testAnswer out kind body
                    out <- buffer
                    let! sent = io.SendAsync(ReadOnlyMemory(out, 0, n))
                    go <- sent
                | TooLarge _ -> go <- false
                | Incomplete ->
                    let! n = io.ReceiveAsync(input.Free())

                    if n = 0 then go <- false else input.Received n
        finally
            io.Close()
            input.Dispose()
    }
