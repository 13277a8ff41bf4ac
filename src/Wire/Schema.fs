namespace Apisix.Runner

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

/// A name with an optional value (A6.TextEntry). A missing value (null) is meaningful: in a rewrite
/// it deletes the header or argument, in a request it is an argument given without `=`.
[<Struct>]
type TextEntry =
    { Name: string
      /// Null when the entry has no value.
      Value: string }

    /// Whether the entry carries a value.
    member e.HasValue = not (isNull e.Value)

    /// An entry with a value.
    static member Set(name: string, value: string) = { Name = name; Value = value }

    /// An entry without a value: in a rewrite, it deletes the name.
    static member Delete(name: string) = { Name = name; Value = null }

/// A6.Err: the answer to a frame the runner cannot serve.
module Err =
    type Code =
        | BAD_REQUEST = 0uy
        | SERVICE_UNAVAILABLE = 1uy
        | CONF_TOKEN_NOT_FOUND = 2uy

/// The schema's slot numbers (a field's index in its table's vtable) and union tags, named once
/// for every reader and writer (PROTOCOL.md, Schema). `Fields` is a table's slot count.
module Schema =
    module TextEntry =
        let [<Literal>] Name = 0
        let [<Literal>] Value = 1
        let [<Literal>] Fields = 2

    module PrepareConfReq =
        let [<Literal>] Conf = 0
        let [<Literal>] Key = 1
        let [<Literal>] Fields = 2

    module PrepareConfResp =
        let [<Literal>] ConfToken = 0
        let [<Literal>] Fields = 1

    module HttpReqCallReq =
        let [<Literal>] Id = 0
        let [<Literal>] SrcIp = 1
        let [<Literal>] Method = 2
        let [<Literal>] Path = 3
        let [<Literal>] Args = 4
        let [<Literal>] Headers = 5
        let [<Literal>] ConfToken = 6
        let [<Literal>] Fields = 7

    module Stop =
        let [<Literal>] Status = 0
        let [<Literal>] Headers = 1
        let [<Literal>] Body = 2
        let [<Literal>] Fields = 3

    module Rewrite =
        let [<Literal>] Path = 0
        let [<Literal>] Headers = 1
        let [<Literal>] Args = 2
        let [<Literal>] RespHeaders = 3
        let [<Literal>] Body = 4
        let [<Literal>] Fields = 5

    /// HTTPReqCall.Resp; `action` is a union: its type tag, then its value.
    module HttpReqCallResp =
        let [<Literal>] Id = 0
        let [<Literal>] ActionType = 1
        let [<Literal>] Action = 2
        let [<Literal>] Fields = 3

    /// Tags of the HTTPReqCall.Resp action union.
    module Action =
        let [<Literal>] None = 0uy
        let [<Literal>] Stop = 1uy
        let [<Literal>] Rewrite = 2uy

    module ExtraInfoVar =
        let [<Literal>] Name = 0
        let [<Literal>] Fields = 1

    /// ExtraInfo.Req; `info` is a union: its type tag, then its value.
    module ExtraInfoReq =
        let [<Literal>] InfoType = 0
        let [<Literal>] Info = 1
        let [<Literal>] Fields = 2

    /// Tags of the ExtraInfo.Req info union.
    module Info =
        let [<Literal>] None = 0uy
        let [<Literal>] Var = 1uy
        let [<Literal>] ReqBody = 2uy
        let [<Literal>] RespBody = 3uy

    /// ExtraInfo.ReqBody and ExtraInfo.RespBody: tables without fields.
    module ExtraInfoBody =
        let [<Literal>] Fields = 0

    module ExtraInfoResp =
        let [<Literal>] Result = 0
        let [<Literal>] Fields = 1

    module HttpRespCallReq =
        let [<Literal>] Id = 0
        let [<Literal>] Status = 1
        let [<Literal>] Headers = 2
        let [<Literal>] ConfToken = 3
        let [<Literal>] Fields = 4

    module HttpRespCallResp =
        let [<Literal>] Id = 0
        let [<Literal>] Status = 1
        let [<Literal>] Headers = 2
        let [<Literal>] Body = 3
        let [<Literal>] Fields = 4

    module ErrResp =
        let [<Literal>] Code = 0
        let [<Literal>] Fields = 1
