/// The memory budget (`Runner:MaxBufferedBytes`) and memory given back after a burst, on the
/// sample runner as a process: the burst of issue 10, 64 connections each sending one call of
/// 16,000,124 bytes at once, with the runner's RSS before, at its peak and after; and small calls
/// on other connections answered while the burst waits for memory.
module Apisix.Runner.Tests.Process.MemoryTests

open System
open System.Buffers.Binary
open System.Diagnostics
open System.Threading
open System.Threading.Tasks
open Expecto
open Apisix.Runner
open Apisix.Runner.Tests.Support.ApisixClient
open Apisix.Runner.Tests.Support.RunnerProcess
open Apisix.Runner.Tests.Support.ProcessProbe
open Apisix.Runner.Tests.Support.RawConnection
open Apisix.Runner.Tests.Support.Expectations

/// Connections of the burst, each sending one call.
let private connections = 64

/// Bytes of each call of the burst, its 4-byte header included (issue 10's figure).
let private frameBytes = 16_000_124

let private MiB = 1048576L

/// What RSS may hold at the peak beyond the runner's idle RSS and the budget: large arrays let go
/// and not yet collected, the GC's bookkeeping of its large object regions, the burst's answers,
/// the stacks of threads the pool adds. Measured: 10 to 40 MiB (docs/reliability.md).
let private allowance = 64L * MiB

/// The limit of a test that starts a runner and sends it a gigabyte.
let private limit = TimeSpan.FromMinutes 2.0

/// The highest RSS of a process, sampled every 5 ms on a thread of its own until disposed.
[<Sealed>]
type private PeakRss(probe: ProcessProbe) =
    let stop = new ManualResetEventSlim(false)
    let mutable peak = probe.RssMiB
    let mutable samples = 0
    let mutable failed = 0
    let mutable lastError = ""

    let sample () =
        while not (stop.Wait 5) do
            // A failed read is counted, not taken as 0 MiB: a broken reader would pass the peak
            // check with nothing measured.
            try
                let now = probe.RssMiB
                samples <- samples + 1
                if now > peak then peak <- now
            with e ->
                failed <- failed + 1
                lastError <- e.Message

    let thread = Thread(sample, IsBackground = true)
    do thread.Start()

    /// The highest RSS seen so far, in MiB.
    member _.Peak = peak

    /// RSS reads that succeeded so far.
    member _.Samples = samples

    /// RSS reads that failed so far, and the last failure's message.
    member _.Failed = failed
    member _.LastError = lastError

    interface IDisposable with
        member _.Dispose() =
            stop.Set()
            thread.Join()
            stop.Dispose()

/// The burst's call, built once (a gigabyte of copies would load the test more than the runner),
/// and where its call id lies: each connection sends its own id in a copy of the first 4 KiB, then
/// the shared rest.
let private burstCall (token: uint32) =
    let marker = 0x5EEDB0A7u
    let frame = callOfSize token marker (frameBytes - Frame.HeaderLength)
    let bytes = Array.zeroCreate<byte> 4
    BinaryPrimitives.WriteUInt32LittleEndian(Span bytes, marker)
    let at = ReadOnlySpan(frame, 0, 4096).IndexOf(ReadOnlySpan bytes)

    if at < 0 then
        failwith "the call id is not in the first 4 KiB of the frame"

    frame, at

/// Sends the burst's call with call id `id`; false when the runner closed the connection.
let private sendCall (frame: byte[], at: int) (connection: RawConnection) (id: uint32) =
    task {
        let head = Array.sub frame 0 4096
        BinaryPrimitives.WriteUInt32LittleEndian(Span(head, at, 4), id)
        let! first = connection.SendAsync head
        let! rest = connection.SendAsync(ReadOnlyMemory(frame, 4096, frame.Length - 4096))
        return first && rest
    }

/// The answer of `say` {"body": "burst"} to call `id`.
let private said (id: uint32) =
    HttpReqCallResp
        { Id = id
          Action =
            HttpReqCall.Stop
                { Status = 200us
                  Headers = [| TextEntry.Set("X-Resp-A6-Runner", "DotNet") |]
                  Body = "burst"B } }

/// What one burst showed.
type private Burst =
    { /// RSS before the burst, the runner idle after one call (MiB).
      Idle: float
      /// The highest RSS sampled during the burst (MiB).
      Peak: float
      /// RSS once back within 1.5 times idle, or after 30 s (MiB).
      After: float
      /// From the last answer until RSS was back within 1.5 times idle; None when it was not within 30 s.
      Returned: TimeSpan option
      /// From the first byte sent until the last answer.
      Elapsed: TimeSpan
      /// When each call of the burst was answered, from the first byte sent.
      Answered: TimeSpan[]
      /// Small calls on another connection during the burst: when each was answered, and how long it took.
      Small: (TimeSpan * TimeSpan) list
      /// The runner's output.
      Output: string list }

