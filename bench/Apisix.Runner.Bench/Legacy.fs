/// MEASUREMENT SCAFFOLDING, to be deleted after the run: a verbatim copy of the front-to-back
/// FlatBufferBuilder and the Write module as they were before Google.FlatBuffers (commit e46d198,
/// src/Wire/FlatBuffers.fs and src/Wire/Encode.fs), renamed Legacy*, so that one BenchmarkDotNet
/// run compares the old encoder with the new one on the same messages.
namespace Apisix.Runner.Bench.Legacy

open System
open System.Buffers
open System.Buffers.Binary
open System.Text
open Apisix.Runner

/// Writes FlatBuffers front to back into one pooled, reusable buffer, each frame prefixed by
/// the 4-byte frame header so that a finished frame is one contiguous span ready for the socket.
/// Parents come before children and are patched when a child is placed, so every uoffset points
/// forward as the format requires; every table gets its own vtable just before it.
/// Alignment is counted from the start of the FlatBuffers body. Not thread-safe: one per connection.
[<Sealed; AllowNullLiteral>]
type LegacyFlatBufferBuilder(initialCapacity: int) =
    let mutable buf: byte[] = ArrayPool<byte>.Shared.Rent(max 64 initialCapacity)
    let mutable pos = 0
    let mutable body = 0
    let mutable tableStart = 0
    let mutable vtableStart = 0

    let ensure (extra: int) =
        if pos + extra > buf.Length then
            let needed = int64 pos + int64 extra

            if needed > int64 Array.MaxLength then
                raise (OutOfMemoryException "LegacyFlatBufferBuilder: frame larger than an array can hold")

            let bigger = ArrayPool<byte>.Shared.Rent(int (min (int64 Array.MaxLength) (max needed (2L * int64 buf.Length))))
            Buffer.BlockCopy(buf, 0, bigger, 0, pos)
            ArrayPool<byte>.Shared.Return buf
            buf <- bigger

    let align (n: int) =
        let pad = (n - (pos - body) % n) % n
        ensure pad
        Array.Clear(buf, pos, pad)
        pos <- pos + pad

    new() = new LegacyFlatBufferBuilder(1024)

    /// Bytes written so far, frame header included.
    member _.Length = pos

    /// Starts a frame of the given type: reserves the frame header and the root offset.
    member _.BeginFrame(frameType: FrameType) =
        pos <- 0
        ensure 8
        buf[0] <- byte frameType
        body <- Frame.HeaderLength
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, 4, 4), 0u)
        pos <- 8

    /// Finishes the frame: fills in the 24-bit big-endian body length. Errors when the body is too large.
    member _.EndFrame() : Result<ReadOnlyMemory<byte>, int> =
        match Frame.writeHeader (LanguagePrimitives.EnumOfValue buf[0]) (pos - body) (Span buf) with
        | Ok() -> Ok(ReadOnlyMemory(buf, 0, pos))
        | Error len -> Error len

    /// Starts a table with room for `slots` fields and returns its position.
    member _.BeginTable(slots: int) : int =
        align 2
        let vsize = 4 + 2 * slots
        ensure (vsize + 8)
        vtableStart <- pos
        Array.Clear(buf, pos, vsize)
        BinaryPrimitives.WriteUInt16LittleEndian(Span(buf, pos, 2), uint16 vsize)
        pos <- pos + vsize
        align 4
        tableStart <- pos
        BinaryPrimitives.WriteInt32LittleEndian(Span(buf, pos, 4), tableStart - vtableStart)
        pos <- pos + 4
        tableStart

    member private _.Slot(slot: int) =
        BinaryPrimitives.WriteUInt16LittleEndian(Span(buf, vtableStart + 4 + 2 * slot, 2), uint16 (pos - tableStart))

    member b.AddU8(slot: int, value: byte) =
        ensure 1
        b.Slot slot
        buf[pos] <- value
        pos <- pos + 1

    member b.AddU16(slot: int, value: uint16) =
        align 2
        ensure 2
        b.Slot slot
        BinaryPrimitives.WriteUInt16LittleEndian(Span(buf, pos, 2), value)
        pos <- pos + 2

    member b.AddU32(slot: int, value: uint32) =
        align 4
        ensure 4
        b.Slot slot
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, pos, 4), value)
        pos <- pos + 4

    /// Adds an offset field to be filled by `Patch` once its target is written; returns the patch position.
    member b.AddOffset(slot: int) : int =
        align 4
        ensure 4
        b.Slot slot
        let at = pos
        pos <- pos + 4
        at

    /// Closes the current table: records its inline size in its vtable.
    member _.EndTable() =
        BinaryPrimitives.WriteUInt16LittleEndian(Span(buf, vtableStart + 2, 2), uint16 (pos - tableStart))

    /// Points the uoffset at `at` to `target` (which lies after it).
    member _.Patch(at: int, target: int) =
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, at, 4), uint32 (target - at))

    /// Makes `target` the root table of the frame.
    member b.SetRoot(target: int) = b.Patch(body, target)

    /// Writes a string (length, UTF-8 bytes, NUL) and returns its position.
    member _.String(value: string) : int =
        align 4
        ensure (8 + Encoding.UTF8.GetMaxByteCount value.Length)
        let at = pos
        let n = Encoding.UTF8.GetBytes(value.AsSpan(), Span(buf, at + 4, buf.Length - at - 4))
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, at, 4), uint32 n)
        buf[at + 4 + n] <- 0uy
        pos <- at + 5 + n
        at

    /// Writes a byte vector and returns its position.
    member _.Bytes(value: ReadOnlySpan<byte>) : int =
        align 4
        ensure (4 + value.Length)
        let at = pos
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, at, 4), uint32 value.Length)
        value.CopyTo(Span(buf, at + 4, value.Length))
        pos <- at + 4 + value.Length
        at

    /// Writes the header of a vector of `count` offsets; element i is patched at `position + 4 + 4 * i`.
    member _.OffsetVector(count: int) : int =
        align 4
        ensure (4 + 4 * count)
        let at = pos
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, at, 4), uint32 count)
        Array.Clear(buf, at + 4, 4 * count)
        pos <- at + 4 + 4 * count
        at

    /// Gives the buffer back to the pool; the builder must not be used afterwards.
    member _.Dispose() =
        if not (isNull buf) then
            ArrayPool<byte>.Shared.Return buf
            buf <- null

    interface IDisposable with
        member b.Dispose() = b.Dispose()

