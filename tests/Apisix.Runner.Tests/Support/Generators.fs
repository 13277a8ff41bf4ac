/// FsCheck generators for every protocol message. Values are never null and use [||] for "no
/// entries", exactly what the decoders give back, so a round trip compares with plain equality.
module Apisix.Runner.Tests.Support.Generators

open System
open Expecto
open FsCheck
open FsCheck.FSharp
open Apisix.Runner

/// The configuration of a property checked on `n` cases, at FsCheck's default sizes.
let cases (n: int) : FsCheckConfig = { FsCheckConfig.defaultConfig with maxTest = n }

/// Unicode scalar values, never a surrogate code point: every string is valid UTF-16, so it has
/// a UTF-8 encoding. Mostly ASCII, with controls (NUL too), other BMP and astral characters.
let private scalar =
    Gen.frequency
        [ 8, Gen.choose (0x20, 0x7E)
          1, Gen.choose (0x00, 0x1F)
          2, Gen.choose (0x80, 0xD7FF)
          1, Gen.choose (0xE000, 0xFFFF)
          1, Gen.choose (0x1F300, 0x1FAFF) // emoji
          1, Gen.choose (0x10000, 0x10FFFF) ]

let private ofScalars = Gen.listOf >> Gen.map (List.map Char.ConvertFromUtf32 >> String.concat "")

/// Any string up to the size in scalars (astral ones take two chars): often empty, often plain
/// printable ASCII as real headers are, otherwise mixed.
let text: Gen<string> =
    Gen.frequency [ 1, Gen.constant ""; 3, ofScalars (Gen.choose (0x20, 0x7E)); 4, ofScalars scalar ]

/// Present or not; when present it may still be "" (the protocol tells the two apart).
/// Absent (null), empty or text: the protocol tells absent and empty apart.
let optionalText: Gen<string> =
    Gen.frequency [ 1, Gen.constant null; 1, Gen.constant ""; 4, text ]

let u16: Gen<uint16> =
    Gen.frequency [ 1, Gen.elements [ 0us; 1us; UInt16.MaxValue ]; 3, Gen.choose (0, 0xFFFF) |> Gen.map uint16 ]

let u32: Gen<uint32> =
    Gen.frequency
        [ 1, Gen.elements [ 0u; 1u; UInt32.MaxValue - 1u; UInt32.MaxValue ]
          3, Gen.choose64 (0L, int64 UInt32.MaxValue) |> Gen.map uint32 ]

/// Random bytes of a drawn length, filled from a seeded Random: far faster than a generator per
/// byte for bodies of tens of KB, and still reproducible from FsCheck's seed.
let private bytesOfLength (length: Gen<int>) : Gen<byte[]> =
    Gen.map2
        (fun n (seed: int) ->
            let a = Array.zeroCreate n
            Random(seed).NextBytes a
            a)
        length
        (Gen.choose (0, Int32.MaxValue))

/// A body: usually up to the size, sometimes empty, rarely tens of KB.
let bytes: Gen<byte[]> =
    Gen.frequency
        [ 2, Gen.constant [||]
          20, bytesOfLength (Gen.sized (fun s -> Gen.choose (1, max 1 s)))
          1, bytesOfLength (Gen.choose (10_000, 60_000)) ]

/// A client address: IPv4, IPv6, sometimes none.
let srcIp: Gen<byte[]> =
    Gen.frequency [ 4, bytesOfLength (Gen.constant 4); 4, bytesOfLength (Gen.constant 16); 1, Gen.constant [||] ]

/// Every schema value, and now and then one outside it (the decoder keeps those as they came).
let httpMethod: Gen<Method> =
    Gen.frequency
        [ 15, Gen.elements (Enum.GetValues<Method>())
          1, Gen.choose (15, 255) |> Gen.map (fun v -> LanguagePrimitives.EnumOfValue(byte v)) ]

let errCode: Gen<Err.Code> = Gen.elements (Enum.GetValues<Err.Code>())

/// Value absent, "" or text: absent deletes a header or argument, "" sets it empty.
let textEntry: Gen<TextEntry> =
    Gen.map2 (fun name value -> { Name = name; Value = value }) text optionalText

