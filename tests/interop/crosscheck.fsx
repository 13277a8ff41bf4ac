// Wire compatibility of the runner's codec with the independent Python reference (fbcodec.py),
// for every message type of both directions, outside the test projects:
//   1. ours -> theirs: each message encoded by Encode (Google.FlatBuffers' builder under
//      FrameBuilder, one builder reused for every frame, starting small) has a correct frame
//      header, decodes with our Decode to itself, and fbcodec.py decodes its body to the JSON the
//      message stands for;
//   2. theirs -> ours: fbcodec.py encodes the same messages (empty vectors and strings once
//      written, once left out) and our Decode reads each back to the message;
//   3. the C++ reference Verifier (flatc --cpp, libflatbuffers-dev) accepts every body of ours.
// Usage, from the repository root (needs /usr/bin/flatc and /usr/bin/python3):
//   dotnet build src/Apisix.Runner.fsproj -c Release
//   dotnet fsi tests/interop/crosscheck.fsx [samples per type, default 300] [seed, default 1]
// Prints one line per type and direction; exits 1 on any difference.

#nowarn "3886" // obj [ "name", value ]: a one-field object, not a misplaced ';'
#r "nuget: Google.FlatBuffers, 25.2.10"
#r "nuget: Microsoft.Extensions.Hosting, 10.0.0" // named by the core's signatures, needed to compile against it
#r "../../src/bin/Release/net10.0/Apisix.Runner.dll"

open System
open System.Diagnostics
open System.IO
open System.Text.Json.Nodes
open Apisix.Runner

let args = fsi.CommandLineArgs |> Array.skip 1
let count = if args.Length > 0 then int args[0] else 300
let seed = if args.Length > 1 then int args[1] else 1
let rnd = Random seed
let here = __SOURCE_DIRECTORY__

let run (exe: string) (argv: string list) (input: string) =
    let psi = ProcessStartInfo(exe, argv, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true)
    use p = Process.Start psi
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.StandardInput.Write(input: string)
    p.StandardInput.Close()
    p.WaitForExit()

    if p.ExitCode <> 0 then
        failwith $"{exe} exited with {p.ExitCode}: {err.Result}"

    out.Result

let gen = Directory.CreateTempSubdirectory "a6-crosscheck-"
run "/usr/bin/flatc" [ "--python"; "-o"; gen.FullName; Path.Combine(here, "ext-plugin.fbs") ] "" |> ignore

let fbcodec (mode: string) (items: JsonNode[]) : JsonNode[] =
    let out = run "/usr/bin/python3" [ Path.Combine(here, "fbcodec.py"); gen.FullName; mode ] (JsonArray(items).ToJsonString())
    JsonNode.Parse(out).AsArray() |> Seq.toArray

// ---- Random messages: unicode (NUL and astral included, never a lone surrogate), empties,
// ---- absent values, zero and extreme scalars, now and then a large body or many entries.

