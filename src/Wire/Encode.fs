namespace Apisix.Runner

open System

/// Why a message could not be encoded.
type EncodeError =
    /// The encoded body would exceed the 24-bit frame length limit.
    | FrameTooLarge of bodyLength: int

    member e.Describe() =
        match e with
        | FrameTooLarge n -> $"encoded body of {n} bytes exceeds the frame limit of {Frame.MaxBodyLength}"

/// Writes every message of the schema as one whole frame (header included) into a reusable
/// builder, from spans and scalars, so that the hot path builds no records. The returned memory
/// belongs to the builder and is valid until its next frame; nothing is allocated once the
/// builder's buffer has grown to the frame's size. An entry's null value is written as absent.
module Write =
    let private finish (b: FlatBufferBuilder) : Result<ReadOnlyMemory<byte>, EncodeError> =
        match b.EndFrame() with
        | Ok frame -> Ok frame
        | Error n -> Error(FrameTooLarge n)

    let private orEmpty (s: string) = if isNull s then "" else s

    let private entry (b: FlatBufferBuilder, e: TextEntry) : int =
        let t = b.BeginTable Schema.TextEntry.Fields
        let name = b.AddOffset Schema.TextEntry.Name
        let value = if e.HasValue then b.AddOffset Schema.TextEntry.Value else 0
        b.EndTable()
        b.Patch(name, b.String(orEmpty e.Name))
        if e.HasValue then b.Patch(value, b.String e.Value)
        t

    /// Adds a [TextEntry] field when there are entries; returns the patch position (0 when left out).
    let private addEntries (b: FlatBufferBuilder, slot: int, entries: ReadOnlySpan<TextEntry>) =
        if entries.IsEmpty then 0 else b.AddOffset slot

    let private writeEntries (b: FlatBufferBuilder, at: int, entries: ReadOnlySpan<TextEntry>) =
        if at <> 0 then
            let v = b.OffsetVector entries.Length
            b.Patch(at, v)

            for i in 0 .. entries.Length - 1 do
                b.Patch(v + 4 + 4 * i, entry (b, entries[i]))

    let private addBytes (b: FlatBufferBuilder, slot: int, bytes: ReadOnlySpan<byte>) =
        if bytes.IsEmpty then 0 else b.AddOffset slot

    let private writeBytes (b: FlatBufferBuilder, at: int, bytes: ReadOnlySpan<byte>) =
        if at <> 0 then b.Patch(at, b.Bytes bytes)

    /// A string field that may be absent (null).
    let private addString (b: FlatBufferBuilder, slot: int, value: string) =
        if isNull value then 0 else b.AddOffset slot

    let private writeString (b: FlatBufferBuilder, at: int, value: string) =
        if at <> 0 then b.Patch(at, b.String value)

    /// PrepareConf.Req (APISIX's side): the plugins of a route, and its idempotency key (null: none).
    let prepareConfReq (b: FlatBufferBuilder, conf: ReadOnlySpan<TextEntry>, key: string) =
        b.BeginFrame FrameType.PrepareConf
        b.SetRoot(b.BeginTable Schema.PrepareConfReq.Fields)
        let c = addEntries (b, Schema.PrepareConfReq.Conf, conf)
        let k = addString (b, Schema.PrepareConfReq.Key, key)
        b.EndTable()
        writeEntries (b, c, conf)
        writeString (b, k, key)
        finish b

    let prepareConfResp (b: FlatBufferBuilder, token: uint32) =
        b.BeginFrame FrameType.PrepareConf
        b.SetRoot(b.BeginTable Schema.PrepareConfResp.Fields)
        b.AddU32(Schema.PrepareConfResp.ConfToken, token)
        b.EndTable()
        finish b

    /// HTTPReqCall.Req (APISIX's side).
    let httpReqCallReq
        (
            b: FlatBufferBuilder,
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
    let private beginAction (b: FlatBufferBuilder, id: uint32, tag: byte) =
        b.BeginFrame FrameType.HttpReqCall
        b.SetRoot(b.BeginTable Schema.HttpReqCallResp.Fields)
        b.AddU32(Schema.HttpReqCallResp.Id, id)
        let at = if tag = Schema.Action.None then 0 else b.AddOffset Schema.HttpReqCallResp.Action
        if tag <> Schema.Action.None then b.AddU8(Schema.HttpReqCallResp.ActionType, tag)
        b.EndTable()
        at

    /// HTTPReqCall.Resp without an action: the request goes on unchanged.
    let httpReqCallContinue (b: FlatBufferBuilder, id: uint32) =
        beginAction (b, id, Schema.Action.None) |> ignore
        finish b

    /// HTTPReqCall.Resp with a Stop: APISIX answers the client itself.
    let httpReqCallStop (b: FlatBufferBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, body: ReadOnlySpan<byte>) =
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
            b: FlatBufferBuilder,
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
    let extraInfoReq (b: FlatBufferBuilder, tag: byte, varName: string) =
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
    let extraInfoResp (b: FlatBufferBuilder, present: bool, result: ReadOnlySpan<byte>) =
        b.BeginFrame FrameType.ExtraInfo
        b.SetRoot(b.BeginTable Schema.ExtraInfoResp.Fields)
        let at = if present then b.AddOffset Schema.ExtraInfoResp.Result else 0
        b.EndTable()
        if present then b.Patch(at, b.Bytes result)
        finish b

    /// HTTPRespCall.Req (APISIX's side).
    let httpRespCallReq (b: FlatBufferBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, token: uint32) =
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
    let httpRespCallResp (b: FlatBufferBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, body: ReadOnlySpan<byte>) =
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

    let errResp (b: FlatBufferBuilder, code: Err.Code) =
        b.BeginFrame FrameType.RpcError
        b.SetRoot(b.BeginTable Schema.ErrResp.Fields)
        b.AddU8(Schema.ErrResp.Code, byte code)
        b.EndTable()
        finish b
