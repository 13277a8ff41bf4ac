/// Hostile input over a real socket: random and mutated frames from many connections to a TestHost
/// process, while a control connection checks every answer it gets; then the process's memory and
/// descriptors.
///
/// FUZZ_FRAMES sets how many frames are sent (10,000 by default, what CI runs); FUZZ_SEED replays
/// a run (the seed is printed in the test output).
module Apisix.Runner.Tests.Process.FuzzTests

open System
open System.Buffers.Binary
open System.Collections.Concurrent
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Text
open System.Threading
open System.Threading.Tasks
open FsCheck
open FsCheck.FSharp
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support
open Apisix.Runner.Tests.Support.ApisixClient
open Apisix.Runner.Tests.Support.RunnerProcess
open Apisix.Runner.Tests.Support.ProcessProbe
open Apisix.Runner.Tests.Support.RawConnection
open Apisix.Runner.Tests.Support.Expectations

// ---- what the fuzz sends ----

/// One hostile input: how it was made, for the tally, and its bytes, frame header included.
type Case = { Kind: string; Bytes: byte[] }

/// The routes prepared before the fuzz: its valid calls aim at their tokens. None hangs: a call
/// is answered at once, after ExtraInfo exchanges (vars, resp) or with an error (throw).
let fuzzRoutes =
    [ "fuzz-stop", [ "stop", """{"status": 403, "body": "fuzz"}""" ]
      "fuzz-rewrite", [ "rewrite", """{"path": "/fuzz", "headers": {"x-fuzz": "1"}}""" ]
      "fuzz-mirror", [ "mirror", "" ]
      "fuzz-vars", [ "vars", """{"names": ["remote_addr", "fuzz"]}""" ]
      "fuzz-resp", [ "resp", "{}" ]
      "fuzz-throw", [ "throw", "" ] ]

let private confs =
    Gen.elements (
        (fuzzRoutes |> List.map snd)
        @ [ [ "picky", "{}" ] // rejected: SERVICE_UNAVAILABLE
            [ "no-such-plugin", "{}" ]
            [ "stop", "{not json" ] ]
    )

/// Valid messages: anything the schema allows, and calls aimed at live tokens.
let private validMessage (tokens: uint32[]) : Gen<ApisixMessage> =
    let token = Gen.frequency [ 4, Gen.elements tokens; 1, Generators.u32 ]

    Gen.frequency
        [ 2, Generators.apisixMessage
          2,
          Gen.map2
              (fun conf (key: int) ->
                  PrepareConfReq
                      { Conf = [| for n, v in conf -> TextEntry.Set(n, v) |]
                        Key = $"fuzz-key-{key}" })
              confs
              (Gen.choose (0, 199))
          4, Gen.map2 (fun (r: HttpReqCall.Req) t -> HttpReqCallReq { r with ConfToken = t }) Generators.httpReqCallReq token
          2, Gen.map2 (fun (r: HttpRespCall.Req) t -> HttpRespCallReq { r with ConfToken = t }) Generators.httpRespCallReq token ]
    |> Gen.resize 12

let private randomBytes (length: int) (seed: int) =
    let a = Array.zeroCreate<byte> length
    System.Random(seed).NextBytes a
    a

/// Frame types, mostly the ones that exist.
let private frameType = Gen.frequency [ 6, Gen.choose (0, 4); 1, Gen.choose (5, 255) ] |> Gen.map byte

/// Values that break a uoffset, a soffset, a vector or string length at `at` in a body of `n` bytes.
let private hostileU32 (n: int) (at: int) =
    Gen.frequency
        [ 6,
          Gen.elements
              [ 0u // points at itself; a table that is its own vtable
                0xFFFFFFFFu
                0x7FFFFFFFu
                0x80000000u
                0x40000000u // 4-byte elements: overflows a 32-bit size to 0
                0x40000001u
                uint32 (n - at - 3) // just past the end
                uint32 (n - at) // the end
                uint32 (-at) // back to the start (a soffset)
                uint32 (-4) // a soffset into the table itself
                1u
                2u
                3u ]
          1, Generators.u32 ]