let pick (xs: 'T[]) = xs[rnd.Next xs.Length]
let chance (n: int) = rnd.Next n = 0

let scalar () =
    match rnd.Next 12 with
    | 0 -> rnd.Next(0x00, 0x20)
    | 1
    | 2 -> rnd.Next(0x80, 0xD800)
    | 3 -> rnd.Next(0xE000, 0x10000)
    | 4 -> rnd.Next(0x10000, 0x110000)
    | _ -> rnd.Next(0x20, 0x7F)

let text () =
    if chance 6 then
        ""
    else
        String.concat "" [ for _ in 1 .. rnd.Next(1, 40) -> Char.ConvertFromUtf32(scalar ()) ]

let optText () = if chance 4 then null else text ()

let bytes () =
    let n =
        match rnd.Next 20 with
        | 0
        | 1 -> 0
        | 2 -> rnd.Next(10_000, 70_000)
        | _ -> rnd.Next(1, 300)

    let a = Array.zeroCreate<byte> n
    rnd.NextBytes a
    a

let entry () =
    { Name = text ()
      Value = if chance 5 then null else text () }

let entries () =
    match rnd.Next 12 with
    | 0
    | 1 -> [||]
    | 2 -> Array.init (rnd.Next(500, 3000)) (fun _ -> entry ())
    | _ -> Array.init (rnd.Next(1, 12)) (fun _ -> entry ())

let u16 () = pick [| 0us; 1us; 200us; UInt16.MaxValue; uint16 (rnd.Next 65536) |]
let u32 () = pick [| 0u; 1u; UInt32.MaxValue; uint32 (rnd.NextInt64(0L, 1L <<< 32)) |]

let prepareConfReq () : PrepareConf.Req = { Conf = entries (); Key = optText () }
let prepareConfResp () : PrepareConf.Resp = { ConfToken = u32 () }

let httpReqCallReq () : HttpReqCall.Req =
    { Id = u32 ()
      SrcIp = pick [| [||]; [| 127uy; 0uy; 0uy; 1uy |]; Array.init 16 byte |]
      Method = LanguagePrimitives.EnumOfValue(if chance 10 then 200uy else byte (rnd.Next 15))
      Path = text ()
      Args = entries ()
      Headers = entries ()
      ConfToken = u32 () }

let action () =
    match rnd.Next 3 with
    | 0 -> HttpReqCall.NoAction
    | 1 -> HttpReqCall.Stop { Status = u16 (); Headers = entries (); Body = bytes () }
    | _ ->
        HttpReqCall.Rewrite
            { Path = optText ()
              Headers = entries ()
              Args = entries ()
              RespHeaders = entries ()
              Body = bytes () }

let httpReqCallResp () : HttpReqCall.Resp = { Id = u32 (); Action = action () }

let extraInfoReq () =
    match rnd.Next 3 with
    | 0 -> ExtraInfo.Var(text ())
    | 1 -> ExtraInfo.ReqBody
    | _ -> ExtraInfo.RespBody

let extraInfoResp () : ExtraInfo.Resp =
    { Result = if chance 3 then ValueNone else ValueSome(bytes ()) }

let httpRespCallReq () : HttpRespCall.Req =
    { Id = u32 ()
      Status = u16 ()
      Headers = entries ()
      ConfToken = u32 () }

let httpRespCallResp () : HttpRespCall.Resp =
    { Id = u32 ()
      Status = u16 ()
      Headers = entries ()
      Body = bytes () }

let errResp () : Err.Code = LanguagePrimitives.EnumOfValue(byte (rnd.Next 3))

// ---- The messages as fbcodec.py's JSON (tests/interop/README.md). `vectors`/`strings`: whether
// ---- empty vectors and empty required strings are written (true) or left out (null).

type Empties = { Vectors: bool; Strings: bool }

/// What our encoder does: empty vectors left out, required strings always written.
let ours = { Vectors = false; Strings = true }
let theirs = [ { Vectors = true; Strings = true }; { Vectors = false; Strings = false } ]

let obj (fields: (string * JsonNode) list) : JsonNode =
    let o = JsonObject()

    for k, v in fields do
        o[k] <- v

    o

let num (n: uint32) : JsonNode = JsonValue.Create n
let str (s: string) : JsonNode = if isNull s then null else JsonValue.Create s
let b64 (b: byte[]) : JsonNode = JsonValue.Create(Convert.ToBase64String b)
let required e (s: string) = if s = "" && not e.Strings then null else str s
let data e (b: byte[]) = if b.Length = 0 && not e.Vectors then null else b64 b

let list e (xs: TextEntry[]) : JsonNode =
    if xs.Length = 0 && not e.Vectors then
        null
    else
        let a = JsonArray()

        for x in xs do
            a.Add(obj [ "name", required e x.Name; "value", str x.Value ])

        a

let jsonOf (typ: string) (e: Empties) (m: obj) : JsonNode =
    match m with
    | :? PrepareConf.Req as m -> obj [ "conf", list e m.Conf; "key", str m.Key ]
    | :? PrepareConf.Resp as m -> obj [ "conf_token", num m.ConfToken ]
    | :? HttpReqCall.Req as m ->
        obj
            [ "id", num m.Id
              "src_ip", data e m.SrcIp
              "method", num (uint32 m.Method)
              "path", required e m.Path
              "args", list e m.Args
              "headers", list e m.Headers
              "conf_token", num m.ConfToken ]
    | :? HttpReqCall.Resp as m ->
        let action =
            match m.Action with
            | HttpReqCall.NoAction -> null
            | HttpReqCall.Stop s -> obj [ "stop", obj [ "status", num (uint32 s.Status); "headers", list e s.Headers; "body", data e s.Body ] ]
            | HttpReqCall.Rewrite w ->
                obj
                    [ "rewrite",
                      obj
                          [ "path", str w.Path
                            "headers", list e w.Headers
                            "args", list e w.Args
                            "resp_headers", list e w.RespHeaders
                            "body", data e w.Body ] ]

        obj [ "id", num m.Id; "action", action ]
    | :? ExtraInfo.Info as i ->
        let name, value =
            match i with
            | ExtraInfo.Var n -> "var", required e n
            | ExtraInfo.ReqBody -> "req_body", obj []
            | ExtraInfo.RespBody -> "resp_body", obj []

        obj [ "info", obj [ name, value ] ]
    // Exact in every mode: absent and empty are different answers.
    | :? ExtraInfo.Resp as m -> obj [ "result", (match m.Result with ValueSome r -> b64 r | ValueNone -> null) ]
    | :? HttpRespCall.Req as m ->
        obj [ "id", num m.Id; "status", num (uint32 m.Status); "headers", list e m.Headers; "conf_token", num m.ConfToken ]
    | :? HttpRespCall.Resp as m ->
        obj [ "id", num m.Id; "status", num (uint32 m.Status); "headers", list e m.Headers; "body", data e m.Body ]
    | :? Err.Code as c -> obj [ "code", num (uint32 c) ]
    | _ -> failwith $"no JSON for {typ}"

// ---- The nine types: fbcodec's name, frame type, random and edge messages,
// ---- our encoder and decoder.

type Kind =
    { Name: string
      Frame: FrameType
      Messages: obj[]
      Encode: FrameBuilder -> obj -> Result<ReadOnlyMemory<byte>, EncodeError>
      Decode: byte[] -> Result<obj, DecodeError> }

let kind name frame (make: unit -> 'T) (edges: 'T list) (encode: FrameBuilder -> 'T -> Result<ReadOnlyMemory<byte>, EncodeError>) (decode: byte[] -> Result<'T, DecodeError>) =
    { Name = name
      Frame = frame
      Messages = [| for m in edges -> box m
                    for _ in 1..count -> box (make ()) |]
      Encode = fun b m -> encode b (unbox m)
      Decode = fun body -> decode body |> Result.map box }

let set n v = TextEntry.Set(n, v)

let kinds =
    [ kind "PrepareConfReq" FrameType.PrepareConf prepareConfReq
          [ { Conf = [||]; Key = null }; { Conf = [| TextEntry.Delete "no-conf" |]; Key = "" }
            { Conf = [| set "say" """{"body":"hello"}"""; set "limit-req" "{}" |]; Key = "route-1#2" } ]
          Encode.prepareConfReq (fun b -> Decode.prepareConfReq (ReadOnlySpan b))
      kind "PrepareConfResp" FrameType.PrepareConf prepareConfResp
          [ { ConfToken = 0u }; { ConfToken = UInt32.MaxValue } ]
          Encode.prepareConfResp (fun b -> Decode.prepareConfResp (ReadOnlySpan b))
      kind "HTTPReqCallReq" FrameType.HttpReqCall httpReqCallReq
          [ { Id = 0u; SrcIp = [||]; Method = Method.GET; Path = ""; Args = [||]; Headers = [||]; ConfToken = 0u }
            { Id = 42u; SrcIp = [| 192uy; 168uy; 1uy; 10uy |]; Method = Method.PATCH; Path = "/späce é"
              Args = [| set "a" "1"; set "a" "2"; TextEntry.Delete "flag"; set "e" "" |]
              Headers = [| set "host" "example.com"; set "x-ünï" "✓ 🚀" |]; ConfToken = 7u } ]
          Encode.httpReqCallReq (fun b -> Decode.httpReqCallReq (ReadOnlySpan b))
      kind "HTTPReqCallResp" FrameType.HttpReqCall httpReqCallResp
          [ { Id = 0u; Action = HttpReqCall.NoAction }
            { Id = 3u; Action = HttpReqCall.Stop { Status = 0us; Headers = [||]; Body = [||] } }
            { Id = 4u; Action = HttpReqCall.Stop { Status = 403us; Headers = [| set "x" "y" |]; Body = "no"B } }
            { Id = 5u; Action = HttpReqCall.Rewrite { Path = null; Headers = [||]; Args = [||]; RespHeaders = [||]; Body = [||] } }
            { Id = 6u; Action = HttpReqCall.Rewrite { Path = ""; Headers = [| TextEntry.Delete "x-remove" |]; Args = [| set "k" "v" |]; RespHeaders = [| set "x-resp" "1" |]; Body = "{}"B } } ]
          Encode.httpReqCallResp (fun b -> Decode.httpReqCallResp (ReadOnlySpan b))
      kind "ExtraInfoReq" FrameType.ExtraInfo extraInfoReq
          [ ExtraInfo.Var ""; ExtraInfo.Var "remote_addr"; ExtraInfo.Var "http_x_ünï"; ExtraInfo.ReqBody; ExtraInfo.RespBody ]
          Encode.extraInfoReq (fun b -> Decode.extraInfoReq (ReadOnlySpan b))
      kind "ExtraInfoResp" FrameType.ExtraInfo extraInfoResp
          [ { Result = ValueNone }; { Result = ValueSome [||] }; { Result = ValueSome "127.0.0.1"B } ]
          Encode.extraInfoResp (fun b -> Decode.extraInfoResp (ReadOnlySpan b))
      kind "HTTPRespCallReq" FrameType.HttpRespCall httpRespCallReq
          [ { Id = 0u; Status = 0us; Headers = [||]; ConfToken = 0u }
            { Id = 8u; Status = 200us; Headers = [| set "content-type" "application/json"; set "x-upstream" "ünï" |]; ConfToken = 1u } ]
          Encode.httpRespCallReq (fun b -> Decode.httpRespCallReq (ReadOnlySpan b))
      kind "HTTPRespCallResp" FrameType.HttpRespCall httpRespCallResp
          [ { Id = 9u; Status = 0us; Headers = [||]; Body = [||] }
            { Id = 8u; Status = 201us; Headers = [| set "x-added" "1"; set "x-added" "2" |]; Body = "hello world"B } ]
          Encode.httpRespCallResp (fun b -> Decode.httpRespCallResp (ReadOnlySpan b))
      kind "ErrResp" FrameType.RpcError errResp
          [ Err.Code.BAD_REQUEST; Err.Code.SERVICE_UNAVAILABLE; Err.Code.CONF_TOKEN_NOT_FOUND ]
          Encode.errResp (fun b -> Decode.errResp (ReadOnlySpan b)) ]

let mutable failures = 0

let fail (what: string) =
    failures <- failures + 1

    if failures <= 20 then
        eprintfn "%s" (if what.Length > 2000 then what[..2000] + " ..." else what)

let clip (n: JsonNode) =
    let s = if isNull n then "null" else n.ToJsonString()
    if s.Length > 600 then s[..600] + " ..." else s

// ---- 1. ours -> theirs (and ours -> ours): one builder, starting small, for every frame.

let builder = new FrameBuilder(64)

let ourBodies =
    [ for k in kinds ->
          k,
          [| for i, m in Array.indexed k.Messages ->
                 match k.Encode builder m with
                 | Error e ->
                     fail $"{k.Name} #{i}: our encoder failed: {e.Describe()}"
                     [||]
                 | Ok frame ->
                     let f = frame.Span
                     let length = (int f[1] <<< 16) ||| (int f[2] <<< 8) ||| int f[3]

                     if f[0] <> byte k.Frame || length <> frame.Length - Frame.HeaderLength then
                         fail $"{k.Name} #{i}: frame header {f[0]} {length} for a {frame.Length}-byte frame"

                     let body = f.Slice(Frame.HeaderLength).ToArray()

                     match k.Decode body with
                     | Ok back when back = m -> ()
                     | other -> fail $"{k.Name} #{i}: our decoder read back %A{other}\nexpected %A{m}"

                     body |] ]

let decoded =
    fbcodec "decode" [| for k, bodies in ourBodies do for b in bodies -> obj [ "type", JsonValue.Create k.Name; "bytes", b64 b ] |]

let mutable at = 0

for k, bodies in ourBodies do
    let mutable ok = 0

    for i in 0 .. bodies.Length - 1 do
        let reply = decoded[at + i]
        let expected = jsonOf k.Name ours k.Messages[i]

        match reply["error"] with
        | null when JsonNode.DeepEquals(reply["msg"], expected) -> ok <- ok + 1
        | null ->
            let got = clip reply["msg"]
            fail $"{k.Name} #{i}: fbcodec.py decoded our body to\n{got}\nexpected\n{clip expected}"
        | error -> fail $"{k.Name} #{i}: fbcodec.py failed on our body: {error}"

    at <- at + bodies.Length
    printfn "ours -> theirs  %-16s %4d/%d decoded as sent (and by our Decode)" k.Name ok bodies.Length

// ---- 2. theirs -> ours, with empties written and left out.

let requests =
    [| for k in kinds do
           for m in k.Messages do
               for e in theirs -> obj [ "type", JsonValue.Create k.Name; "msg", jsonOf k.Name e m ] |]

let encoded = fbcodec "encode" requests
at <- 0

for k in kinds do
    let mutable ok = 0

    for i in 0 .. k.Messages.Length - 1 do
        for e in 0 .. theirs.Length - 1 do
            let reply = encoded[at]
            at <- at + 1

            match reply["error"] with
            | null ->
                let bytes = reply["bytes"]
                let body = Convert.FromBase64String(bytes.GetValue<string>())

                match k.Decode body with
                | Ok back when back = k.Messages[i] -> ok <- ok + 1
                | other -> fail $"{k.Name} #{i} ({theirs[e]}): our decoder read fbcodec.py's body as %A{other}\nexpected %A{k.Messages[i]}"
            | error -> fail $"{k.Name} #{i}: fbcodec.py failed to encode: {error}"

    printfn "theirs -> ours  %-16s %4d/%d decoded as sent" k.Name ok (k.Messages.Length * theirs.Length)

// ---- 3. The C++ reference Verifier (strict: bounds, alignment, NUL terminators, union tags) on
// ---- every body of ours, when libflatbuffers-dev and g++ are there.

if File.Exists "/usr/include/flatbuffers/flatbuffers.h" && File.Exists "/usr/bin/g++" then
    run "/usr/bin/flatc" [ "--cpp"; "-o"; gen.FullName; Path.Combine(here, "ext-plugin.fbs") ] "" |> ignore
    let verifier = Path.Combine(gen.FullName, "verify")
    run "/usr/bin/g++" [ "-O1"; "-std=c++17"; "-I"; gen.FullName; "-o"; verifier; Path.Combine(here, "verify.cpp") ] "" |> ignore
    let bodies = Path.Combine(gen.FullName, "bodies")
    Directory.CreateDirectory bodies |> ignore

    let listing =
        String.concat
            ""
            [ for k, bs in ourBodies do
                  for i, b in Array.indexed bs do
                      let file = Path.Combine(bodies, $"{k.Name}.{i}.bin")
                      File.WriteAllBytes(file, b)
                      $"{k.Name} {file}\n" ]

    try
        let out = run verifier [] listing
        printfn "C++ Verifier    all types        %s bodies checked, rejected" (out.Trim())
    with ex ->
        fail $"the C++ Verifier rejected bodies of ours: {ex.Message}"
else
    printfn "C++ Verifier    skipped (needs libflatbuffers-dev and g++)"

builder.Dispose()
gen.Delete true
printfn "%s: %d difference(s), seed %d, %d random messages per type" (if failures = 0 then "OK" else "FAILED") failures seed count
exit (if failures = 0 then 0 else 1)