/// Headers or arguments: usually a few, sometimes none, rarely hundreds to thousands.
let entries: Gen<TextEntry[]> =
    Gen.frequency
        [ 2, Gen.constant [||]
          20, Gen.sized (fun s -> Gen.choose (1, max 1 (s / 4))) |> Gen.bind (fun n -> Gen.arrayOfLength n textEntry)
          1, Gen.choose (200, 3000) |> Gen.bind (fun n -> Gen.arrayOfLength n (Gen.resize 8 textEntry)) ]

let prepareConfReq: Gen<PrepareConf.Req> =
    Gen.map2 (fun conf key -> { PrepareConf.Req.Conf = conf; Key = key }) entries optionalText

let prepareConfResp: Gen<PrepareConf.Resp> =
    Gen.map (fun token -> { PrepareConf.Resp.ConfToken = token }) u32

let httpReqCallReq: Gen<HttpReqCall.Req> =
    gen {
        let! id = u32
        let! ip = srcIp
        let! m = httpMethod
        let! path = text
        let! args = entries
        let! headers = entries
        let! token = u32

        return
            { HttpReqCall.Req.Id = id
              SrcIp = ip
              Method = m
              Path = path
              Args = args
              Headers = headers
              ConfToken = token }
    }

let stop: Gen<HttpReqCall.Stop> =
    Gen.map3 (fun status headers body -> { HttpReqCall.Stop.Status = status; Headers = headers; Body = body }) u16 entries bytes

let rewrite: Gen<HttpReqCall.Rewrite> =
    gen {
        let! path = optionalText
        let! headers = entries
        let! args = entries
        let! respHeaders = entries
        let! body = bytes

        return
            { HttpReqCall.Rewrite.Path = path
              Headers = headers
              Args = args
              RespHeaders = respHeaders
              Body = body }
    }

let action: Gen<HttpReqCall.Action> =
    Gen.oneof
        [ Gen.constant HttpReqCall.NoAction
          Gen.map HttpReqCall.Stop stop
          Gen.map HttpReqCall.Rewrite rewrite ]

let httpReqCallResp: Gen<HttpReqCall.Resp> =
    Gen.map2 (fun id action -> { HttpReqCall.Resp.Id = id; Action = action }) u32 action

let extraInfo: Gen<ExtraInfo.Info> =
    Gen.frequency
        [ 2, Gen.map ExtraInfo.Var text
          1, Gen.constant ExtraInfo.ReqBody
          1, Gen.constant ExtraInfo.RespBody ]

/// Absent (unset variable, no body) and present-but-empty are different answers.
let extraInfoResp: Gen<ExtraInfo.Resp> =
    Gen.frequency
        [ 1, Gen.constant ValueNone
          1, Gen.constant (ValueSome [||])
          4, Gen.map ValueSome bytes ]
    |> Gen.map (fun result -> { ExtraInfo.Resp.Result = result })

let httpRespCallReq: Gen<HttpRespCall.Req> =
    Gen.map4
        (fun id status headers token ->
            { HttpRespCall.Req.Id = id
              Status = status
              Headers = headers
              ConfToken = token })
        u32
        u16
        entries
        u32

let httpRespCallResp: Gen<HttpRespCall.Resp> =
    Gen.map4
        (fun id status headers body ->
            { HttpRespCall.Resp.Id = id
              Status = status
              Headers = headers
              Body = body })
        u32
        u16
        entries
        bytes

let apisixMessage: Gen<ApisixMessage> =
    Gen.oneof
        [ Gen.map PrepareConfReq prepareConfReq
          Gen.map HttpReqCallReq httpReqCallReq
          Gen.map ExtraInfoResp extraInfoResp
          Gen.map HttpRespCallReq httpRespCallReq ]

let runnerMessage: Gen<RunnerMessage> =
    Gen.oneof
        [ Gen.map PrepareConfResp prepareConfResp
          Gen.map HttpReqCallResp httpReqCallResp
          Gen.map ExtraInfoReq extraInfo
          Gen.map HttpRespCallResp httpRespCallResp
          Gen.map ErrResp errCode ]
