namespace Apisix.Runner

open System
open System.Text

/// HTTP method of a request (A6.Method). Values outside the schema are kept as they came.
type Method =
    | GET = 0uy
    | HEAD = 1uy
    | POST = 2uy
    | PUT = 3uy
    | DELETE = 4uy
    | MKCOL = 5uy
    | COPY = 6uy
    | MOVE = 7uy
    | OPTIONS = 8uy
    | PROPFIND = 9uy
    | PROPPATCH = 10uy
    | LOCK = 11uy
    | UNLOCK = 12uy
    | PATCH = 13uy
    | TRACE = 14uy

/// A name with an optional value (A6.TextEntry). A missing value is meaningful: in a rewrite it
/// deletes the header or argument, in a request it is an argument given without `=`.
[<Struct>]
type TextEntry =
    { Name: string
      Value: string voption }

    static member Set(name, value: string) = { Name = name; Value = ValueSome value }
    static member Delete name = { Name = name; Value = ValueNone }

/// A6.Err: the answer to a frame the runner cannot serve.
module Err =
    type Code =
        | BAD_REQUEST = 0uy
        | SERVICE_UNAVAILABLE = 1uy
        | CONF_TOKEN_NOT_FOUND = 2uy

/// A6.PrepareConf: APISIX hands over a route's plugin configuration and gets a token for it.
module PrepareConf =
    type Req =
        {
            /// Plugin name and its JSON configuration, in execution order.
            Conf: TextEntry[]
            /// Idempotency key of this route's configuration.
            Key: string voption
        }

    type Resp = { ConfToken: uint32 }

/// A6.HTTPReqCall: a request to filter, and what to do with it.
module HttpReqCall =
    type Req =
        { Id: uint32
          /// 4 bytes of IPv4 or 16 of IPv6.
          SrcIp: byte[]
          Method: Method
          /// The upstream path, without the query string.
          Path: string
          Args: TextEntry[]
          Headers: TextEntry[]
          ConfToken: uint32 }

    /// Answer the client at once without the upstream.
    type Stop =
        { Status: uint16
          Headers: TextEntry[]
          /// Empty means no body.
          Body: byte[] }

    /// Let the request go on, changed. Empty arrays change nothing.
    type Rewrite =
        { Path: string voption
          Headers: TextEntry[]
          Args: TextEntry[]
          RespHeaders: TextEntry[]
          /// Empty leaves the body as it is.
          Body: byte[] }

    type Action =
        | NoAction
        | Stop of Stop
        | Rewrite of Rewrite

    type Resp = { Id: uint32; Action: Action }

/// A6.ExtraInfo: what the runner may ask APISIX for while it handles a call.
module ExtraInfo =
    type Info =
        /// An nginx variable, such as `remote_addr`.
        | Var of name: string
        | ReqBody
        | RespBody

    type Resp =
        {
            /// Absent when the variable is unset or there is no body.
            Result: byte[] voption
        }

/// A6.HTTPRespCall: the upstream's answer to filter (ext-plugin-post-resp).
module HttpRespCall =
    type Req =
        { Id: uint32
          Status: uint16
          Headers: TextEntry[]
          ConfToken: uint32 }

    type Resp =
        { Id: uint32
          /// 0 keeps the upstream status.
          Status: uint16
          /// Empty keeps the upstream headers.
          Headers: TextEntry[]
          /// Empty keeps the upstream body.
          Body: byte[] }

/// A message APISIX sends to the runner.
type ApisixMessage =
    | PrepareConfReq of PrepareConf.Req
    | HttpReqCallReq of HttpReqCall.Req
    | ExtraInfoResp of ExtraInfo.Resp
    | HttpRespCallReq of HttpRespCall.Req

/// A message the runner sends to APISIX.
type RunnerMessage =
    | PrepareConfResp of PrepareConf.Resp
    | HttpReqCallResp of HttpReqCall.Resp
    | ExtraInfoReq of ExtraInfo.Info
    | HttpRespCallResp of HttpRespCall.Resp
    | ErrResp of Err.Code