/// Starts `program` with `budget`, sends the burst while a small call at a time goes on another
/// connection, then waits (30 s at most) for RSS to come back within 1.5 times idle.
let private burst (program: string) (budget: int64) : Task<Burst> =
    task {
        use sandbox = new Sandbox()
        use runner = Runner.Ready(sandbox.Socket, [ "Runner__MaxBufferedBytes", string budget ], program)
        let probe = ProcessProbe.Of sandbox.Socket
        use setup = new Client(sandbox.Socket)
        let! token = setup.PrepareAsync([ "say", """{"body": "burst"}""" ], "say")
        let! first = setup.RequestAsync(httpRequest token 1u, unset)
        same (said 1u) first
        let call = burstCall token
        do! Task.Delay 1000
        let idle = probe.RssMiB
        let big = [| for _ in 1..connections -> new RawConnection(sandbox.Socket) |]
        use small = new Client(sandbox.Socket)
        let clock = Stopwatch.StartNew()
        let answered = Array.zeroCreate<TimeSpan> connections
        let smallCalls = ResizeArray<TimeSpan * TimeSpan>()
        let mutable peak = 0.0

        try
            use sampler = new PeakRss(probe)

            let one (i: int) =
                task {
                    let id = uint32 (1000 + i)
                    let! sent = sendCall call big[i] id
                    Expect.isTrue sent $"call {id} of the burst was sent whole"
                    let! answer = big[i].ReadAsync(TimeSpan.FromSeconds 60.0)
                    answered[i] <- clock.Elapsed
                    same (said id) (message answer)
                }

            let all = Task.WhenAll [| for i in 0 .. connections - 1 -> one i |]
            let mutable id = 2u

            while not all.IsCompleted do
                let took = Stopwatch.StartNew()
                let! answer = small.RequestAsync(httpRequest token id, unset)
                same (said id) answer
                smallCalls.Add((clock.Elapsed, took.Elapsed))
                id <- id + 1u

            let! _ = all
            Expect.equal sampler.Failed 0 $"reads of the runner's RSS that failed while sampling the peak ({sampler.Samples} succeeded; the last failure: {sampler.LastError})"
            Expect.isGreaterThan sampler.Samples 0 "RSS samples taken during the burst"
            peak <- sampler.Peak
        finally
            for c in big do
                (c :> IDisposable).Dispose()

        let elapsed = Array.max answered
        let back = Stopwatch.StartNew()
        let! returned = within (TimeSpan.FromSeconds 30.0) (fun () -> probe.RssMiB <= 1.5 * idle)

        return
            { Idle = idle
              Peak = peak
              After = probe.RssMiB
              Returned = (if returned then Some back.Elapsed else None)
              Elapsed = elapsed
              Answered = answered
              Small = List.ofSeq smallCalls
              Output = runner.Output }
    }

let private describe (b: Burst) =
    let returned =
        match b.Returned with
        | Some t -> $"back within 1.5x idle %.1f{t.TotalSeconds} s after the last answer"
        | None -> "not back within 1.5x idle after 30 s"

    $"RSS idle %.1f{b.Idle} MiB, peak %.1f{b.Peak} MiB, after %.1f{b.After} MiB ({returned}); the burst answered in %.2f{b.Elapsed.TotalSeconds} s, {b.Small.Length} small calls meanwhile"

/// The burst on `program` with a budget: every call answered, the peak within the budget, memory back.
let private burstWithin (program: Lazy<string>) (budget: int64) () =
    task {
        let! b = burst program.Value budget
        note $"{connections} calls of {frameBytes} bytes, Runner:MaxBufferedBytes {budget / MiB} MiB: {describe b}"
        let bound = b.Idle + float (budget + allowance) / float MiB

        Expect.isLessThanOrEqual
            b.Peak
            bound
            $"RSS at the peak, %.1f{b.Peak} MiB, over idle + budget + allowance (%.1f{bound} MiB): {describe b}"

        Expect.isSome b.Returned $"RSS came back within 1.5 times idle within 30 s: {describe b}"
    }

[<Tests>]
let tests =
    testSequenced
    <| testList "Process.Memory" [
        testTaskWithin limit "a burst of 64 calls of 16,000,124 bytes on the Native AOT runner: all answered, RSS within idle + budget, back within 1.5x idle in 30 s"
        <| burstWithin aotSampleRunner (256L * MiB)

        testTaskWithin limit "the same burst on the JIT runner: all answered, RSS within idle + budget, back within 1.5x idle in 30 s"
        <| burstWithin sampleRunnerDll (256L * MiB)

        // Two calls of the burst fit the budget at a time: the other 62 wait, unread, while small
        // calls, which need no budget, go on.
        testTaskWithin limit "while the burst waits for memory, small calls on another connection are answered" <| fun () ->
            task {
                let budget = 2L * int64 frameBytes + MiB
                let! b = burst aotSampleRunner.Value budget
                let last = Array.max b.Answered
                let during = b.Small |> List.filter (fun (at, _) -> at < last)
                let longest = if during.IsEmpty then TimeSpan.Zero else during |> List.map snd |> List.max

                note
                    $"budget {budget} bytes (2 calls of the burst): {during.Length} small calls answered before the burst's last answer at %.2f{last.TotalSeconds} s, the longest in %.0f{longest.TotalMilliseconds} ms; {describe b}"

                Expect.exists
                    b.Output
                    (fun l -> l.Contains("The memory budget is in use", StringComparison.Ordinal))
                    $"the runner said that frames waited for memory: {String.Join('\n', b.Output)}"

                Expect.isGreaterThanOrEqual during.Length 10 $"small calls answered while the burst waited: {describe b}"
                // A liveness bound, generous for a loaded 2-core machine: a small call that waited
                // for the burst would wait for seconds, in line behind 62 calls of 16 MB.
                Expect.isLessThan longest.TotalMilliseconds 2000.0 $"the longest small call during the burst: {describe b}"
                let bound = b.Idle + float (budget + allowance) / float MiB
                Expect.isLessThanOrEqual b.Peak bound $"RSS at the peak over idle + budget + allowance (%.1f{bound} MiB): {describe b}"
            }
    ]
