/// Every decoder fed input built to break it: random bytes, truncations, byte and bit mutations,
/// targeted corruption of every offset, size, length, string and union tag of valid messages.
module Apisix.Runner.Tests.Wire.HostileInputTests

open System
open System.Buffers.Binary
open System.Text
open Expecto
open FsCheck
open FsCheck.FSharp
open Apisix.Runner
open Apisix.Runner.Tests.Support.Generators

// Decoders under test --------------------------------------------------------------------------

let private same (expected: 'T) (actual: 'T) =
    if expected <> actual then
        failwithf "expected %A\nbut got %A" expected actual

/// Encodes with a fresh builder and copies the frame out (the builder reuses its memory).
let private encoded (encode: FrameBuilder -> 'T -> Result<ReadOnlyMemory<byte>, EncodeError>) (message: 'T) =
    use b = new FrameBuilder()

    match encode b message with
    | Ok f -> f.ToArray()
    | Error e -> failwith (e.Describe())

/// Decodes, failing when decoding allocated more than a small multiple of the input: a decoder that
/// trusts a lying length or count, or expands shared data, allocates far more.
let private guarded (decode: byte -> byte[] -> 'R) (frameType: byte) (body: byte[]) : 'R =
    let before = GC.GetAllocatedBytesForCurrentThread()
    let result = decode frameType body
    let allocated = GC.GetAllocatedBytesForCurrentThread() - before

    if allocated > 64L * int64 body.Length + 65536L then
        failwithf "decoding a %d-byte input allocated %d bytes" body.Length allocated

    result

/// A decoder under test, fed a frame type and a body. When it decodes, re-encoding the value and
/// decoding that again must give the same value. Exceptions are left to reach Expecto.
type private Subject =
    { Name: string
      Run: byte -> byte[] -> Result<unit, DecodeError> }

let private subject name (decode: byte -> byte[] -> Result<'T, DecodeError>) encode =
    { Name = name
      Run =
        fun frameType body ->
            match guarded decode frameType body with
            | Error e -> Error e
            | Ok value ->
                let f = encoded encode value
                let again = decode f[0] f[4..]

                if again <> Ok value then
                    failwithf "%s: %A re-encoded decodes as %A" name value again

                Ok() }

let private fromApisix =
    subject
        "Decode.apisixMessage"
        (fun t body -> Decode.apisixMessage (LanguagePrimitives.EnumOfValue t) (ReadOnlySpan body))
        Encode.apisixMessage

let private fromRunner =
    subject
        "Decode.runnerMessage"
        (fun t body -> Decode.runnerMessage (LanguagePrimitives.EnumOfValue t) (ReadOnlySpan body))
        Encode.runnerMessage

/// What a slot holds (PROTOCOL.md, Schema): enough to find every offset and length of a valid buffer.
type private Shape =
    | Scalar
    | Str
    | Bytes
    | Tables of Shape list
    /// A union's value; its type tag is the slot before. Tag 0 is valid unless `noneIsError`.
    | Union of cases: (byte * Shape list) list * noneIsError: bool

let private entry = [ Str; Str ]

/// A valid body to mutate, with its layout and the decoders that must read it.
type private Seed =
    { Name: string
      Type: byte
      Body: byte[]
      Shape: Shape list
      Subject: Subject
      Dispatcher: Subject }

type private Kind = { Subject: Subject; Seeds: Seed list }

/// A message type: its decoder, and seeds encoded from hand-written messages.
let private kind dispatcher name (decode: byte[] -> Result<'T, DecodeError>) encode shape (messages: 'T list) =
    let s = subject name (fun _ body -> decode body) encode

    { Subject = s
      Seeds =
        [ for i, m in List.indexed messages ->
              let f = encoded encode m

              { Name = $"{name} #{i}"
                Type = f[0]
                Body = f[4..]
                Shape = shape
                Subject = s
                Dispatcher = dispatcher } ] }

let private set (name: string) (value: string) = TextEntry.Set(name, value)
let private utf8 (s: string) = Encoding.UTF8.GetBytes s

let private prepareConfReq =
    kind fromApisix "PrepareConf.Req" (fun b -> Decode.prepareConfReq (ReadOnlySpan b)) Encode.prepareConfReq [ Tables entry; Str ] [
        { Conf =
            [| set "limit-count" """{"count":2,"time_window":60,"rejected_code":503}"""
               set "ünïcødé-plugin" """{"greeting":"你好 👋"}""" |]
          Key = "route-1#conf-3" }
        { Conf = [||]; Key = null }
        { Conf = [| TextEntry.Delete "no-conf" |]; Key = "" }
    ]

let private prepareConfResp =
    kind fromRunner "PrepareConf.Resp" (fun b -> Decode.prepareConfResp (ReadOnlySpan b)) Encode.prepareConfResp [ Scalar ] [
        { ConfToken = 0xDEADBEEFu }
        { ConfToken = 0u }
    ]

let private httpReqCallReq =
    kind
        fromApisix
        "HTTPReqCall.Req"
        (fun b -> Decode.httpReqCallReq (ReadOnlySpan b))
        Encode.httpReqCallReq
        [ Scalar; Bytes; Scalar; Str; Tables entry; Tables entry; Scalar ]
        [ { Id = 42u
            SrcIp = [| 192uy; 168uy; 1uy; 10uy |]
            Method = Method.GET
            Path = "/api/v1/ünï/😀"
            Args = [| set "a" "1"; set "a" "2"; TextEntry.Delete "flag"; set "q" "späce é" |]
            Headers =
              [| set "host" "example.com"
                 set "x-multi" "1"
                 set "x-multi" "2"
                 set "user-agent" "curl/8.5.0"
                 set "x-emoji" "🚀" |]
            ConfToken = 7u }
          { Id = UInt32.MaxValue
            SrcIp = Array.init 16 byte
            Method = Method.PATCH
            Path = "/"
            Args = [||]
            Headers = [||]
            ConfToken = 1u } ]

let private stop = [ Scalar; Tables entry; Bytes ]
let private rewrite = [ Str; Tables entry; Tables entry; Tables entry; Bytes ]

let private httpReqCallResp =
    kind
        fromRunner
        "HTTPReqCall.Resp"
        (fun b -> Decode.httpReqCallResp (ReadOnlySpan b))
        Encode.httpReqCallResp
        [ Scalar; Scalar; Union([ 1uy, stop; 2uy, rewrite ], false) ]
        [ { Id = 1u; Action = HttpReqCall.NoAction }
          { Id = 2u
            Action =
              HttpReqCall.Stop
                  { Status = 403us
                    Headers =
                      [| set "content-type" "text/plain; charset=utf-8"
                         set "set-cookie" "a=1"
                         set "set-cookie" "b=2" |]
                    Body = utf8 "forbidden ✋" } }
          { Id = 3u; Action = HttpReqCall.Stop { Status = 0us; Headers = [||]; Body = [||] } }
          { Id = 4u
            Action =
              HttpReqCall.Rewrite
                  { Path = "/new/päth"
                    Headers = [| set "host" "upstream.local"; TextEntry.Delete "x-remove" |]
                    Args = [| set "k" "v"; TextEntry.Delete "drop" |]
                    RespHeaders = [| set "x-resp" "1" |]
                    Body = utf8 "new body ✓" } }
          { Id = 5u
            Action =
              HttpReqCall.Rewrite
                  { Path = null
                    Headers = [||]
                    Args = [||]
                    RespHeaders = [||]
                    Body = [||] } } ]

let private extraInfoReq =
    kind
        fromRunner
        "ExtraInfo.Req"
        (fun b -> Decode.extraInfoReq (ReadOnlySpan b))
        Encode.extraInfoReq
        [ Scalar; Union([ 1uy, [ Str ]; 2uy, []; 3uy, [] ], true) ]
        [ ExtraInfo.Var "remote_addr"; ExtraInfo.Var "http_x_ünï"; ExtraInfo.ReqBody; ExtraInfo.RespBody ]

let private extraInfoResp =
    kind fromApisix "ExtraInfo.Resp" (fun b -> Decode.extraInfoResp (ReadOnlySpan b)) Encode.extraInfoResp [ Bytes ] [
        { Result = ValueSome(utf8 """{"body":"ü"}""") }
        { Result = ValueNone }
        { Result = ValueSome [||] }
    ]

let private httpRespCallReq =
    kind
        fromApisix
        "HTTPRespCall.Req"
        (fun b -> Decode.httpRespCallReq (ReadOnlySpan b))
        Encode.httpRespCallReq
        [ Scalar; Scalar; Tables entry; Scalar ]
        [ { Id = 8u
            Status = 502us
            Headers = [| set "content-type" "application/json"; set "x-upstream" "ünï" |]
            ConfToken = 9u }
          { Id = 0u; Status = 200us; Headers = [||]; ConfToken = 0u } ]

let private httpRespCallResp =
    kind
        fromRunner
        "HTTPRespCall.Resp"
        (fun b -> Decode.httpRespCallResp (ReadOnlySpan b))
        Encode.httpRespCallResp
        [ Scalar; Scalar; Tables entry; Bytes ]
        [ { Id = 8u
            Status = 200us
            Headers = [| set "x-added" "1"; set "x-added" "2" |]
            Body = utf8 "replaced 😀" }
          { Id = 9u; Status = 0us; Headers = [||]; Body = [||] } ]

let private errResp =
    kind fromRunner "Err.Resp" (fun b -> Decode.errResp (ReadOnlySpan b)) Encode.errResp [ Scalar ] [
        Err.Code.BAD_REQUEST
        Err.Code.SERVICE_UNAVAILABLE
        Err.Code.CONF_TOKEN_NOT_FOUND
    ]

let private kinds =
    [ prepareConfReq
      prepareConfResp
      httpReqCallReq
      httpReqCallResp
      extraInfoReq
      extraInfoResp
      httpRespCallReq
      httpRespCallResp
      errResp ]

let private seeds = kinds |> List.collect _.Seeds

/// The zero-copy request views are decoders too; they must agree with Decode.
let private reqCallView =
    subject
        "HttpReqCallView"
        (fun _ body -> HttpReqCallView.Read(ReadOnlyMemory body) |> Result.map Decode.ofRequestView)
        Encode.httpReqCallReq

let private respCallView =
    subject
        "HttpRespCallView"
        (fun _ body -> HttpRespCallView.Read(ReadOnlyMemory body) |> Result.map Decode.ofResponseView)
        Encode.httpRespCallReq

let private subjects =
    [ yield! kinds |> List.map _.Subject; fromApisix; fromRunner; reqCallView; respCallView ]

/// Every decoder on one input: none may throw, allocate wildly or decode inconsistently.
let private hostile (frameType: byte) (body: byte[]) =
    for s in subjects do
        s.Run frameType body |> ignore

// Layout of valid buffers ----------------------------------------------------------------------

let private u16 (b: byte[]) at =
    int (BinaryPrimitives.ReadUInt16LittleEndian(ReadOnlySpan(b, at, 2)))

let private i32 (b: byte[]) at =
    BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan(b, at, 4))

let private w16 (b: byte[]) at (v: int) =
    BinaryPrimitives.WriteUInt16LittleEndian(Span(b, at, 2), uint16 v)

let private w32 (b: byte[]) at (v: uint32) =
    BinaryPrimitives.WriteUInt32LittleEndian(Span(b, at, 4), v)

/// The vtable entry and position of a present field of the table at `pos` of a valid buffer.
let private fieldAt (b: byte[]) pos slot =
    let vt = pos - i32 b pos
    let entry = vt + 4 + 2 * slot

    if entry + 2 > vt + u16 b vt || u16 b entry = 0 then
        None
    else
        Some(entry, pos + u16 b entry)

/// A place in a valid buffer worth corrupting.
type private Spot =
    | RootOffset
    | VTableOffset of table: int
    | VTableSize of vtable: int
    | TableSize of vtable: int * table: int
    | FieldOffset of entry: int * tableSize: int
    /// A uoffset to a string, a vector or a table.
    | Offset of at: int
    | Length of at: int * elementSize: int
    | Text of start: int * length: int
    | UnionValue of entry: int * tagAt: int * cases: byte list * noneIsError: bool

/// Every spot of a valid buffer, following the shape of its root table.
let private spots (b: byte[]) (shape: Shape list) =
    let rec table pos fields =
        let vt = pos - i32 b pos

        [ VTableOffset pos
          VTableSize vt
          TableSize(vt, pos)
          for slot, field in List.indexed fields do
              match fieldAt b pos slot, field with
              | None, _ -> ()
              | Some(entry, at), Union(cases, noneIsError) ->
                  let tagAt = fieldAt b pos (slot - 1) |> Option.get |> snd
                  UnionValue(entry, tagAt, List.map fst cases, noneIsError)
                  yield! tableAt at (List.find (fst >> (=) b[tagAt]) cases |> snd)
              | Some(entry, at), field ->
                  FieldOffset(entry, u16 b (vt + 2))
                  yield! value at field ]

    and tableAt at fields = Offset at :: table (at + i32 b at) fields

    and value at field =
        let target () = at + i32 b at

        match field with
        | Scalar
        | Union _ -> []
        | Str -> [ Offset at; Length(target (), 1); Text(target () + 4, i32 b (target ())) ]
        | Bytes -> [ Offset at; Length(target (), 1) ]
        | Tables fields ->
            [ Offset at
              Length(target (), 4)
              for i in 0 .. i32 b (target ()) - 1 do
                  yield! tableAt (target () + 4 + 4 * i) fields ]

    RootOffset :: table (i32 b 0) shape

// Expected outcomes ----------------------------------------------------------------------------

type private Expect =
    | Fails of kind: string * (DecodeError -> bool)
    | Decodes
    /// Ok or Error; Ok must be consistent.
    | Anything

let private outOfBounds = Fails("OutOfBounds", (function OutOfBounds _ -> true | _ -> false))
let private malformed = Fails("Malformed", (function Malformed _ -> true | _ -> false))
let private truncated = Fails("Truncated", (function Truncated _ -> true | _ -> false))
let private invalidUtf8 = Fails("InvalidUtf8", (function InvalidUtf8 _ -> true | _ -> false))
let private unknownTag = Fails("UnknownUnionTag", (function UnknownUnionTag _ -> true | _ -> false))
let private missingValue = Fails("MissingUnionValue", (function MissingUnionValue _ -> true | _ -> false))
let private anyError = Fails("an error", (fun _ -> true))

let private malformedOrOutOfBounds =
    Fails("Malformed or OutOfBounds", (function Malformed _ | OutOfBounds _ -> true | _ -> false))

/// Checks a result; `what` describes the case, made only on failure.
let private check (what: Lazy<string>) (expect: Expect) (result: Result<unit, DecodeError>) =
    match expect, result with
    | Anything, _
    | Decodes, Ok() -> ()
    | Fails(_, ok), Error e when ok e -> ()
    | Fails(kind, _), _ -> failwithf "%s: expected %s, got %A" what.Value kind result
    | Decodes, Error e -> failwithf "%s: expected to decode, got %A" what.Value e

/// Sequences that are not UTF-8, each written over the start of a string (or its end).
let private notUtf8 =
    [ "lone continuation byte", [| 0x80uy |], false
      "byte never in UTF-8", [| 0xFFuy |], false
      "overlong '/'", [| 0xC0uy; 0xAFuy |], false
      "overlong 3-byte", [| 0xE0uy; 0x80uy; 0xAFuy |], false
      "surrogate U+D800", [| 0xEDuy; 0xA0uy; 0x80uy |], false
      "beyond U+10FFFF", [| 0xF4uy; 0x90uy; 0x80uy; 0x80uy |], false
      "truncated 3-byte sequence", [| 0xE2uy; 0x82uy |], true ]

/// The corruptions of one spot: a description, the change, and what decoding must then give.
let private corruptions (b: byte[]) spot =
    let len = b.Length
    let set16 at v expect = $"u16 at {at} := 0x%X{v}", (fun c -> w16 c at v), expect
    let set32 at v expect = $"u32 at {at} := 0x%X{v}", (fun c -> w32 c at v), expect

    match spot with
    | RootOffset ->
        [ set32 0 0u malformed // the root table is the root offset: a vtable of size 0
          for v in [ 0xFFFFFFFFu; 0x7FFFFFFFu; uint32 (len - 3) ] do set32 0 v outOfBounds ]
    | VTableOffset pos ->
        [ set32 pos 0u malformed // the table is its own vtable, of size 0
          set32 pos 0xFFFFFFFFu malformedOrOutOfBounds // vtable one byte on: size 0xFFFF, or past the end
          for v in [ 0x7FFFFFFF; Int32.MinValue; pos + 1; pos - (len - 3) ] do set32 pos (uint32 v) outOfBounds ]
    | VTableSize vt -> [ for v in [ 0; 2; u16 b vt + 1; 0xFFFF; 0xFFFE; (len - vt + 2) &&& ~~~1 ] -> set16 vt v malformed ]
    | TableSize(vt, pos) -> [ for v in [ 0; 3; len - pos + 1; 0xFFFF ] -> set16 (vt + 2) v malformed ]
    | FieldOffset(entry, size) ->
        [ set16 entry 0 Anything // the field is absent: its default
          for v in [ 1; 2; 3; size; 0xFFFF ] do set16 entry v malformed ]
    | Offset at -> [ for v in [ 0xFFFFFFFFu; 0x7FFFFFFFu; 0x80000000u; uint32 (len - 3 - at) ] -> set32 at v outOfBounds ]
    | Length(at, size) ->
        [ set32 at 0u Anything
          // 0x40000000 elements of 4 bytes overflow a 32-bit size computation to 0.
          for v in [ 0xFFFFFFFFu; 0x7FFFFFFFu; 0x80000000u; 0x40000000u; 0x40000001u; uint32 ((len - at - 4) / size + 1) ] do
              set32 at v outOfBounds ]
    | Text(start, n) ->
        [ for name, bad, atEnd in notUtf8 do
              if bad.Length <= n then
                  let at = if atEnd then start + n - bad.Length else start
                  $"{name} at {at}", (fun (c: byte[]) -> bad.CopyTo(c, at)), invalidUtf8 ]
    | UnionValue(entry, tagAt, cases, noneIsError) ->
        [ set16 entry 0 missingValue
          for t in 0uy .. 255uy do
              let expect =
                  if t = 0uy then (if noneIsError then missingValue else Decodes)
                  elif t = b[tagAt] then Decodes
                  elif List.contains t cases then Anything // another case's table read as this one
                  else unknownTag

              $"union tag at {tagAt} := {t}", (fun (c: byte[]) -> c[tagAt] <- t), expect ]

/// A copy of `body` with a change applied.
let private changed (body: byte[]) (change: byte[] -> unit) =
    let c = Array.copy body
    change c
    c

// Tests ----------------------------------------------------------------------------------------

let private decoders =
    [
        testCase "every seed decodes, through its decoder and its dispatcher" <| fun () ->
            for k in kinds do
                Expect.isNonEmpty k.Seeds $"the seeds of {k.Subject.Name}"

            for s in seeds do
                same (Ok()) (s.Subject.Run s.Type s.Body)
                same (Ok()) (s.Dispatcher.Run s.Type s.Body)

        testPropertyWithConfig (cases 2000) "random bytes of random lengths never break a decoder"
        <| Prop.forAll
            (Arb.fromGen (
                gen {
                    let! length = Gen.choose (0, 4096)
                    let! seed = Gen.choose (0, Int32.MaxValue)
                    let! frameType = Gen.choose (0, 4)
                    let! aimRoot = Gen.elements [ false; true ]
                    let bytes = Array.zeroCreate<byte> length
                    Random(seed).NextBytes bytes
                    // Half the time a root offset inside the buffer, to get past the first check.
                    if aimRoot && length >= 8 then
                        w32 bytes 0 (uint32 (seed % (length - 4)))

                    return byte frameType, bytes
                }
            ))
            (fun (t, body) -> hostile t body)

        testCase "every truncation of every seed that cuts a byte the decoder reads is an error, Truncated below 8 bytes" <| fun () ->
            for s in seeds do
                let results = [| for n in 0 .. s.Body.Length -> s.Subject.Run s.Type s.Body[.. n - 1] |]

                for n in 0 .. s.Body.Length - 1 do
                    hostile s.Type s.Body[.. n - 1]

                // The bytes no field reads are at the end: the first string's NUL and the builder's
                // alignment padding, at most 4. Every prefix shorter than the bytes read fails; every
                // longer one reads as the whole seed.
                let read = results |> Array.findIndex (fun r -> r = Ok())
                Expect.isLessThanOrEqual (s.Body.Length - read) 4 $"{s.Name}: {s.Body.Length - read} final bytes unread"

                for n in 0 .. s.Body.Length do
                    let expect = if n < 8 then truncated elif n < read then anyError else Anything
                    check (lazy $"{s.Name} cut to {n} bytes") expect results[n]

                    if n >= read then
                        Expect.equal results[n] (Ok()) $"{s.Name} cut to {n} bytes, past every byte read"

        testCase "every byte of every seed set to hostile values never breaks a decoder" <| fun () ->
            for s in seeds do
                for i in 0 .. s.Body.Length - 1 do
                    let b = s.Body[i]

                    for v in [ 0uy; 0xFFuy; 0x7Fuy; 0x80uy; b + 1uy; b - 1uy ] do
                        hostile s.Type (changed s.Body (fun c -> c[i] <- v))

        testCase "every single-bit flip of every seed never breaks a decoder" <| fun () ->
            for s in seeds do
                for bit in 0 .. 8 * s.Body.Length - 1 do
                    hostile s.Type (changed s.Body (fun c -> c[bit / 8] <- c[bit / 8] ^^^ (1uy <<< bit % 8)))

        testPropertyWithConfig (cases 2000) "random multi-byte mutations of seeds never break a decoder"
        <| Prop.forAll
            (Arb.fromGen (
                gen {
                    let! s = Gen.elements seeds
                    let! n = Gen.choose (2, 8)
                    let! writes = Gen.listOfLength n (Gen.zip (Gen.choose (0, s.Body.Length - 1)) (Gen.choose (0, 255)))
                    return s, writes
                }
            ))
            (fun (s, writes) -> hostile s.Type (changed s.Body (fun c -> for i, v in writes do c[i] <- byte v)))

        testCase "targeted corruption of offsets, sizes, lengths, strings and union tags gives the expected error" <| fun () ->
            for s in seeds do
                for spot in spots s.Body s.Shape do
                    for what, change, expect in corruptions s.Body spot do
                        let body = changed s.Body change
                        let result = s.Subject.Run s.Type body
                        check (lazy $"{s.Name}, {spot}, {what}") expect result
                        // The dispatcher must say exactly what the decoder says.
                        same result (s.Dispatcher.Run s.Type body)

        testCase "the seeds hold every kind of spot to corrupt" <| fun () ->
            let all = seeds |> List.collect (fun s -> spots s.Body s.Shape)
            let has what pick = Expect.exists all pick $"a spot of {what}"
            has "a string of 4 bytes or more" (function Text(_, n) -> n >= 4 | _ -> false)
            has "a length of 4-byte elements" (function Length(_, 4) -> true | _ -> false)
            has "a length of bytes" (function Length(_, 1) -> true | _ -> false)
            has "a union whose value is required" (function UnionValue(_, _, _, true) -> true | _ -> false)
            has "a union whose value may be absent" (function UnionValue(_, _, _, false) -> true | _ -> false)

        // FlatBuffers' own verifier refuses a uoffset of 0 ("may not point to itself").
        testCase "an offset pointing at itself is an error" <| fun () ->
            for s in seeds do
                for spot in spots s.Body s.Shape do
                    match spot with
                    | Offset at ->
                        let result = s.Subject.Run s.Type (changed s.Body (fun c -> w32 c at 0u))
                        check (lazy $"{s.Name}, uoffset at {at} := 0") anyError result
                    | _ -> ()

        testCase "a header vector claiming about 4 billion elements is OutOfBounds, without allocating for them" <| fun () ->
            let s = httpReqCallReq.Seeds.Head
            let _, headers = fieldAt s.Body (i32 s.Body 0) 5 |> Option.get
            let vector = headers + i32 s.Body headers

            for count in [ UInt32.MaxValue; 0xFFFFFFF0u; 0x40000000u ] do
                check (lazy $"{count} headers") outOfBounds (s.Subject.Run s.Type (changed s.Body (fun c -> w32 c vector count)))

        testCase "a vector whose elements all share one table is an error, not an amplified allocation" <| fun () ->
            // About 8 KB whose 1000 headers all point at one entry with a 4000-byte name: reading each
            // entry anew would make 8 MB of strings.
            use b = new FrameBuilder()
            b.Begin()
            let name = b.String(String('x', 4000))
            b.StartTable Schema.TextEntry.Fields
            b.Offset(Schema.TextEntry.Name, name)
            let shared = b.EndTable()
            Array.fill (b.Elements 1000) 0 1000 shared
            let vector = b.Vector 1000
            b.StartTable Schema.HttpRespCallReq.Fields
            b.Offset(Schema.HttpRespCallReq.Headers, vector)
            let root = b.EndTable()

            let body =
                match b.Finish(FrameType.HttpRespCall, root) with
                | Ok f -> f.Slice(Frame.HeaderLength).ToArray()
                | Error n -> failwithf "%d" n

            for s in [ httpRespCallReq.Subject; fromApisix ] do
                check (lazy $"{s.Name}, 1000 headers sharing one entry") anyError (s.Run 4uy body)

            // The view copies nothing, but checking the one entry's UTF-8 1000 times is the same blow-up in time.
            check (lazy "HttpRespCallView.Read, 1000 headers sharing one entry") anyError (
                HttpRespCallView.Read(ReadOnlyMemory body) |> Result.map ignore
            )

        testCase "the dispatchers decode the frame types of their direction and refuse every other" <| fun () ->
            let fromApisixTypes =
                Map [ 1uy, prepareConfReq; 2uy, httpReqCallReq; 3uy, extraInfoResp; 4uy, httpRespCallReq ]

            let fromRunnerTypes =
                Map [ 0uy, errResp; 1uy, prepareConfResp; 2uy, httpReqCallResp; 3uy, extraInfoReq; 4uy, httpRespCallResp ]

            for s in seeds do
                for t in 0uy .. 255uy do
                    for dispatcher, types in [ fromApisix, fromApisixTypes; fromRunner, fromRunnerTypes ] do
                        let expected =
                            match Map.tryFind t types with
                            | Some k -> k.Subject.Run t s.Body
                            | None -> Error(UnexpectedFrameType t)

                        same expected (dispatcher.Run t s.Body)

        testCase "the request views agree with Decode on every truncation and bit flip" <| fun () ->
            for k, view in [ httpReqCallReq, reqCallView; httpRespCallReq, respCallView ] do
                for s in k.Seeds do
                    let cases =
                        [ for n in 0 .. s.Body.Length - 1 -> s.Body[.. n - 1]
                          for bit in 0 .. 8 * s.Body.Length - 1 ->
                              changed s.Body (fun c -> c[bit / 8] <- c[bit / 8] ^^^ (1uy <<< bit % 8)) ]

                    for body in cases do
                        same (k.Subject.Run s.Type body) (view.Run s.Type body)

    ]

// FlatBufferReader edge cases ------------------------------------------------------------------

/// A root table at 12 with a u32 in slot 0 and slot 1 absent; its vtable at 4.
let private tiny (vtableSize: int) (field0: int) =
    let b = Array.zeroCreate<byte> 20
    w32 b 0 12u
    w16 b 4 vtableSize
    w16 b 6 8 // table size: soffset + u32
    w16 b 8 field0
    w32 b 12 8u // soffset: the vtable is 8 bytes before
    w32 b 16 0xC0FFEEu
    b

let private reader =
    [
        testCase "FlatBufferReader reads a tiny valid table; absent and unknown slots give the fallback" <| fun () ->
            let mutable r = FlatBufferReader(ReadOnlySpan(tiny 8 4))
            let t = r.Root "tiny"
            Expect.equal (r.U32(t, 0, 0u)) (0xC0FFEEu) "r.U32(t, 0, 0u)"
            Expect.equal (r.U32(t, 1, 5u)) 5u "r.U32(t, 1, 5u)"
            Expect.equal (r.U32(t, 9, 6u)) 6u "r.U32(t, 9, 6u)"
            same ValueNone r.Failure

        testCase "FlatBufferReader: a root on fewer than 8 bytes is Truncated" <| fun () ->
            let b = tiny 8 4

            for n in 0..7 do
                let mutable r = FlatBufferReader(ReadOnlySpan(b, 0, n))
                let t = r.Root "tiny"
                Expect.equal (r.U32(t, 0, 7u)) 7u "r.U32(t, 0, 7u)"
                same (ValueSome(Truncated "tiny")) r.Failure

        testCase "FlatBufferReader: an odd vtable size is Malformed" <| fun () ->
            for size in [ 5; 7; 9 ] do
                let mutable r = FlatBufferReader(ReadOnlySpan(tiny size 4))
                let t = r.Root "tiny"
                Expect.equal (r.U32(t, 0, 7u)) 7u "r.U32(t, 0, 7u)"
                same (ValueSome(Malformed("tiny vtable", 4))) r.Failure

        testCase "FlatBufferReader: a field offset beyond the table size is Malformed, and the first error sticks" <| fun () ->
            for offset in [ 1; 3; 5; 8; 0xFFFF ] do
                let mutable r = FlatBufferReader(ReadOnlySpan(tiny 8 offset))
                let t = r.Root "tiny"
                Expect.equal (r.U32(t, 0, 7u)) 7u "r.U32(t, 0, 7u)"
                same (ValueSome(Malformed("field", 12))) r.Failure
                // Later reads, even of a bad table, answer defaults and keep the first error.
                Expect.equal (r.Table(1000, "later")) Table.Absent "r.Table(1000, 'later')"
                same (ValueSome(Malformed("field", 12))) r.Failure

        testCase "FlatBufferReader: a table outside the buffer is OutOfBounds" <| fun () ->
            let b = tiny 8 4

            for pos in [ -1; Int32.MinValue; b.Length - 3; b.Length; Int32.MaxValue ] do
                let mutable r = FlatBufferReader(ReadOnlySpan b)
                Expect.equal (r.Table(pos, "t")) Table.Absent "r.Table(pos, 't')"
                same (ValueSome(OutOfBounds("t", int64 pos))) r.Failure
    ]

[<Tests>]
let tests =
    testSequencedGroup "Wire.HostileInput" <| testList "Wire.HostileInput" (decoders @ reader)
