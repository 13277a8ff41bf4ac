/// Wire compatibility with independent implementations: Python that flatc generates from
/// tests/interop/ext-plugin.fbs, driven by tests/interop/fbcodec.py (JSON in and out, see its
/// README), both ways; and the C++ reference Verifier (tests/interop/verify.cpp over
/// `flatc --cpp`), strict about bounds, alignment, NUL terminators and union tags, on every body we
/// encode. Each of these is one run for all message types, shared by the tests.
module Apisix.Runner.Tests.Wire.InteropTests

open System
open System.Collections.Generic
open System.IO
open System.Text.Json.Nodes
open Expecto
open FsCheck
open FsCheck.FSharp
open Apisix.Runner
open Apisix.Runner.Tests.Support
open Apisix.Runner.Tests.Wire.RoundTripTests
open Apisix.Runner.Tests.Support.RunnerProcess

/// One fbcodec.py run over a batch: one reply per item, in order.
let private fbcodec (mode: string) (items: JsonNode[]) : JsonNode[] =
    let args = [ ApisixScenario.interop "fbcodec.py"; ApisixScenario.generated.Value; mode ]
    // ToJsonString escapes all non-ASCII, so no text encoding is involved on the pipe.
    let out = run "/usr/bin/python3" args (JsonArray(items).ToJsonString())
    JsonNode.Parse(out).AsArray() |> Seq.toArray

// ---- F# values as the reference's JSON (tests/interop/README.md, "Input and output")

/// How empty values are written: present ("" / []) or absent (null). The protocol does not tell
/// empty vectors, or empty required strings (path, entry and variable names), from absent ones.
type private Empties = { Vectors: bool; Strings: bool }

/// What our encoder does: leaves empty vectors out, always writes required strings.
let private ours = { Vectors = false; Strings = true }

/// The two ways we ask the reference to encode; our decoder must read both the same.
let private theirs =
    [ { Vectors = true; Strings = true }; { Vectors = false; Strings = false } ]

let private obj (fields: (string * JsonNode) list) : JsonNode =
    JsonObject(fields |> List.map KeyValuePair)

let private num (n: uint32) : JsonNode = JsonValue.Create n
let private optText (s: string) : JsonNode = JsonValue.Create s
let private base64 (b: byte[]) : JsonNode = JsonValue.Create(Convert.ToBase64String b)

let private text e (s: string) : JsonNode =
    if s = "" && not e.Strings then null else JsonValue.Create s

let private data e (b: byte[]) : JsonNode =
    if b.Length = 0 && not e.Vectors then null else base64 b

let private entries e (xs: TextEntry[]) : JsonNode =
    if xs.Length = 0 && not e.Vectors then
        null
    else
        JsonArray [| for x in xs -> obj [ "name", text e x.Name; "value", optText x.Value ] |]

let private prepareConfReq e (m: PrepareConf.Req) =
    obj [ "conf", entries e m.Conf; "key", optText m.Key ]

let private prepareConfResp _ (m: PrepareConf.Resp) = obj [ "conf_token", num m.ConfToken ]

let private httpReqCallReq e (m: HttpReqCall.Req) =
    obj
        [ "id", num m.Id
          "src_ip", data e m.SrcIp
          "method", num (uint32 m.Method)
          "path", text e m.Path
          "args", entries e m.Args
          "headers", entries e m.Headers
          "conf_token", num m.ConfToken ]

let private httpReqCallResp e (m: HttpReqCall.Resp) =
    let action =
        match m.Action with
        | HttpReqCall.NoAction -> null
        | HttpReqCall.Stop s ->
            obj [ "stop", obj [ "status", num (uint32 s.Status); "headers", entries e s.Headers; "body", data e s.Body ] ]
        | HttpReqCall.Rewrite w ->
            obj
                [ "rewrite",
                  obj
                      [ "path", optText w.Path
                        "headers", entries e w.Headers
                        "args", entries e w.Args
                        "resp_headers", entries e w.RespHeaders
                        "body", data e w.Body ] ]

    obj [ "id", num m.Id; "action", action ]