/// Why a message could not be encoded.
type EncodeError =
    /// The encoded body would exceed the 24-bit frame length limit.
    | FrameTooLarge of bodyLength: int

    member e.Describe() =
        match e with
        | FrameTooLarge n -> $"encoded body of {n} bytes exceeds the frame limit of {Frame.MaxBodyLength}"

/// Slot numbers and union tags of the schema (PROTOCOL.md, Schema).
module internal Slots =
    let ActionStop = 1uy
    let ActionRewrite = 2uy
    let InfoVar = 1uy
    let InfoReqBody = 2uy
    let InfoRespBody = 3uy

/// Reads the schema's shapes out of a FlatBufferReader; helpers shared by the decoders and views.
module internal Read =
    let text (r: byref<FlatBufferReader>, s: ByteRange) =
        if s.IsPresent then
            Encoding.UTF8.GetString(r.Buffer.Slice(s.Start, s.Length))
        else
            ""

    let optText (r: byref<FlatBufferReader>, s: ByteRange) =
        if s.IsPresent then
            ValueSome(Encoding.UTF8.GetString(r.Buffer.Slice(s.Start, s.Length)))
        else
            ValueNone

    let bytes (r: byref<FlatBufferReader>, s: ByteRange) =
        if s.IsPresent then r.Buffer.Slice(s.Start, s.Length).ToArray() else [||]

    /// Checks every entry of a [TextEntry] vector; the name and value ranges of entry i.
    let entry (r: byref<FlatBufferReader>, v: ByteRange, i: int, what: string) =
        let t = r.TableAt(v, i, what)
        struct (r.String(t, 0, what), r.String(t, 1, what))

    /// The name and value ranges of an entry already validated: no second UTF-8 check.
    let validatedEntry (r: byref<FlatBufferReader>, v: ByteRange, i: int) =
        let t = r.TableAt(v, i, "entry")
        struct (r.Bytes(t, 0, "entry"), r.Bytes(t, 1, "entry"))

    let entries (r: byref<FlatBufferReader>, t: Table, slot: int, what: string) : TextEntry[] =
        let v = r.Tables(t, slot, what)

        if v.Length = 0 then
            [||]
        else
            let out = Array.zeroCreate v.Length
            let mutable i = 0

            while i < v.Length && r.Failure.IsNone do
                let struct (n, value) = entry (&r, v, i, what)
                out[i] <- { Name = text (&r, n); Value = optText (&r, value) }
                i <- i + 1

            out

    let finish (r: byref<FlatBufferReader>, value: 'T) : Result<'T, DecodeError> =
        match r.Failure with
        | ValueNone -> Ok value
        | ValueSome e -> Error e

/// Decoding of every message body, both directions. Each answers a DecodeError for any malformed
/// buffer and never throws; strings are checked to be UTF-8.
module Decode =
    let prepareConfReq (body: ReadOnlySpan<byte>) : Result<PrepareConf.Req, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "PrepareConf.Req"
        let conf = Read.entries (&r, t, 0, "PrepareConf.Req.conf")
        let key = Read.optText (&r, r.String(t, 1, "PrepareConf.Req.key"))
        Read.finish (&r, { PrepareConf.Req.Conf = conf; Key = key })

    let prepareConfResp (body: ReadOnlySpan<byte>) : Result<PrepareConf.Resp, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "PrepareConf.Resp"
        Read.finish (&r, { PrepareConf.Resp.ConfToken = r.U32(t, 0, 0u) })

    let httpReqCallReq (body: ReadOnlySpan<byte>) : Result<HttpReqCall.Req, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "HTTPReqCall.Req"
        let id = r.U32(t, 0, 0u)
        let srcIp = Read.bytes (&r, r.Bytes(t, 1, "HTTPReqCall.Req.src_ip"))
        let methd: Method = LanguagePrimitives.EnumOfValue(r.U8(t, 2, 0uy))
        let path = Read.text (&r, r.String(t, 3, "HTTPReqCall.Req.path"))
        let args = Read.entries (&r, t, 4, "HTTPReqCall.Req.args")
        let headers = Read.entries (&r, t, 5, "HTTPReqCall.Req.headers")
        let token = r.U32(t, 6, 0u)

        Read.finish (
            &r,
            { HttpReqCall.Req.Id = id
              SrcIp = srcIp
              Method = methd
              Path = path
              Args = args
              Headers = headers
              ConfToken = token }
        )

    let httpReqCallResp (body: ReadOnlySpan<byte>) : Result<HttpReqCall.Resp, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "HTTPReqCall.Resp"
        let id = r.U32(t, 0, 0u)
        let tag = r.U8(t, 1, 0uy)
        let a = r.TableField(t, 2, "HTTPReqCall.Resp.action")

        let action =
            if r.Failure.IsSome then
                HttpReqCall.NoAction
            elif tag = 0uy then
                HttpReqCall.NoAction
            elif a.VTableSize = 0 then
                r.Fail(MissingUnionValue "HTTPReqCall.Resp.action")
                HttpReqCall.NoAction
            elif tag = Slots.ActionStop then
                HttpReqCall.Stop
                    { Status = r.U16(a, 0, 0us)
                      Headers = Read.entries (&r, a, 1, "Stop.headers")
                      Body = Read.bytes (&r, r.Bytes(a, 2, "Stop.body")) }
            elif tag = Slots.ActionRewrite then
                HttpReqCall.Rewrite
                    { Path = Read.optText (&r, r.String(a, 0, "Rewrite.path"))
                      Headers = Read.entries (&r, a, 1, "Rewrite.headers")
                      Args = Read.entries (&r, a, 2, "Rewrite.args")
                      RespHeaders = Read.entries (&r, a, 3, "Rewrite.resp_headers")
                      Body = Read.bytes (&r, r.Bytes(a, 4, "Rewrite.body")) }
            else
                r.Fail(UnknownUnionTag("HTTPReqCall.Resp.action", tag))
                HttpReqCall.NoAction

        Read.finish (&r, { HttpReqCall.Resp.Id = id; Action = action })

    let extraInfoReq (body: ReadOnlySpan<byte>) : Result<ExtraInfo.Info, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "ExtraInfo.Req"
        let tag = r.U8(t, 0, 0uy)
        let i = r.TableField(t, 1, "ExtraInfo.Req.info")

        let info =
            if r.Failure.IsSome then
                ExtraInfo.ReqBody
            elif tag = 0uy || i.VTableSize = 0 then
                r.Fail(MissingUnionValue "ExtraInfo.Req.info")
                ExtraInfo.ReqBody
            elif tag = Slots.InfoVar then
                ExtraInfo.Var(Read.text (&r, r.String(i, 0, "ExtraInfo.Var.name")))
            elif tag = Slots.InfoReqBody then
                ExtraInfo.ReqBody
            elif tag = Slots.InfoRespBody then
                ExtraInfo.RespBody
            else
                r.Fail(UnknownUnionTag("ExtraInfo.Req.info", tag))
                ExtraInfo.ReqBody

        Read.finish (&r, info)

    let extraInfoResp (body: ReadOnlySpan<byte>) : Result<ExtraInfo.Resp, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "ExtraInfo.Resp"
        let result = r.Bytes(t, 0, "ExtraInfo.Resp.result")

        let value =
            if result.IsPresent then
                ValueSome(r.Buffer.Slice(result.Start, result.Length).ToArray())
            else
                ValueNone

        Read.finish (&r, { ExtraInfo.Resp.Result = value })

    let httpRespCallReq (body: ReadOnlySpan<byte>) : Result<HttpRespCall.Req, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "HTTPRespCall.Req"
        let id = r.U32(t, 0, 0u)
        let status = r.U16(t, 1, 0us)
        let headers = Read.entries (&r, t, 2, "HTTPRespCall.Req.headers")
        let token = r.U32(t, 3, 0u)

        Read.finish (
            &r,
            { HttpRespCall.Req.Id = id
              Status = status
              Headers = headers
              ConfToken = token }
        )

    let httpRespCallResp (body: ReadOnlySpan<byte>) : Result<HttpRespCall.Resp, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "HTTPRespCall.Resp"
        let id = r.U32(t, 0, 0u)
        let status = r.U16(t, 1, 0us)
        let headers = Read.entries (&r, t, 2, "HTTPRespCall.Resp.headers")
        let body = Read.bytes (&r, r.Bytes(t, 3, "HTTPRespCall.Resp.body"))

        Read.finish (
            &r,
            { HttpRespCall.Resp.Id = id
              Status = status
              Headers = headers
              Body = body }
        )

    let errResp (body: ReadOnlySpan<byte>) : Result<Err.Code, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "Err.Resp"
        Read.finish (&r, (LanguagePrimitives.EnumOfValue(r.U8(t, 0, 0uy)): Err.Code))

    /// A frame sent by APISIX, as the runner reads it.
    let apisixMessage (frameType: FrameType) (body: ReadOnlySpan<byte>) : Result<ApisixMessage, DecodeError> =
        match frameType with
        | FrameType.PrepareConf -> prepareConfReq body |> Result.map PrepareConfReq
        | FrameType.HttpReqCall -> httpReqCallReq body |> Result.map HttpReqCallReq
        | FrameType.ExtraInfo -> extraInfoResp body |> Result.map ExtraInfoResp
        | FrameType.HttpRespCall -> httpRespCallReq body |> Result.map HttpRespCallReq
        | other -> Error(UnexpectedFrameType(byte other))

    /// A frame sent by the runner, as APISIX reads it.
    let runnerMessage (frameType: FrameType) (body: ReadOnlySpan<byte>) : Result<RunnerMessage, DecodeError> =
        match frameType with
        | FrameType.RpcError -> errResp body |> Result.map ErrResp
        | FrameType.PrepareConf -> prepareConfResp body |> Result.map PrepareConfResp
        | FrameType.HttpReqCall -> httpReqCallResp body |> Result.map HttpReqCallResp
        | FrameType.ExtraInfo -> extraInfoReq body |> Result.map ExtraInfoReq
        | FrameType.HttpRespCall -> httpRespCallResp body |> Result.map HttpRespCallResp
        | other -> Error(UnexpectedFrameType(byte other))

/// Encoding of every message as one whole frame (header included) into a reusable builder.
/// The returned memory belongs to the builder and is valid until its next frame. Encoding
/// allocates nothing once the builder's buffer has grown to the frame's size.
module Encode =
    let private finish (b: FlatBufferBuilder) : Result<ReadOnlyMemory<byte>, EncodeError> =
        match b.EndFrame() with
        | Ok frame -> Ok frame
        | Error n -> Error(FrameTooLarge n)

    let private entry (b: FlatBufferBuilder, e: TextEntry) : int =
        let t = b.BeginTable 2
        let name = b.AddOffset 0
        let value = if e.Value.IsSome then b.AddOffset 1 else 0
        b.EndTable()
        b.Patch(name, b.String(if isNull e.Name then "" else e.Name))

        match e.Value with
        | ValueSome v -> b.Patch(value, b.String(if isNull v then "" else v))
        | ValueNone -> ()

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
        if at <> 0 then
            b.Patch(at, b.Bytes bytes)

    let private writeString (b: FlatBufferBuilder, at: int, value: string voption) =
        match value with
        | ValueSome v -> b.Patch(at, b.String(if isNull v then "" else v))
        | ValueNone -> ()

    let inline private span (entries: TextEntry[]) = ReadOnlySpan entries
    let inline private bytes (value: byte[]) = ReadOnlySpan value

    let prepareConfReq (b: FlatBufferBuilder) (m: PrepareConf.Req) =
        b.BeginFrame FrameType.PrepareConf
        let t = b.BeginTable 2
        let conf = addEntries (b, 0, span m.Conf)
        let key = if m.Key.IsSome then b.AddOffset 1 else 0
        b.EndTable()
        b.SetRoot t
        writeEntries (b, conf, span m.Conf)
        writeString (b, key, m.Key)
        finish b

    let prepareConfResp (b: FlatBufferBuilder) (m: PrepareConf.Resp) =
        b.BeginFrame FrameType.PrepareConf
        b.SetRoot(b.BeginTable 1)
        b.AddU32(0, m.ConfToken)
        b.EndTable()
        finish b

    let httpReqCallReq (b: FlatBufferBuilder) (m: HttpReqCall.Req) =
        b.BeginFrame FrameType.HttpReqCall
        b.SetRoot(b.BeginTable 7)
        b.AddU32(0, m.Id)
        b.AddU32(6, m.ConfToken)
        let srcIp = addBytes (b, 1, bytes m.SrcIp)
        let path = b.AddOffset 3
        let args = addEntries (b, 4, span m.Args)
        let headers = addEntries (b, 5, span m.Headers)
        b.AddU8(2, byte m.Method)
        b.EndTable()
        writeBytes (b, srcIp, bytes m.SrcIp)
        writeString (b, path, ValueSome m.Path)
        writeEntries (b, args, span m.Args)
        writeEntries (b, headers, span m.Headers)
        finish b

    /// HTTPReqCall.Resp without an action: the request goes on unchanged.
    let httpReqCallContinue (b: FlatBufferBuilder, id: uint32) =
        b.BeginFrame FrameType.HttpReqCall
        b.SetRoot(b.BeginTable 3)
        b.AddU32(0, id)
        b.EndTable()
        finish b

    /// HTTPReqCall.Resp with a Stop action, from spans so that callers need not build records.
    let httpReqCallStop
        (b: FlatBufferBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, body: ReadOnlySpan<byte>)
        =
        b.BeginFrame FrameType.HttpReqCall
        b.SetRoot(b.BeginTable 3)
        b.AddU32(0, id)
        let at = b.AddOffset 2
        b.AddU8(1, Slots.ActionStop)
        b.EndTable()
        b.Patch(at, b.BeginTable 3)
        let h = addEntries (b, 1, headers)
        let content = addBytes (b, 2, body)
        b.AddU16(0, status)
        b.EndTable()
        writeEntries (b, h, headers)
        writeBytes (b, content, body)
        finish b

    /// HTTPReqCall.Resp with a Rewrite action, from spans so that callers need not build records.
    let httpReqCallRewrite
        (
            b: FlatBufferBuilder,
            id: uint32,
            path: string voption,
            headers: ReadOnlySpan<TextEntry>,
            args: ReadOnlySpan<TextEntry>,
            respHeaders: ReadOnlySpan<TextEntry>,
            body: ReadOnlySpan<byte>
        ) =
        b.BeginFrame FrameType.HttpReqCall
        b.SetRoot(b.BeginTable 3)
        b.AddU32(0, id)
        let at = b.AddOffset 2
        b.AddU8(1, Slots.ActionRewrite)
        b.EndTable()
        b.Patch(at, b.BeginTable 5)
        let p = if path.IsSome then b.AddOffset 0 else 0
        let h = addEntries (b, 1, headers)
        let a = addEntries (b, 2, args)
        let r = addEntries (b, 3, respHeaders)
        let content = addBytes (b, 4, body)
        b.EndTable()
        writeString (b, p, path)
        writeEntries (b, h, headers)
        writeEntries (b, a, args)
        writeEntries (b, r, respHeaders)
        writeBytes (b, content, body)
        finish b

    let httpReqCallResp (b: FlatBufferBuilder) (m: HttpReqCall.Resp) =
        match m.Action with
        | HttpReqCall.NoAction -> httpReqCallContinue (b, m.Id)
        | HttpReqCall.Stop s -> httpReqCallStop (b, m.Id, s.Status, span s.Headers, bytes s.Body)
        | HttpReqCall.Rewrite w ->
            httpReqCallRewrite (b, m.Id, w.Path, span w.Headers, span w.Args, span w.RespHeaders, bytes w.Body)

    let extraInfoReq (b: FlatBufferBuilder) (info: ExtraInfo.Info) =
        b.BeginFrame FrameType.ExtraInfo
        b.SetRoot(b.BeginTable 2)
        let at = b.AddOffset 1

        let tag =
            match info with
            | ExtraInfo.Var _ -> Slots.InfoVar
            | ExtraInfo.ReqBody -> Slots.InfoReqBody
            | ExtraInfo.RespBody -> Slots.InfoRespBody

        b.AddU8(0, tag)
        b.EndTable()

        match info with
        | ExtraInfo.Var name ->
            let v = b.BeginTable 1
            let n = b.AddOffset 0
            b.EndTable()
            b.Patch(at, v)
            b.Patch(n, b.String(if isNull name then "" else name))
        | ExtraInfo.ReqBody
        | ExtraInfo.RespBody ->
            b.Patch(at, b.BeginTable 0)
            b.EndTable()

        finish b

    let extraInfoResp (b: FlatBufferBuilder) (m: ExtraInfo.Resp) =
        b.BeginFrame FrameType.ExtraInfo
        b.SetRoot(b.BeginTable 1)

        match m.Result with
        | ValueSome bytes ->
            let at = b.AddOffset 0
            b.EndTable()
            b.Patch(at, b.Bytes(ReadOnlySpan bytes))
        | ValueNone -> b.EndTable()

        finish b

    let httpRespCallReq (b: FlatBufferBuilder) (m: HttpRespCall.Req) =
        b.BeginFrame FrameType.HttpRespCall
        b.SetRoot(b.BeginTable 4)
        b.AddU32(0, m.Id)
        b.AddU32(3, m.ConfToken)
        let headers = addEntries (b, 2, span m.Headers)
        b.AddU16(1, m.Status)
        b.EndTable()
        writeEntries (b, headers, span m.Headers)
        finish b

    /// HTTPRespCall.Resp from spans, so that callers need not build records.
    let httpRespCallAnswer
        (b: FlatBufferBuilder, id: uint32, status: uint16, headers: ReadOnlySpan<TextEntry>, body: ReadOnlySpan<byte>)
        =
        b.BeginFrame FrameType.HttpRespCall
        b.SetRoot(b.BeginTable 4)
        b.AddU32(0, id)
        let h = addEntries (b, 2, headers)
        let content = addBytes (b, 3, body)
        b.AddU16(1, status)
        b.EndTable()
        writeEntries (b, h, headers)
        writeBytes (b, content, body)
        finish b

    let httpRespCallResp (b: FlatBufferBuilder) (m: HttpRespCall.Resp) =
        httpRespCallAnswer (b, m.Id, m.Status, span m.Headers, bytes m.Body)

    let errResp (b: FlatBufferBuilder) (code: Err.Code) =
        b.BeginFrame FrameType.RpcError
        b.SetRoot(b.BeginTable 1)
        b.AddU8(0, byte code)
        b.EndTable()
        finish b

    let apisixMessage (b: FlatBufferBuilder) (m: ApisixMessage) =
        match m with
        | PrepareConfReq x -> prepareConfReq b x
        | HttpReqCallReq x -> httpReqCallReq b x
        | ExtraInfoResp x -> extraInfoResp b x
        | HttpRespCallReq x -> httpRespCallReq b x

    let runnerMessage (b: FlatBufferBuilder) (m: RunnerMessage) =
        match m with
        | PrepareConfResp x -> prepareConfResp b x
        | HttpReqCallResp x -> httpReqCallResp b x
        | ExtraInfoReq x -> extraInfoReq b x
        | HttpRespCallResp x -> httpRespCallResp b x
        | ErrResp x -> errResp b x
