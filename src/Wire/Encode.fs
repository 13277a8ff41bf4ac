namespace Apisix.Runner

open System

/// Why a message could not be encoded.
type EncodeError =
    /// The encoded body would exceed the 24-bit frame length limit. The length is exact up to
    /// 32 MiB of encoded data; beyond that the builder stops early and the length is a lower bound.
    | FrameTooLarge of bodyLength: int

    member e.Describe() =
        match e with
        | FrameTooLarge n -> $"encoded body of {n} bytes exceeds the frame limit of {Frame.MaxBodyLength}"

/// Writes every message of the schema as one whole frame (header included) into a reusable
/// builder, from spans and scalars, so that the hot path builds no records. The returned memory
/// belongs to the builder and is valid until its next frame; nothing is allocated once the
/// builder's array has grown to the frame's size. No input makes an encoder throw: a frame too
/// large for the 24-bit length is an error value.
/// Google's builder writes back to front, so each encoder writes the children (strings, vectors,
/// tables) before the table that points to them. What is absent stays absent: a null string and
/// an entry's null value are left out, so are empty entry lists and empty byte vectors (the
/// protocol reads them as "no change"), except where present-but-empty means something
/// (ExtraInfo.Resp's result). Scalars are always written, zero included.
module Write =
    let private finish (b: FrameBuilder, frameType: FrameType, root: int) : Result<ReadOnlyMemory<byte>, EncodeError> =
        match b.Finish(frameType, root) with
        | Ok frame -> Ok frame
        | Error n -> Error(FrameTooLarge n)

    let private tooLarge (atLeast: int) : Result<ReadOnlyMemory<byte>, EncodeError> = Error(FrameTooLarge atLeast)

    let private orEmpty (s: string) = if isNull s then "" else s

    /// A string that may be absent: 0 (left out) when null.
    let private optString (b: FrameBuilder, value: string) = if isNull value then 0 else b.String value

    /// A [ubyte] field: 0 (left out) when empty.
    let private optBytes (b: FrameBuilder, value: ReadOnlySpan<byte>) = if value.IsEmpty then 0 else b.Bytes value

    /// A [TextEntry] field: 0 (left out) when there are no entries. A null name is written as "".
    let private entries (b: FrameBuilder, items: ReadOnlySpan<TextEntry>) : int =
        if items.IsEmpty then
            0
        else
            let offsets = b.Elements items.Length

            for i in 0 .. items.Length - 1 do
                let e = items[i]
                let name = b.String(orEmpty e.Name)
                let value = optString (b, e.Value)
                b.StartTable Schema.TextEntry.Fields
                b.Offset(Schema.TextEntry.Name, name)
                b.Offset(Schema.TextEntry.Value, value)
                offsets[i] <- b.EndTable()

            b.Vector items.Length

    /// PrepareConf.Req (APISIX's side): the plugins of a route, and its idempotency key (null: none).
    let prepareConfReq (b: FrameBuilder, conf: ReadOnlySpan<TextEntry>, key: string) =
        try
            b.Begin()
            let c = entries (b, conf)
            let k = optString (b, key)
            b.StartTable Schema.PrepareConfReq.Fields
            b.Offset(Schema.PrepareConfReq.Conf, c)
            b.Offset(Schema.PrepareConfReq.Key, k)
            finish (b, FrameType.PrepareConf, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    let prepareConfResp (b: FrameBuilder, token: uint32) =
        try
            b.Begin()
            b.StartTable Schema.PrepareConfResp.Fields
            b.U32(Schema.PrepareConfResp.ConfToken, token)
            finish (b, FrameType.PrepareConf, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    /// HTTPReqCall.Req (APISIX's side). A null path is written as "".
    let httpReqCallReq
        (
            b: FrameBuilder,
            id: uint32,
            srcIp: ReadOnlySpan<byte>,
            methd: Method,
            path: string,
            args: ReadOnlySpan<TextEntry>,
            headers: ReadOnlySpan<TextEntry>,
            token: uint32
        ) =
        try
            b.Begin()
            let ip = optBytes (b, srcIp)
            let p = b.String(orEmpty path)
            let a = entries (b, args)
            let h = entries (b, headers)
            b.StartTable Schema.HttpReqCallReq.Fields
            b.U32(Schema.HttpReqCallReq.Id, id)
            b.U32(Schema.HttpReqCallReq.ConfToken, token)
            b.Offset(Schema.HttpReqCallReq.SrcIp, ip)
            b.Offset(Schema.HttpReqCallReq.Path, p)
            b.Offset(Schema.HttpReqCallReq.Args, a)
            b.Offset(Schema.HttpReqCallReq.Headers, h)
            b.U8(Schema.HttpReqCallReq.Method, byte methd)
            finish (b, FrameType.HttpReqCall, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    /// Finishes an HTTPReqCall.Resp whose action table (of type `tag`) is written; no action for Schema.Action.None.
    let private httpReqCallResp (b: FrameBuilder, id: uint32, tag: byte, action: int) =
        b.StartTable Schema.HttpReqCallResp.Fields
        b.U32(Schema.HttpReqCallResp.Id, id)

        if tag <> Schema.Action.None then
            b.Offset(Schema.HttpReqCallResp.Action, action)
            b.U8(Schema.HttpReqCallResp.ActionType, tag)

        finish (b, FrameType.HttpReqCall, b.EndTable())

    /// HTTPReqCall.Resp without an action: the request goes on unchanged.
    let httpReqCallContinue (b: FrameBuilder, id: uint32) =
        try
            b.Begin()
            httpReqCallResp (b, id, Schema.Action.None, 0)
        with FrameOverflow n ->
            tooLarge n

    /// HTTPReqCall.Resp with a Stop: APISIX answers the client itself. The status is written even when 0.
    let httpReqCallStop (b: FrameBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, body: ReadOnlySpan<byte>) =
        try
            b.Begin()
            let h = entries (b, headers)
            let content = optBytes (b, body)
            b.StartTable Schema.Stop.Fields
            b.Offset(Schema.Stop.Headers, h)
            b.Offset(Schema.Stop.Body, content)
            b.U16(Schema.Stop.Status, status)
            httpReqCallResp (b, id, Schema.Action.Stop, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    /// HTTPReqCall.Resp with a Rewrite: the request goes on, changed. A null path leaves it as it is.
    let httpReqCallRewrite
        (
            b: FrameBuilder,
            id: uint32,
            path: string,
            headers: ReadOnlySpan<TextEntry>,
            args: ReadOnlySpan<TextEntry>,
            respHeaders: ReadOnlySpan<TextEntry>,
            body: ReadOnlySpan<byte>
        ) =
        try
            b.Begin()
            let p = optString (b, path)
            let h = entries (b, headers)
            let a = entries (b, args)
            let r = entries (b, respHeaders)
            let content = optBytes (b, body)
            b.StartTable Schema.Rewrite.Fields
            b.Offset(Schema.Rewrite.Path, p)
            b.Offset(Schema.Rewrite.Headers, h)
            b.Offset(Schema.Rewrite.Args, a)
            b.Offset(Schema.Rewrite.RespHeaders, r)
            b.Offset(Schema.Rewrite.Body, content)
            httpReqCallResp (b, id, Schema.Action.Rewrite, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    /// ExtraInfo.Req: `tag` is one of Schema.Info's; `varName` is the variable for Schema.Info.Var
    /// (null is written as ""). The bodies are asked for with an empty table.
    let extraInfoReq (b: FrameBuilder, tag: byte, varName: string) =
        try
            b.Begin()

            let info =
                if tag = Schema.Info.Var then
                    let name = b.String(orEmpty varName)
                    b.StartTable Schema.ExtraInfoVar.Fields
                    b.Offset(Schema.ExtraInfoVar.Name, name)
                    b.EndTable()
                else
                    b.StartTable Schema.ExtraInfoBody.Fields
                    b.EndTable()

            b.StartTable Schema.ExtraInfoReq.Fields
            b.Offset(Schema.ExtraInfoReq.Info, info)
            b.U8(Schema.ExtraInfoReq.InfoType, tag)
            finish (b, FrameType.ExtraInfo, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    /// ExtraInfo.Resp (APISIX's side): an absent result when `present` is false; present and
    /// empty when `result` is empty.
    let extraInfoResp (b: FrameBuilder, present: bool, result: ReadOnlySpan<byte>) =
        try
            b.Begin()
            let r = if present then b.Bytes result else 0
            b.StartTable Schema.ExtraInfoResp.Fields
            b.Offset(Schema.ExtraInfoResp.Result, r)
            finish (b, FrameType.ExtraInfo, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    /// HTTPRespCall.Req (APISIX's side).
    let httpRespCallReq (b: FrameBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, token: uint32) =
        try
            b.Begin()
            let h = entries (b, headers)
            b.StartTable Schema.HttpRespCallReq.Fields
            b.U32(Schema.HttpRespCallReq.Id, id)
            b.U32(Schema.HttpRespCallReq.ConfToken, token)
            b.Offset(Schema.HttpRespCallReq.Headers, h)
            b.U16(Schema.HttpRespCallReq.Status, status)
            finish (b, FrameType.HttpRespCall, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    /// HTTPRespCall.Resp: status 0, no headers and an empty body keep the upstream's.
    let httpRespCallResp (b: FrameBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, body: ReadOnlySpan<byte>) =
        try
            b.Begin()
            let h = entries (b, headers)
            let content = optBytes (b, body)
            b.StartTable Schema.HttpRespCallResp.Fields
            b.U32(Schema.HttpRespCallResp.Id, id)
            b.Offset(Schema.HttpRespCallResp.Headers, h)
            b.Offset(Schema.HttpRespCallResp.Body, content)
            b.U16(Schema.HttpRespCallResp.Status, status)
            finish (b, FrameType.HttpRespCall, b.EndTable())
        with FrameOverflow n ->
            tooLarge n

    let errResp (b: FrameBuilder, code: Err.Code) =
        try
            b.Begin()
            b.StartTable Schema.ErrResp.Fields
            b.U8(Schema.ErrResp.Code, byte code)
            finish (b, FrameType.RpcError, b.EndTable())
        with FrameOverflow n ->
            tooLarge n