let private extraInfoReq e (info: ExtraInfo.Info) =
    let member' =
        match info with
        | ExtraInfo.Var name -> "var", text e name
        | ExtraInfo.ReqBody -> "req_body", obj []
        | ExtraInfo.RespBody -> "resp_body", obj []

    obj [ "info", obj [ member' ] ]

/// Exact either way: absent and empty are different answers here.
let private extraInfoResp _ (m: ExtraInfo.Resp) =
    obj [ "result", m.Result |> ValueOption.map base64 |> ValueOption.toObj ]

let private httpRespCallReq e (m: HttpRespCall.Req) =
    obj
        [ "id", num m.Id
          "status", num (uint32 m.Status)
          "headers", entries e m.Headers
          "conf_token", num m.ConfToken ]

let private httpRespCallResp e (m: HttpRespCall.Resp) =
    obj
        [ "id", num m.Id
          "status", num (uint32 m.Status)
          "headers", entries e m.Headers
          "body", data e m.Body ]

let private errResp _ (code: Err.Code) = obj [ "code", num (uint32 code) ]

// ---- Samples and the two batches

/// One message type's sampled values, as each direction needs them.
type private Samples =
    {
        /// Our encoded body of each value, and the JSON the reference must decode it to.
        Ours: (byte[] * JsonNode)[]
        /// The JSON the reference encodes, and a check of our decoding of its bytes (an error or None).
        Theirs: (JsonNode * (byte[] -> string option))[]
    }

let private clip (s: string) =
    if s.Length > 3000 then s[..3000] + " ..." else s

let private kind name (gen: Gen<'T>) (encode: Encoder<'T>) (decode: byte[] -> Result<'T, DecodeError>) toJson =
    let samples () =
        let values = Gen.sampleWithSize 30 300 gen
        use b = new FrameBuilder()

        let check value bytes =
            match decode bytes with
            | Ok decoded when decoded = value -> None
            | other -> Some(clip $"decoded %A{other}\nexpected %A{value}")

        { Ours = [| for v in values -> (encodeOrFail encode b v).Span.Slice(Frame.HeaderLength).ToArray(), toJson ours v |]
          Theirs = [| for v in values do for e in theirs -> toJson e v, check v |] }

    name, lazy (samples ())

/// Keyed by the reference's type names.
let private kinds =
    [ kind "PrepareConfReq" Generators.prepareConfReq Encode.prepareConfReq (fun b -> Decode.prepareConfReq (ReadOnlySpan b)) prepareConfReq
      kind "PrepareConfResp" Generators.prepareConfResp Encode.prepareConfResp (fun b -> Decode.prepareConfResp (ReadOnlySpan b)) prepareConfResp
      kind "HTTPReqCallReq" Generators.httpReqCallReq Encode.httpReqCallReq (fun b -> Decode.httpReqCallReq (ReadOnlySpan b)) httpReqCallReq
      kind "HTTPReqCallResp" Generators.httpReqCallResp Encode.httpReqCallResp (fun b -> Decode.httpReqCallResp (ReadOnlySpan b)) httpReqCallResp
      kind "ExtraInfoReq" Generators.extraInfo Encode.extraInfoReq (fun b -> Decode.extraInfoReq (ReadOnlySpan b)) extraInfoReq
      kind "ExtraInfoResp" Generators.extraInfoResp Encode.extraInfoResp (fun b -> Decode.extraInfoResp (ReadOnlySpan b)) extraInfoResp
      kind "HTTPRespCallReq" Generators.httpRespCallReq Encode.httpRespCallReq (fun b -> Decode.httpRespCallReq (ReadOnlySpan b)) httpRespCallReq
      kind "HTTPRespCallResp" Generators.httpRespCallResp Encode.httpRespCallResp (fun b -> Decode.httpRespCallResp (ReadOnlySpan b)) httpRespCallResp
      kind "ErrResp" Generators.errCode Encode.errResp (fun b -> Decode.errResp (ReadOnlySpan b)) errResp ]

/// One fbcodec.py run over the items of every type, each sent as `field`: each type's replies, in order.
let private batch mode field (items: Samples -> JsonNode[]) : Map<string, JsonNode[]> =
    let perType = [| for name, samples in kinds -> name, items samples.Value |]

    let requests =
        [| for name, xs in perType do
               for x in xs -> obj [ "type", JsonValue.Create name; field, x ] |]

    let replies = fbcodec mode requests

    perType
    |> Array.mapFold (fun at (name, xs) -> (name, replies[at .. at + xs.Length - 1]), at + xs.Length) 0
    |> fst
    |> Map.ofArray

let private decodedByTheirs =
    lazy (batch "decode" "bytes" (fun s -> s.Ours |> Array.map (fst >> base64)))

let private encodedByTheirs =
    lazy (batch "encode" "msg" (fun s -> s.Theirs |> Array.map fst))

/// The reply's `field`, or a failure with the reference's error.
let private answer typ (i: int) (field: string) (reply: JsonNode) =
    match reply["error"] with
    | null -> reply[field]
    | error -> failwith $"{typ} item {i}: the reference failed: {error}"

let private byType = dict kinds

/// The C++ reference Verifier over every body we encoded, built once: the bodies it rejects, by type.
let private rejectedByVerifier =
    lazy
        let dir = ApisixScenario.generated.Value
        run "/usr/bin/flatc" [ "--cpp"; "-o"; dir; ApisixScenario.interop "ext-plugin.fbs" ] "" |> ignore
        let verifier = Path.Combine(dir, "verify")
        run "/usr/bin/g++" [ "-O1"; "-std=c++17"; "-I"; dir; "-o"; verifier; ApisixScenario.interop "verify.cpp" ] "" |> ignore
        let bodies = Directory.CreateDirectory(Path.Combine(dir, "bodies")).FullName

        let listing =
            String.concat
                ""
                [ for name, samples in kinds do
                      for i, (body, _) in Array.indexed samples.Value.Ours do
                          let file = Path.Combine(bodies, $"{name}.{i}.bin")
                          File.WriteAllBytes(file, body)
                          $"{name} {file}\n" ]

        let out = run verifier [] listing

        out.Split('\n', StringSplitOptions.RemoveEmptyEntries)
        |> Array.choose (fun line ->
            match line.Split ' ' with
            | [| "rejected"; typ; file |] -> Some(typ, file)
            | _ -> None)

/// One test per message type, each direction checking every sample of that type.
let private perType (name: string) (test: string -> unit) =
    testList name [ for typ, _ in kinds -> testCase typ (fun () -> test typ) ]

/// The two flatc/Python runs are shared by the tests: run one after the other, as one group.
[<Tests>]
let tests =
    testSequencedGroup "Wire.Interop"
    <| testList "Wire.Interop" [
        perType "the reference decodes our encoding to the same message" (fun typ ->
            let samples = byType[typ].Value

            decodedByTheirs.Value[typ]
            |> Array.iteri (fun i reply ->
                let expected = snd samples.Ours[i]
                let actual = answer typ i "msg" reply

                if not (JsonNode.DeepEquals(expected, actual)) then
                    failwith (clip $"{typ} item {i}: the reference decoded\n{actual.ToJsonString()}\nexpected\n{expected.ToJsonString()}")))

        perType "we decode the reference's encoding to the same message" (fun typ ->
            let samples = byType[typ].Value

            encodedByTheirs.Value[typ]
            |> Array.iteri (fun i reply ->
                let input, check = samples.Theirs[i]
                let bytes = answer typ i "bytes" reply |> _.GetValue<string>() |> Convert.FromBase64String

                match check bytes with
                | Some error -> failwith (clip $"{typ} item {i}, from {input.ToJsonString()}:\n{error}")
                | None -> ()))

        perType "the C++ reference Verifier accepts our encoding" (fun typ ->
            let rejected = rejectedByVerifier.Value |> Array.filter (fun (t, _) -> t = typ)
            Expect.isEmpty rejected $"{typ} bodies the C++ Verifier rejected: %A{rejected}")
    ]