module LegacyWrite =
    let private finish (b: LegacyFlatBufferBuilder) : Result<ReadOnlyMemory<byte>, EncodeError> =
        match b.EndFrame() with
        | Ok frame -> Ok frame
        | Error n -> Error(FrameTooLarge n)

    let private orEmpty (s: string) = if isNull s then "" else s

    let private entry (b: LegacyFlatBufferBuilder, e: TextEntry) : int =
        let t = b.BeginTable Schema.TextEntry.Fields
        let name = b.AddOffset Schema.TextEntry.Name
        let value = if e.HasValue then b.AddOffset Schema.TextEntry.Value else 0
        b.EndTable()
        b.Patch(name, b.String(orEmpty e.Name))
        if e.HasValue then b.Patch(value, b.String e.Value)
        t

    /// Adds a [TextEntry] field when there are entries; returns the patch position (0 when left out).
    let private addEntries (b: LegacyFlatBufferBuilder, slot: int, entries: ReadOnlySpan<TextEntry>) =
        if entries.IsEmpty then 0 else b.AddOffset slot

    let private writeEntries (b: LegacyFlatBufferBuilder, at: int, entries: ReadOnlySpan<TextEntry>) =
        if at <> 0 then
            let v = b.OffsetVector entries.Length
            b.Patch(at, v)

            for i in 0 .. entries.Length - 1 do
                b.Patch(v + 4 + 4 * i, entry (b, entries[i]))

    let private addBytes (b: LegacyFlatBufferBuilder, slot: int, bytes: ReadOnlySpan<byte>) =
        if bytes.IsEmpty then 0 else b.AddOffset slot

    let private writeBytes (b: LegacyFlatBufferBuilder, at: int, bytes: ReadOnlySpan<byte>) =
        if at <> 0 then b.Patch(at, b.Bytes bytes)

    /// A string field that may be absent (null).
    let private addString (b: LegacyFlatBufferBuilder, slot: int, value: string) =
        if isNull value then 0 else b.AddOffset slot

    let private writeString (b: LegacyFlatBufferBuilder, at: int, value: string) =
        if at <> 0 then b.Patch(at, b.String value)

    /// PrepareConf.Req (APISIX's side): the plugins of a route, and its idempotency key (null: none).
    let prepareConfReq (b: LegacyFlatBufferBuilder, conf: ReadOnlySpan<TextEntry>, key: string) =
        b.BeginFrame FrameType.PrepareConf
        b.SetRoot(b.BeginTable Schema.PrepareConfReq.Fields)
        let c = addEntries (b, Schema.PrepareConfReq.Conf, conf)
        let k = addString (b, Schema.PrepareConfReq.Key, key)
        b.EndTable()
        writeEntries (b, c, conf)
        writeString (b, k, key)
        finish b

    let prepareConfResp (b: LegacyFlatBufferBuilder, token: uint32) =
        b.BeginFrame FrameType.PrepareConf
        b.SetRoot(b.BeginTable Schema.PrepareConfResp.Fields)
        b.AddU32(Schema.PrepareConfResp.ConfToken, token)
        b.EndTable()
        finish b

    /// HTTPReqCall.Req (APISIX's side).
    let httpReqCallReq
        (
            b: LegacyFlatBufferBuilder,
            id: uint32,
            srcIp: ReadOnlySpan<byte>,
            methd: Method,
            path: string,
            args: ReadOnlySpan<TextEntry>,
            headers: ReadOnlySpan<TextEntry>,
            token: uint32
        ) =
        b.BeginFrame FrameType.HttpReqCall
        b.SetRoot(b.BeginTable Schema.HttpReqCallReq.Fields)
        b.AddU32(Schema.HttpReqCallReq.Id, id)
        b.AddU32(Schema.HttpReqCallReq.ConfToken, token)
        let ip = addBytes (b, Schema.HttpReqCallReq.SrcIp, srcIp)
        let p = b.AddOffset Schema.HttpReqCallReq.Path
        let a = addEntries (b, Schema.HttpReqCallReq.Args, args)
        let h = addEntries (b, Schema.HttpReqCallReq.Headers, headers)
        b.AddU8(Schema.HttpReqCallReq.Method, byte methd)
        b.EndTable()
        writeBytes (b, ip, srcIp)
        b.Patch(p, b.String(orEmpty path))
        writeEntries (b, a, args)
        writeEntries (b, h, headers)
        finish b

    /// Starts an HTTPReqCall.Resp with an action of type `tag`; returns the patch position of the action.
    let private beginAction (b: LegacyFlatBufferBuilder, id: uint32, tag: byte) =
        b.BeginFrame FrameType.HttpReqCall
        b.SetRoot(b.BeginTable Schema.HttpReqCallResp.Fields)
        b.AddU32(Schema.HttpReqCallResp.Id, id)
        let at = if tag = Schema.Action.None then 0 else b.AddOffset Schema.HttpReqCallResp.Action
        if tag <> Schema.Action.None then b.AddU8(Schema.HttpReqCallResp.ActionType, tag)
        b.EndTable()
        at

    /// HTTPReqCall.Resp without an action: the request goes on unchanged.
    let httpReqCallContinue (b: LegacyFlatBufferBuilder, id: uint32) =
        beginAction (b, id, Schema.Action.None) |> ignore
        finish b

    /// HTTPReqCall.Resp with a Stop: APISIX answers the client itself.
    let httpReqCallStop (b: LegacyFlatBufferBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, body: ReadOnlySpan<byte>) =
        let at = beginAction (b, id, Schema.Action.Stop)
        b.Patch(at, b.BeginTable Schema.Stop.Fields)
        let h = addEntries (b, Schema.Stop.Headers, headers)
        let content = addBytes (b, Schema.Stop.Body, body)
        b.AddU16(Schema.Stop.Status, status)
        b.EndTable()
        writeEntries (b, h, headers)
        writeBytes (b, content, body)
        finish b

    /// HTTPReqCall.Resp with a Rewrite: the request goes on, changed. A null path leaves it as it is.
    let httpReqCallRewrite
        (
            b: LegacyFlatBufferBuilder,
            id: uint32,
            path: string,
            headers: ReadOnlySpan<TextEntry>,
            args: ReadOnlySpan<TextEntry>,
            respHeaders: ReadOnlySpan<TextEntry>,
            body: ReadOnlySpan<byte>
        ) =
        let at = beginAction (b, id, Schema.Action.Rewrite)
        b.Patch(at, b.BeginTable Schema.Rewrite.Fields)
        let p = addString (b, Schema.Rewrite.Path, path)
        let h = addEntries (b, Schema.Rewrite.Headers, headers)
        let a = addEntries (b, Schema.Rewrite.Args, args)
        let r = addEntries (b, Schema.Rewrite.RespHeaders, respHeaders)
        let content = addBytes (b, Schema.Rewrite.Body, body)
        b.EndTable()
        writeString (b, p, path)
        writeEntries (b, h, headers)
        writeEntries (b, a, args)
        writeEntries (b, r, respHeaders)
        writeBytes (b, content, body)
        finish b

    /// ExtraInfo.Req: `tag` is one of Schema.Info's; `varName` is the variable for Schema.Info.Var.
    let extraInfoReq (b: LegacyFlatBufferBuilder, tag: byte, varName: string) =
        b.BeginFrame FrameType.ExtraInfo
        b.SetRoot(b.BeginTable Schema.ExtraInfoReq.Fields)
        let at = b.AddOffset Schema.ExtraInfoReq.Info
        b.AddU8(Schema.ExtraInfoReq.InfoType, tag)
        b.EndTable()

        if tag = Schema.Info.Var then
            b.Patch(at, b.BeginTable Schema.ExtraInfoVar.Fields)
            let n = b.AddOffset Schema.ExtraInfoVar.Name
            b.EndTable()
            b.Patch(n, b.String(orEmpty varName))
        else
            b.Patch(at, b.BeginTable 0)
            b.EndTable()

        finish b

    /// ExtraInfo.Resp (APISIX's side); an absent result when `present` is false.
    let extraInfoResp (b: LegacyFlatBufferBuilder, present: bool, result: ReadOnlySpan<byte>) =
        b.BeginFrame FrameType.ExtraInfo
        b.SetRoot(b.BeginTable Schema.ExtraInfoResp.Fields)
        let at = if present then b.AddOffset Schema.ExtraInfoResp.Result else 0
        b.EndTable()
        if present then b.Patch(at, b.Bytes result)
        finish b

    /// HTTPRespCall.Req (APISIX's side).
    let httpRespCallReq (b: LegacyFlatBufferBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, token: uint32) =
        b.BeginFrame FrameType.HttpRespCall
        b.SetRoot(b.BeginTable Schema.HttpRespCallReq.Fields)
        b.AddU32(Schema.HttpRespCallReq.Id, id)
        b.AddU32(Schema.HttpRespCallReq.ConfToken, token)
        let h = addEntries (b, Schema.HttpRespCallReq.Headers, headers)
        b.AddU16(Schema.HttpRespCallReq.Status, status)
        b.EndTable()
        writeEntries (b, h, headers)
        finish b

    /// HTTPRespCall.Resp: status 0, no headers and an empty body keep the upstream's.
    let httpRespCallResp (b: LegacyFlatBufferBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, body: ReadOnlySpan<byte>) =
        b.BeginFrame FrameType.HttpRespCall
        b.SetRoot(b.BeginTable Schema.HttpRespCallResp.Fields)
        b.AddU32(Schema.HttpRespCallResp.Id, id)
        let h = addEntries (b, Schema.HttpRespCallResp.Headers, headers)
        let content = addBytes (b, Schema.HttpRespCallResp.Body, body)
        b.AddU16(Schema.HttpRespCallResp.Status, status)
        b.EndTable()
        writeEntries (b, h, headers)
        writeBytes (b, content, body)
        finish b

    let errResp (b: LegacyFlatBufferBuilder, code: Err.Code) =
        b.BeginFrame FrameType.RpcError
        b.SetRoot(b.BeginTable Schema.ErrResp.Fields)
        b.AddU8(Schema.ErrResp.Code, byte code)
        b.EndTable()
        finish b

/// The old Encode.httpReqCallResp over LegacyWrite.
module LegacyEncode =
    let httpReqCallResp (b: LegacyFlatBufferBuilder) (m: HttpReqCall.Resp) =
        match m.Action with
        | HttpReqCall.NoAction -> LegacyWrite.httpReqCallContinue (b, m.Id)
        | HttpReqCall.Stop s -> LegacyWrite.httpReqCallStop (b, m.Id, s.Status, ReadOnlySpan s.Headers, ReadOnlySpan s.Body)
        | HttpReqCall.Rewrite w ->
            LegacyWrite.httpReqCallRewrite (
                b,
                m.Id,
                w.Path,
                ReadOnlySpan w.Headers,
                ReadOnlySpan w.Args,
                ReadOnlySpan w.RespHeaders,
                ReadOnlySpan w.Body
            )
