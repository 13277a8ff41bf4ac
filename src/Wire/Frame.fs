namespace Apisix.Runner

open System
open System.Buffers

/// The frame type byte: what the body of a frame holds (PROTOCOL.md, Framing).
type FrameType =
    | RpcError = 0uy
    | PrepareConf = 1uy
    | HttpReqCall = 2uy
    | ExtraInfo = 3uy
    | HttpRespCall = 4uy

/// The outcome of looking for one frame at the start of the received bytes.
[<Struct; NoEquality; NoComparison>]
type FrameRead =
    /// Not a whole frame yet: read more (nothing is consumed).
    | Incomplete
    /// One whole frame; `Rest` is what follows it, possibly more frames.
    | Frame of Type: FrameType * Body: ReadOnlySequence<byte> * Rest: ReadOnlySequence<byte>
    /// The header announces a body longer than the allowed maximum.
    | TooLarge of Length: int

/// Framing, both ways: 1 byte type, 3 bytes big-endian body length, then the body.
module Frame =

    /// Bytes in a frame header.
    [<Literal>]
    let HeaderLength = 4

    /// The largest body a 24-bit length can announce.
    [<Literal>]
    let MaxBodyLength = 0xFFFFFF

    /// Looks for one frame at the start of `input`, accepting bodies of at most `maxBody` bytes.
    /// The header may be split across segments; the body is returned in place, not copied.
    let tryRead (maxBody: int) (input: ReadOnlySequence<byte>) : FrameRead =
        if input.Length < int64 HeaderLength then
            Incomplete
        else
            let first = input.FirstSpan

            let length, typ =
                if first.Length >= HeaderLength then
                    (int first[1] <<< 16) ||| (int first[2] <<< 8) ||| int first[3], first[0]
                else
                    let mutable r = SequenceReader<byte>(input)
                    let mutable b0 = 0uy
                    let mutable b1 = 0uy
                    let mutable b2 = 0uy
                    let mutable b3 = 0uy
                    r.TryRead(&b0) |> ignore
                    r.TryRead(&b1) |> ignore
                    r.TryRead(&b2) |> ignore
                    r.TryRead(&b3) |> ignore
                    (int b1 <<< 16) ||| (int b2 <<< 8) ||| int b3, b0

            if length > maxBody then
                TooLarge length
            elif input.Length < int64 (HeaderLength + length) then
                Incomplete
            else
                let body = input.Slice(HeaderLength, length)
                Frame(LanguagePrimitives.EnumOfValue typ, body, input.Slice(body.End))

    /// Writes a frame header into the first 4 bytes of `destination`; errors when the body is too long.
    let writeHeader (frameType: FrameType) (bodyLength: int) (destination: Span<byte>) : Result<unit, int> =
        if bodyLength < 0 || bodyLength > MaxBodyLength then
            Error bodyLength
        else
            destination[0] <- byte frameType
            destination[1] <- byte (bodyLength >>> 16)
            destination[2] <- byte (bodyLength >>> 8)
            destination[3] <- byte bodyLength
            Ok()