let private hostileU16 (n: int) (at: int) =
    Gen.frequency
        [ 4, Gen.elements [ 0; 1; 2; 3; 0xFFFF; 0xFFFE; 0x8000; (n - at) &&& 0xFFFF; 4 ]
          1, Gen.choose (0, 0xFFFF) ]

/// Sequences that are not UTF-8.
let private notUtf8 =
    [ [| 0x80uy |]
      [| 0xFFuy |]
      [| 0xC0uy; 0xAFuy |]
      [| 0xE0uy; 0x80uy; 0xAFuy |]
      [| 0xEDuy; 0xA0uy; 0x80uy |]
      [| 0xF4uy; 0x90uy; 0x80uy; 0x80uy |]
      [| 0xE2uy; 0x82uy |] ]

/// A copy of `body` with `count` values from `value` written at places drawn by `place`.
let private writes (count: Gen<int>) (place: Gen<int>) (value: int -> Gen<'V>) (write: byte[] -> int -> 'V -> unit) (body: byte[]) =
    let apply (places: int list) (values: 'V list) =
        let c = Array.copy body
        List.iter2 (write c) places values
        c

    gen {
        let! k = count
        let! places = Gen.listOfLength k place
        let! values = places |> List.map value |> Gen.sequenceToList
        return apply places values
    }

/// A valid frame, then one change to it.
let private mutatedValid (tokens: uint32[]) : Gen<Case> =
    validMessage tokens
    |> Gen.bind (fun message ->
        let f = encode message
        let t = f[0]
        let body = f[4..]
        let n = body.Length
        let case kind (bytes: byte[]) = { Kind = kind; Bytes = bytes }
        let aligned k = Gen.choose (0, max 0 (n / k - 1)) |> Gen.map (fun i -> k * i)

        Gen.frequency
            [ 3, Gen.constant (case "valid" f)
              2,
              frameType
              |> Gen.map (fun other -> if other = t then 200uy else other)
              |> Gen.map (fun other -> case "wrong frame type" (frameOf other body))
              2,
              Gen.frequency [ 3, Gen.choose (1, 64); 1, Gen.choose (65, 0xFFFFFF - n) ]
              |> Gen.map (fun more -> case "length longer than the body" (Array.append (header t (n + more)) body))
              2,
              Gen.choose (1, max 1 n)
              |> Gen.map (fun less -> case "length shorter than the body" (Array.append (header t (max 0 (n - less))) body))
              2, Gen.choose (0, max 0 (n - 1)) |> Gen.map (fun cut -> case "body truncated" (frameOf t body[.. cut - 1]))
              1, Gen.choose (1, f.Length - 1) |> Gen.map (fun cut -> case "frame cut short" f[.. cut - 1])
              3,
              writes (Gen.choose (1, 8)) (Gen.choose (0, 8 * f.Length - 1)) (fun _ -> Gen.constant ()) (fun c bit () -> c[bit / 8] <- c[bit / 8] ^^^ (1uy <<< bit % 8)) f
              |> Gen.map (case "bit flips")
              2,
              writes (Gen.choose (1, 8)) (Gen.choose (0, max 0 (n - 1))) (fun _ -> Gen.choose (0, 255)) (fun c at v -> if at < c.Length then c[at] <- byte v) body
              |> Gen.map (fun b -> case "bytes overwritten" (frameOf t b))
              if n >= 4 then
                  4,
                  writes (Gen.choose (1, 3)) (aligned 4) (hostileU32 n) (fun c at v -> BinaryPrimitives.WriteUInt32LittleEndian(Span(c, at, 4), v)) body
                  |> Gen.map (fun b -> case "offset, length or count out of range" (frameOf t b))

                  2,
                  writes (Gen.choose (1, 2)) (aligned 4) (fun _ -> Gen.elements [ 0u; uint32 (-4); uint32 (-8) ]) (fun c at v ->
                      BinaryPrimitives.WriteUInt32LittleEndian(Span(c, at, 4), v)) body
                  |> Gen.map (fun b -> case "self or cyclic offsets" (frameOf t b))

                  2,
                  writes (Gen.choose (1, 3)) (aligned 2) (hostileU16 n) (fun c at v -> BinaryPrimitives.WriteUInt16LittleEndian(Span(c, at, 2), uint16 v)) body
                  |> Gen.map (fun b -> case "vtable entries and sizes" (frameOf t b))
              // Over a letter, which in these messages is almost always inside a string.
              let letters = [ for i in 0 .. n - 1 do if body[i] >= 0x61uy && body[i] <= 0x7Auy then i ]

              if not letters.IsEmpty then
                  3,
                  Gen.map2
                      (fun at (bad: byte[]) ->
                          let c = Array.copy body
                          Array.blit bad 0 c at (min bad.Length (n - at))
                          case "invalid UTF-8" (frameOf t c))
                      (Gen.elements letters)
                      (Gen.elements notUtf8)
              1,
              Gen.map2 (fun length seed -> case "trailing garbage" (frameOf t (Array.append body (randomBytes length seed)))) (Gen.choose (1, 256)) (Gen.choose (0, Int32.MaxValue))
              1,
              Gen.map2 (fun length seed -> case "valid frame then garbage" (Array.append f (randomBytes length seed))) (Gen.choose (1, 64)) (Gen.choose (0, Int32.MaxValue)) ])

/// Bytes from nowhere: a truthful header over random bytes, or random bytes throughout.
let private noise: Gen<Case> =
    Gen.frequency
        [ 3,
          Gen.map3
              (fun t length seed -> { Kind = "random body"; Bytes = frameOf t (randomBytes length seed) })
              frameType
              (Gen.frequency [ 8, Gen.choose (0, 256); 2, Gen.choose (257, 4096); 1, Gen.choose (4097, 65536) ])
              (Gen.choose (0, Int32.MaxValue))
          1, Gen.map2 (fun length seed -> { Kind = "random bytes"; Bytes = randomBytes length seed }) (Gen.choose (1, 512)) (Gen.choose (0, Int32.MaxValue))
          1, Gen.map (fun t -> { Kind = "empty body"; Bytes = header t 0 }) frameType ]

/// A vector of `count` entries that all point at one entry with a long name (reading each anew
/// multiplies the frame), sometimes claiming a huge element count.
let private sharedEntries: Gen<Case> =
    let build (frameType: byte) (count: int) (nameLength: int) (claimed: uint32 voption) =
        use b = new FrameBuilder()
        b.Begin()
        // The slot of PrepareConf.Req.conf, HTTPReqCall.Req.headers, HTTPRespCall.Req.headers.
        let slots, slot = if frameType = 1uy then 2, 0 elif frameType = 2uy then 7, 5 else 4, 2
        let name = b.String(String('x', nameLength))
        b.StartTable Schema.TextEntry.Fields
        b.Offset(Schema.TextEntry.Name, name)
        let shared = b.EndTable()
        Array.fill (b.Elements count) 0 count shared
        let vectorOffset = b.Vector count
        b.StartTable slots
        b.Offset(slot, vectorOffset)
        let root = b.EndTable()

        let f =
            match b.Finish(LanguagePrimitives.EnumOfValue frameType, root) with
            | Ok f -> f.ToArray()
            | Error n -> failwithf "%d" n

        // The builder counts offsets from the end of the body, which is the end of the frame.
        let vector = f.Length - vectorOffset

        match claimed with
        | ValueSome c ->
            BinaryPrimitives.WriteUInt32LittleEndian(Span(f, vector, 4), c)
            { Kind = "huge vector count"; Bytes = f }
        | ValueNone -> { Kind = "entries sharing one table"; Bytes = f }

    Gen.map4
        build
        (Gen.elements [ 1uy; 2uy; 4uy ])
        (Gen.choose (2, 2000))
        (Gen.choose (0, 4000))
        (Gen.frequency [ 3, Gen.constant ValueNone; 1, Gen.elements [ 0xFFFFFFFFu; 0x7FFFFFFFu; 0x40000000u; 0x01000000u ] |> Gen.map ValueSome ])

/// Every kind of hostile input.
let fuzzCase (tokens: uint32[]) : Gen<Case> =
    Gen.frequency [ 16, mutatedValid tokens; 3, noise; 1, sharedEntries ]

// ---- what each input must get ----

type private Expected =
    /// A frame the runner cannot serve: BAD_REQUEST, then the connection closes.
    | Rejected
    /// A call APISIX could make: its answer (or an error frame for it).
    | Answer of ApisixMessage
    /// Not exactly one frame: whatever frames come must be valid, and the connection must close
    /// once the client stops sending.
    | Unknown

let private expectation (bytes: byte[]) =
    if bytes.Length < 4 || declaredLength bytes <> bytes.Length - 4 then
        Unknown
    else
        match bytes[0] with
        | 1uy
        | 2uy
        | 4uy ->
            match Decode.apisixMessage (LanguagePrimitives.EnumOfValue bytes[0]) (ReadOnlySpan(bytes, 4, bytes.Length - 4)) with
            | Ok m -> Answer m
            | Error _ -> Rejected
        | _ -> Rejected

/// Whether `answer` is a right final answer to `request`.
let private fits (request: ApisixMessage) (answer: RunnerMessage) =
    match request, answer with
    | PrepareConfReq _, PrepareConfResp _ -> true
    | PrepareConfReq _, ErrResp Err.Code.SERVICE_UNAVAILABLE -> true
    | (HttpReqCallReq _ | HttpRespCallReq _), ErrResp(Err.Code.CONF_TOKEN_NOT_FOUND | Err.Code.SERVICE_UNAVAILABLE) -> true
    | HttpReqCallReq r, HttpReqCallResp a -> a.Id = r.Id
    | HttpRespCallReq r, HttpRespCallResp a -> a.Id = r.Id
    | _ -> false

let private outcomeOf (answer: RunnerMessage) =
    match answer with
    | ErrResp code -> string code
    | PrepareConfResp _ -> "token"
    | HttpReqCallResp _
    | HttpRespCallResp _ -> "answered"
    | ExtraInfoReq _ -> "ExtraInfo request"

/// Counts of outcomes by kind of input, and the failures (the first 50).
[<Sealed>]
type private Tally() =
    let counts = ConcurrentDictionary<string, int>()
    let failures = ConcurrentQueue<string>()
    let mutable failed = 0

    member _.Count(kind: string, outcome: string) =
        counts.AddOrUpdate($"{kind} -> {outcome}", 1, (fun _ n -> n + 1)) |> ignore

    member _.Fail(message: string) =
        if Interlocked.Increment &failed <= 50 then
            failures.Enqueue message

    member _.Failed = failed
    member _.Failures = List.ofSeq failures

    member _.Counts = counts |> Seq.map (fun kv -> kv.Key, kv.Value) |> Seq.sortBy fst |> List.ofSeq

let private decoded (frameType: FrameType) (body: byte[]) = Decode.runnerMessage frameType (ReadOnlySpan body)

/// Reads until the runner closes the connection: every frame must decode, and nothing may follow BAD_REQUEST.
let private drain (conn: RawConnection) (tally: Tally) (what: unit -> string) : Task<string> =
    task {
        let mutable frames = 0
        let mutable rejected = false
        let mutable outcome = ValueNone

        while outcome.IsNone do
            match! conn.ReadAsync patience with
            | Got(t, body) ->
                match decoded t body with
                | Error e ->
                    tally.Fail $"{what ()}: undecodable frame type {byte t} from the runner: {e.Describe()}"
                    outcome <- ValueSome "undecodable answer"
                | Ok m ->
                    if rejected then
                        tally.Fail $"{what ()}: {m} after BAD_REQUEST"

                    rejected <- rejected || m = ErrResp Err.Code.BAD_REQUEST
                    frames <- frames + 1
            | Closed -> outcome <- ValueSome(if rejected then "BAD_REQUEST, closed" elif frames > 0 then "answered, closed" else "closed")
            | ClosedMidFrame n ->
                tally.Fail $"{what ()}: the runner closed the connection {n} bytes into a frame"
                outcome <- ValueSome "closed mid-frame"
            | Silent ->
                tally.Fail $"{what ()}: the connection is still open {patience} after the client stopped sending"
                outcome <- ValueSome "silent"

        return outcome.Value
    }

/// An ExtraInfo exchange started by a fuzz call: replies, mostly valid, sometimes hostile. Whether
/// the connection can go on.
let private exchange (conn: RawConnection) (rnd: System.Random) (tally: Tally) (kind: string) (request: ApisixMessage) (what: unit -> string) =
    task {
        let mutable keep = ValueNone

        while keep.IsNone do
            if rnd.Next 4 = 0 then
                // A reply that is not one: the runner must drop the call, not answer it wrongly.
                let reply =
                    if rnd.Next 2 = 0 then frameOf 3uy (randomBytes (rnd.Next 64) (rnd.Next()))
                    else encode (HttpReqCallReq(httpRequest 1u 1u))

                let! _ = conn.SendAsync reply
                conn.ShutdownSend()
                let! outcome = drain conn tally what
                tally.Count(kind, $"ExtraInfo, hostile reply, {outcome}")
                keep <- ValueSome false
            else
                let result = if rnd.Next 2 = 0 then ValueSome "10.0.0.1"B else ValueNone
                let! _ = conn.SendAsync(encode (ExtraInfoResp { Result = result }))

                match! conn.ReadAsync patience with
                | Got(t, body) ->
                    match decoded t body with
                    | Ok(ExtraInfoReq _) -> ()
                    | Ok answer when fits request answer ->
                        tally.Count(kind, $"ExtraInfo, {outcomeOf answer}")
                        keep <- ValueSome true
                    | other ->
                        tally.Fail $"{what ()}: after ExtraInfo, answered {other}"
                        keep <- ValueSome false
                | other ->
                    tally.Fail $"{what ()}: after an ExtraInfo reply, {other}"
                    keep <- ValueSome false

        return keep.Value
    }

/// Sends one input and checks what comes back; whether the connection can carry the next one.
let private play (conn: RawConnection) (rnd: System.Random) (tally: Tally) (case: Case) : Task<bool> =
    task {
        let what () = $"{case.Kind} [{hex case.Bytes}]"

        match expectation case.Bytes with
        | Unknown ->
            let! _ = conn.SendAsync case.Bytes
            conn.ShutdownSend()
            let! outcome = drain conn tally what
            tally.Count(case.Kind, outcome)
            return false
        | expected ->
            let! _ = conn.SendAsync case.Bytes

            match! conn.ReadAsync patience with
            | Silent ->
                tally.Fail $"{what ()}: neither an answer nor a close within {patience}"
                return false
            | ClosedMidFrame n ->
                tally.Fail $"{what ()}: the runner closed the connection {n} bytes into a frame"
                return false
            | Closed ->
                tally.Fail $"{what ()}: closed without an answer"
                return false
            | Got(t, body) ->
                match decoded t body, expected with
                | Error e, _ ->
                    tally.Fail $"{what ()}: undecodable frame type {byte t} from the runner: {e.Describe()}"
                    return false
                | Ok(ErrResp Err.Code.BAD_REQUEST), _ ->
                    if expected <> Rejected then
                        tally.Fail $"{what ()}: BAD_REQUEST for a frame that decodes"

                    match! conn.ReadAsync patience with
                    | Closed -> tally.Count(case.Kind, "BAD_REQUEST, closed")
                    | other -> tally.Fail $"{what ()}: after BAD_REQUEST, {other} instead of a close"

                    return false
                | Ok answer, Rejected ->
                    tally.Fail $"{what ()}: answered {answer} to a frame that does not decode"
                    return false
                | Ok(ExtraInfoReq _), Answer request -> return! exchange conn rnd tally case.Kind request what
                | Ok answer, Answer request when fits request answer ->
                    tally.Count(case.Kind, outcomeOf answer)
                    return true
                | Ok answer, _ ->
                    tally.Fail $"{what ()}: wrong answer {answer}"
                    return false
    }

/// One fuzzing connection (reconnecting after each close): `count` inputs drawn from `seed`, or
/// fewer: every fuzzing connection stops at the first input handled wrong, so that a broken runner
/// fails the test at once, not after every input has waited out its patience.
let private fuzzer (socket: string) (tally: Tally) (tokens: uint32[]) (count: int) (seed: uint64) =
    task {
        let rnd = System.Random(int (seed % 2147483647UL))
        let generator = fuzzCase tokens
        let mutable conn: RawConnection = null
        let mutable sent = 0
        let mutable chunk = 0UL

        while sent < count && tally.Failed = 0 do
            let cases = Gen.sampleWithSeed (Rnd(seed * 1_000_003UL + chunk)) 30 (min 64 (count - sent)) generator |> Seq.toArray
            chunk <- chunk + 1UL
            let mutable i = 0

            while i < cases.Length && tally.Failed = 0 do
                if isNull conn then
                    conn <- new RawConnection(socket)

                let! keep = play conn rnd tally cases[i]

                if not keep then
                    (conn :> IDisposable).Dispose()
                    conn <- null

                i <- i + 1
                sent <- sent + 1

        if not (isNull conn) then
            (conn :> IDisposable).Dispose()
    }

let private controlStop id =
    HttpReqCallResp
        { Id = id
          Action = HttpReqCall.Stop { Status = 403us; Headers = [||]; Body = "control"B } }

let private controlRewrite id =
    HttpReqCallResp
        { Id = id
          Action =
            HttpReqCall.Rewrite
                { Path = "/control"
                  Headers = [| TextEntry.Set("x-control", "1") |]
                  Args = [||]
                  RespHeaders = [||]
                  Body = [||] } }

/// Correct calls on one connection until `stop`: each answer must be exactly right. The calls made.
let private control (socket: string) (stop: CancellationToken) : Task<int> =
    task {
        use client = new Client(socket)
        let stopConf = [ "stop", """{"status": 403, "body": "control"}""" ]
        let rewriteConf = [ "rewrite", """{"path": "/control", "headers": {"x-control": "1"}}""" ]
        let! stopToken = client.PrepareAsync(stopConf, "control-stop")
        let! rewriteToken = client.PrepareAsync(rewriteConf, "control-rewrite")
        let mutable calls = 0

        while not stop.IsCancellationRequested do
            let id = uint32 calls
            let! answer = client.RequestAsync(httpRequest stopToken id, unset)
            same (controlStop id) answer
            let! answer = client.RequestAsync(httpRequest rewriteToken (id + 1u), unset)
            same (controlRewrite (id + 1u)) answer

            if calls % 100 = 0 then
                let! again = client.PrepareAsync(stopConf, "control-stop")
                same stopToken again

            calls <- calls + 2

        return calls
    }

let private envInt (name: string) (fallback: int) =
    match Environment.GetEnvironmentVariable name with
    | null
    | "" -> fallback
    | text -> int text

/// Runs alone, after the parallel tests: it loads the machine and measures the runner's memory.
[<Tests>]
let tests =
    testSequenced
    <| testList "Process.Fuzz" [
        // Within 2 minutes and 10 ms a frame: 10,000 frames take 5 s on an idle machine, up to 36 s on a loaded one.
        testTaskWithin
            (TimeSpan.FromSeconds(120.0 + 0.01 * float (envInt "FUZZ_FRAMES" 10_000)))
            "hostile frames from 32 connections get BAD_REQUEST and a close or a valid answer; the runner lives on and gives back what it took"
        <| fun () ->
            task {
                let frames = envInt "FUZZ_FRAMES" 10_000
                let connections = 32

                let seed =
                    match Environment.GetEnvironmentVariable "FUZZ_SEED" with
                    | null
                    | "" -> uint64 (Stopwatch.GetTimestamp() % 1_000_000_000L)
                    | text -> UInt64.Parse text

                note $"FUZZ_FRAMES={frames} FUZZ_SEED={seed}"
                use sandbox = new Sandbox()
                use runner = Runner.Ready sandbox.Socket
                let probe = ProcessProbe.Of sandbox.Socket

                let! tokens =
                    task {
                        use setup = new Client(sandbox.Socket)
                        let tokens = ResizeArray<uint32>()

                        for key, conf in fuzzRoutes do
                            let! token = setup.PrepareAsync(conf, key)
                            tokens.Add token

                        return tokens.ToArray()
                    }

                let tally = Tally()
                // Warm up (JIT, pools), then take the baseline. The warm-up's inputs are checked too.
                let warmup = Tally()
                do! fuzzer sandbox.Socket warmup tokens 500 (seed + 999_999UL)
                Expect.equal warmup.Failed 0 ($"inputs of the warm-up were not handled right:\n" + String.Join("\n", warmup.Failures))
                let! baseSockets = probe.SettledSockets()
                let baseRss, baseFds = probe.RssMiB, probe.Fds
                note $"baseline after 500 warm-up frames: {probe.Describe()}"

                use stop = new CancellationTokenSource()
                let controlling = control sandbox.Socket stop.Token
                let clock = Stopwatch.StartNew()
                let share n = frames / connections + (if n < frames % connections then 1 else 0)

                let fuzzing =
                    Task.WhenAll [ for n in 0 .. connections - 1 -> fuzzer sandbox.Socket tally tokens (share n) (seed + uint64 n) ]

                let! _ = Task.WhenAny(fuzzing :> Task, controlling :> Task)
                stop.Cancel()
                // A control failure ends the test at once, with its own message.
                let! controlCalls = controlling
                let! _ = fuzzing
                let elapsed = clock.Elapsed
                note $"{frames} frames in {elapsed.TotalSeconds:F1} s: {float frames / elapsed.TotalSeconds:F0} frames/s; {controlCalls} control calls, all answered right"
                note $"right after: {probe.Describe()}"

                for kind, n in tally.Counts do
                    note $"  %7d{n}  {kind}"

                Expect.isFalse runner.HasExited (runner.Describe())
                Expect.isTrue (tally.Failed = 0) ($"{tally.Failed} inputs were not handled right:\n" + String.Join("\n", tally.Failures))
                Expect.isTrue (controlCalls > 0) "the control connection made no call"

                // The fuzz connections are closed: the runner lets go of them and of what they took.
                let releasing = Stopwatch.StartNew()
                let! released = within (TimeSpan.FromSeconds 20.0) (fun () -> probe.Sockets <= baseSockets)
                let! fdsBack = within (TimeSpan.FromSeconds 20.0) (fun () -> probe.Fds <= baseFds + 4)
                let rss = probe.RssMiB
                note $"after release ({releasing.ElapsedMilliseconds} ms): {probe.Describe()} (baseline RSS %.1f{baseRss} MiB, {baseFds} fds, {baseSockets} sockets)"
                Expect.isTrue released $"the runner still holds {probe.Sockets - baseSockets} more sockets than before the fuzz"
                Expect.isTrue fdsBack $"the runner has {probe.Fds} open fds, {baseFds} before the fuzz"
                Expect.isTrue (rss <= baseRss + 64.0) $"RSS grew from %.1f{baseRss} to %.1f{rss} MiB"

                // Nothing failed inside the runner, and nothing from the wire reached the log raw.
                let output = runner.Output
                let says (text: string) = output |> List.exists (fun l -> l.Contains(text, StringComparison.Ordinal))
                Expect.isFalse (says "A connection failed unexpectedly") "the runner logged a failed connection"
                Expect.isFalse (says "could not be encoded") "the runner logged an answer it could not encode"
                Expect.isFalse (output |> List.exists (Seq.exists unsafeInLog)) "a line of the runner's output holds a raw control character"
                Expect.isFalse runner.HasExited (runner.Describe())
            }
    ]
