namespace Apisix.Runner

open System
open System.Text

/// A6.PrepareConf: APISIX hands over a route's plugin configuration and gets a token for it.
module PrepareConf =
    type Req =
        {
            /// Plugin name and its JSON configuration, in execution order.
            Conf: TextEntry[]
            /// Idempotency key of this route's configuration; null when APISIX sent none.
            Key: string
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
        {
            /// Null leaves the path as it is.
            Path: string
            Headers: TextEntry[]
            Args: TextEntry[]
            RespHeaders: TextEntry[]
            /// Empty leaves the body as it is.
            Body: byte[]
        }

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

    /// What is asked, as the schema tags it (Schema.Info), with the variable's name for a Var.
    let toWire (info: Info) : struct (byte * string) =
        match info with
        | Var name -> struct (Schema.Info.Var, name)
        | ReqBody -> struct (Schema.Info.ReqBody, null)
        | RespBody -> struct (Schema.Info.RespBody, null)

    /// The Info of a schema tag (a Var with `name`); ReqBody for a tag the schema does not define.
    let ofWire (tag: byte) (name: string) : Info =
        if tag = Schema.Info.Var then Var name
        elif tag = Schema.Info.RespBody then RespBody
        else ReqBody

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

/// Decoding of every message body, both directions, into the records above. Each answers a
/// DecodeError for any malformed buffer and never throws; strings are checked to be UTF-8. The
/// call requests are read by their views (the runner's hot path) and copied out of them.
module Decode =
    let prepareConfReq (body: ReadOnlySpan<byte>) : Result<PrepareConf.Req, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "PrepareConf.Req"
        let conf = Read.entries (&r, t, Schema.PrepareConfReq.Conf, "PrepareConf.Req.conf")
        let key = Read.optText (&r, r.String(t, Schema.PrepareConfReq.Key, "PrepareConf.Req.key"))
        Read.finish (&r, { PrepareConf.Req.Conf = conf; Key = key })

    let prepareConfResp (body: ReadOnlySpan<byte>) : Result<PrepareConf.Resp, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "PrepareConf.Resp"
        Read.finish (&r, { PrepareConf.Resp.ConfToken = r.U32(t, Schema.PrepareConfResp.ConfToken, 0u) })

    /// The request of a view, copied so that it outlives the frame.
    let ofRequestView (v: HttpReqCallView) : HttpReqCall.Req =
        { Id = v.Id
          SrcIp = v.SrcIp.ToArray()
          Method = v.Method
          Path = v.Path
          Args = v.Args.ToArray()
          Headers = v.Headers.ToArray()
          ConfToken = v.ConfToken }

    let httpReqCallReq (body: ReadOnlySpan<byte>) : Result<HttpReqCall.Req, DecodeError> =
        HttpReqCallView.Read(ReadOnlyMemory(body.ToArray())) |> Result.map ofRequestView

    let httpReqCallResp (body: ReadOnlySpan<byte>) : Result<HttpReqCall.Resp, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "HTTPReqCall.Resp"
        let id = r.U32(t, Schema.HttpReqCallResp.Id, 0u)
        let tag = r.U8(t, Schema.HttpReqCallResp.ActionType, Schema.Action.None)
        let a = r.TableField(t, Schema.HttpReqCallResp.Action, "HTTPReqCall.Resp.action")

        let action =
            if r.Failure.IsSome || tag = Schema.Action.None then
                HttpReqCall.NoAction
            elif a.VTableSize = 0 then
                r.Fail(MissingUnionValue "HTTPReqCall.Resp.action")
                HttpReqCall.NoAction
            elif tag = Schema.Action.Stop then
                HttpReqCall.Stop
                    { Status = r.U16(a, Schema.Stop.Status, 0us)
                      Headers = Read.entries (&r, a, Schema.Stop.Headers, "Stop.headers")
                      Body = Read.bytes (&r, r.Bytes(a, Schema.Stop.Body, "Stop.body")) }
            elif tag = Schema.Action.Rewrite then
                HttpReqCall.Rewrite
                    { Path = Read.optText (&r, r.String(a, Schema.Rewrite.Path, "Rewrite.path"))
                      Headers = Read.entries (&r, a, Schema.Rewrite.Headers, "Rewrite.headers")
                      Args = Read.entries (&r, a, Schema.Rewrite.Args, "Rewrite.args")
                      RespHeaders = Read.entries (&r, a, Schema.Rewrite.RespHeaders, "Rewrite.resp_headers")
                      Body = Read.bytes (&r, r.Bytes(a, Schema.Rewrite.Body, "Rewrite.body")) }
            else
                r.Fail(UnknownUnionTag("HTTPReqCall.Resp.action", tag))
                HttpReqCall.NoAction

        Read.finish (&r, { HttpReqCall.Resp.Id = id; Action = action })

    let extraInfoReq (body: ReadOnlySpan<byte>) : Result<ExtraInfo.Info, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "ExtraInfo.Req"
        let tag = r.U8(t, Schema.ExtraInfoReq.InfoType, Schema.Info.None)
        let i = r.TableField(t, Schema.ExtraInfoReq.Info, "ExtraInfo.Req.info")

        let info =
            if r.Failure.IsSome then
                ExtraInfo.ReqBody
            elif tag = Schema.Info.None || i.VTableSize = 0 then
                r.Fail(MissingUnionValue "ExtraInfo.Req.info")
                ExtraInfo.ReqBody
            elif tag = Schema.Info.Var then
                ExtraInfo.Var(Read.text (&r, r.String(i, Schema.ExtraInfoVar.Name, "ExtraInfo.Var.name")))
            elif tag = Schema.Info.ReqBody then
                ExtraInfo.ReqBody
            elif tag = Schema.Info.RespBody then
                ExtraInfo.RespBody
            else
                r.Fail(UnknownUnionTag("ExtraInfo.Req.info", tag))
                ExtraInfo.ReqBody

        Read.finish (&r, info)

    /// The result of an ExtraInfo.Resp alone, without the record: what a session takes per exchange.
    let extraInfoResult (body: ReadOnlySpan<byte>) : Result<byte[] voption, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "ExtraInfo.Resp"
        let result = r.Bytes(t, Schema.ExtraInfoResp.Result, "ExtraInfo.Resp.result")

        let value =
            if result.IsPresent then
                ValueSome(r.Buffer.Slice(result.Start, result.Length).ToArray())
            else
                ValueNone

        Read.finish (&r, value)

    let extraInfoResp (body: ReadOnlySpan<byte>) : Result<ExtraInfo.Resp, DecodeError> =
        extraInfoResult body |> Result.map (fun value -> { ExtraInfo.Resp.Result = value })

    /// The request of a view, copied so that it outlives the frame.
    let ofResponseView (v: HttpRespCallView) : HttpRespCall.Req =
        { Id = v.Id
          Status = v.Status
          Headers = v.Headers.ToArray()
          ConfToken = v.ConfToken }

    let httpRespCallReq (body: ReadOnlySpan<byte>) : Result<HttpRespCall.Req, DecodeError> =
        HttpRespCallView.Read(ReadOnlyMemory(body.ToArray())) |> Result.map ofResponseView

    let httpRespCallResp (body: ReadOnlySpan<byte>) : Result<HttpRespCall.Resp, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "HTTPRespCall.Resp"
        let id = r.U32(t, Schema.HttpRespCallResp.Id, 0u)
        let status = r.U16(t, Schema.HttpRespCallResp.Status, 0us)
        let headers = Read.entries (&r, t, Schema.HttpRespCallResp.Headers, "HTTPRespCall.Resp.headers")
        let content = Read.bytes (&r, r.Bytes(t, Schema.HttpRespCallResp.Body, "HTTPRespCall.Resp.body"))

        Read.finish (
            &r,
            { HttpRespCall.Resp.Id = id
              Status = status
              Headers = headers
              Body = content }
        )

    let errResp (body: ReadOnlySpan<byte>) : Result<Err.Code, DecodeError> =
        let mutable r = FlatBufferReader body
        let t = r.Root "Err.Resp"
        Read.finish (&r, (LanguagePrimitives.EnumOfValue(r.U8(t, Schema.ErrResp.Code, 0uy)): Err.Code))

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

/// Encoding of every message as one whole frame (header included) into a reusable builder, by the
/// span writers of `Write`. The returned memory belongs to the builder and is valid until its next frame.
module Encode =
    let inline private span (entries: TextEntry[]) = ReadOnlySpan entries
    let inline private bytes (value: byte[]) = ReadOnlySpan value

    let prepareConfReq (b: FrameBuilder) (m: PrepareConf.Req) = Write.prepareConfReq (b, span m.Conf, m.Key)

    let prepareConfResp (b: FrameBuilder) (m: PrepareConf.Resp) = Write.prepareConfResp (b, m.ConfToken)

    let httpReqCallReq (b: FrameBuilder) (m: HttpReqCall.Req) =
        Write.httpReqCallReq (b, m.Id, bytes m.SrcIp, m.Method, m.Path, span m.Args, span m.Headers, m.ConfToken)

    let httpReqCallResp (b: FrameBuilder) (m: HttpReqCall.Resp) =
        match m.Action with
        | HttpReqCall.NoAction -> Write.httpReqCallContinue (b, m.Id)
        | HttpReqCall.Stop s -> Write.httpReqCallStop (b, m.Id, s.Status, span s.Headers, bytes s.Body)
        | HttpReqCall.Rewrite w ->
            Write.httpReqCallRewrite (b, m.Id, w.Path, span w.Headers, span w.Args, span w.RespHeaders, bytes w.Body)

    let extraInfoReq (b: FrameBuilder) (info: ExtraInfo.Info) =
        let struct (tag, name) = ExtraInfo.toWire info
        Write.extraInfoReq (b, tag, name)

    let extraInfoResp (b: FrameBuilder) (m: ExtraInfo.Resp) =
        match m.Result with
        | ValueSome result -> Write.extraInfoResp (b, true, bytes result)
        | ValueNone -> Write.extraInfoResp (b, false, ReadOnlySpan.Empty)

    let httpRespCallReq (b: FrameBuilder) (m: HttpRespCall.Req) =
        Write.httpRespCallReq (b, m.Id, m.Status, span m.Headers, m.ConfToken)

    let httpRespCallResp (b: FrameBuilder) (m: HttpRespCall.Resp) =
        Write.httpRespCallResp (b, m.Id, m.Status, span m.Headers, bytes m.Body)

    let errResp (b: FrameBuilder) (code: Err.Code) = Write.errResp (b, code)

    let apisixMessage (b: FrameBuilder) (m: ApisixMessage) =
        match m with
        | PrepareConfReq x -> prepareConfReq b x
        | HttpReqCallReq x -> httpReqCallReq b x
        | ExtraInfoResp x -> extraInfoResp b x
        | HttpRespCallReq x -> httpRespCallReq b x

    let runnerMessage (b: FrameBuilder) (m: RunnerMessage) =
        match m with
        | PrepareConfResp x -> prepareConfResp b x
        | HttpReqCallResp x -> httpReqCallResp b x
        | ExtraInfoReq x -> extraInfoReq b x
        | HttpRespCallResp x -> httpRespCallResp b x
        | ErrResp x -> errResp b x
