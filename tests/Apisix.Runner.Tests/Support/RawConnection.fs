/// A connection to the runner that sends any bytes, well-formed or not, and reads whole frames back
/// without trusting them; and the frames the fuzz and fault tests build by hand.
module Apisix.Runner.Tests.Support.RawConnection

open System
open System.Net.Sockets
open System.Threading
open System.Threading.Tasks
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient

/// What a raw connection read next.
type Received =
    | Got of FrameType * byte[]
    /// The runner closed (or reset) the connection after whole frames.
    | Closed
    /// The runner closed the connection partway through a frame of its own: never right.
    | ClosedMidFrame of buffered: int
    /// Nothing within the time allowed.
    | Silent

/// A unix-socket connection to the runner that sends any bytes, well-formed or not, and reads
/// whole frames back without trusting them.
[<Sealed; AllowNullLiteral>]
type RawConnection(path: string) =
    let socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
    do socket.Connect(UnixDomainSocketEndPoint path)
    let mutable buf = Array.zeroCreate<byte> 4096
    let mutable count = 0

    /// The longest a send may take: a runner that stops reading fails the test instead of hanging it.
    static member SendPatience = TimeSpan.FromSeconds 60.0

    /// Sends every byte; false when the runner has closed the connection. Fails when the bytes
    /// cannot all be sent within SendPatience.
    member _.SendAsync(bytes: ReadOnlyMemory<byte>) : Task<bool> =
        task {
            use expiry = new CancellationTokenSource(RawConnection.SendPatience)

            try
                let! _ = socket.SendAsync(bytes, SocketFlags.None, expiry.Token)
                return true
            with
            | :? OperationCanceledException ->
                return raise (TimeoutException $"{bytes.Length} bytes could not be sent within {RawConnection.SendPatience}: the runner stopped reading")
            | :? SocketException
            | :? ObjectDisposedException -> return false
        }

    member c.SendAsync(bytes: byte[]) = c.SendAsync(ReadOnlyMemory bytes)

    /// Tells the runner nothing more will come (it reads end of stream).
    member _.ShutdownSend() =
        try
            socket.Shutdown SocketShutdown.Send
        with
        | :? SocketException
        | :? ObjectDisposedException -> ()

    /// The next whole frame from the runner, or how the connection ended, or Silent after `timeout`.
    member _.ReadAsync(timeout: TimeSpan) : Task<Received> =
        task {
            use expiry = new CancellationTokenSource(timeout)
            let mutable result = ValueNone

            while result.IsNone do
                let declared = if count >= 4 then (int buf[1] <<< 16) ||| (int buf[2] <<< 8) ||| int buf[3] else -1

                if declared >= 0 && count >= 4 + declared then
                    let frameType: FrameType = LanguagePrimitives.EnumOfValue buf[0]
                    let body = Array.sub buf 4 declared
                    Buffer.BlockCopy(buf, 4 + declared, buf, 0, count - 4 - declared)
                    count <- count - 4 - declared
                    result <- ValueSome(Got(frameType, body))
                else
                    if count = buf.Length then
                        let bigger = Array.zeroCreate<byte> (2 * buf.Length)
                        Buffer.BlockCopy(buf, 0, bigger, 0, count)
                        buf <- bigger

                    let! n =
                        task {
                            try
                                return! socket.ReceiveAsync(Memory(buf, count, buf.Length - count), SocketFlags.None, expiry.Token)
                            with
                            | :? OperationCanceledException -> return -1
                            | :? SocketException
                            | :? ObjectDisposedException -> return 0
                        }

                    if n < 0 then result <- ValueSome Silent
                    elif n = 0 then result <- ValueSome(if count = 0 then Closed else ClosedMidFrame count)
                    else count <- count + n

            return result.Value
        }

    interface IDisposable with
        member _.Dispose() = socket.Dispose()

/// The message in a raw read; fails the test on anything else.
let message (received: Received) =
    match received with
    | Got(t, body) ->
        match Decode.runnerMessage t (ReadOnlySpan body) with
        | Ok m -> m
        | Error e -> failwith $"undecodable frame from the runner: {e.Describe()}"
    | other -> failwith $"expected a frame from the runner, got {other}"

// ---- frames ----

/// A frame header announcing `declared` body bytes.
let header (frameType: byte) (declared: int) =
    [| frameType; byte (declared >>> 16); byte (declared >>> 8); byte declared |]

/// A frame whose header tells the truth.
let frameOf (frameType: byte) (body: byte[]) = Array.append (header frameType body.Length) body

/// The body length a frame's header announces.
let declaredLength (frame: byte[]) =
    (int frame[1] <<< 16) ||| (int frame[2] <<< 8) ||| int frame[3]

/// A message encoded by the project's codec, as a whole frame.
let encode (message: ApisixMessage) : byte[] =
    use b = new FrameBuilder()

    match Encode.apisixMessage b message with
    | Ok f -> f.ToArray()
    | Error e -> failwith (e.Describe())

/// The first bytes of a frame in hex, for failure messages.
let hex (bytes: byte[]) =
    let shown = Convert.ToHexString(bytes, 0, min bytes.Length 96)
    if bytes.Length > 96 then $"{shown}... ({bytes.Length} bytes)" else shown

/// A call whose frame body is exactly `size` bytes: an `x-big` header makes the body as long as
/// the encoder's 4-byte alignment allows, and up to 3 bytes no field points at make up the rest
/// (a FlatBuffers reader ignores them, as APISIX's own encoder may leave some).
let callOfSize (token: uint32) (id: uint32) (size: int) =
    let build fill =
        encode (
            HttpReqCallReq
                { httpRequest token id with
                    Headers = [| TextEntry.Set("host", "example.com"); TextEntry.Set("x-big", String('a', fill)) |] }
        )

    let overhead = (build 0).Length - 4
    let mutable frame = build (size - overhead)
    let mutable fill = size - overhead

    while frame.Length - 4 > size do
        fill <- fill - 1
        frame <- build fill

    if size - (frame.Length - 4) > 3 then
        failwithf "built a body of %d bytes, more than 3 short of %d" (frame.Length - 4) size

    let exact = Array.zeroCreate (4 + size)
    frame.CopyTo(exact, 0)
    exact[1] <- byte (size >>> 16)
    exact[2] <- byte (size >>> 8)
    exact[3] <- byte size
    exact
