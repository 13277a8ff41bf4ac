/// Runner processes for the process-level and end-to-end tests: the TestHost (or any runner)
/// started the way APISIX starts it, on a socket in a temporary directory, with its output captured.
module Apisix.Runner.Tests.Support.RunnerProcess

open System
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Reflection
open System.Runtime.ExceptionServices
open System.Runtime.InteropServices
open System.Threading
open System.Threading.Tasks
open System.Collections.Concurrent
open Expecto

/// The repository root: the first directory above the test assembly that holds Runner.sln.
let repoRoot =
    lazy
        let rec up (dir: DirectoryInfo) =
            if isNull dir then failwith $"no Runner.sln above {AppContext.BaseDirectory}"
            elif File.Exists(Path.Combine(dir.FullName, "Runner.sln")) then dir.FullName
            else up dir.Parent

        up (DirectoryInfo AppContext.BaseDirectory)

/// A runner built alongside this test assembly, in the same configuration (Debug or Release).
let private built (project: string) (dll: string) =
    lazy
        let configuration = Assembly.GetExecutingAssembly().GetCustomAttribute<AssemblyConfigurationAttribute>().Configuration
        let path = Path.Combine(repoRoot.Value, project, "bin", configuration, "net10.0", dll)

        if not (File.Exists path) then
            failwith $"{path} is missing: build the solution first"

        path

let testHostDll = built (Path.Combine("tests", "Apisix.Runner.TestHost")) "Apisix.Runner.TestHost.dll"

let sampleRunnerDll = built (Path.Combine("samples", "SampleRunner")) "SampleRunner.dll"

/// The sample runner as a Native AOT binary, which `dotnet fsi build.fsx test` (and `publish`) makes.
let aotSampleRunner =
    lazy
        let path = Path.Combine(repoRoot.Value, "artifacts", "publish", "aot", "SampleRunner")

        if not (File.Exists path) then
            failwith $"{path} is missing: make it with `dotnet fsi build.fsx publish` (the test target does)"

        path

type Signal =
    | SIGINT = 2
    | SIGTERM = 15
    | SIGCONT = 18
    | SIGSTOP = 19

module private Native =
    [<DllImport("libc", SetLastError = true)>]
    extern int kill(int pid, int signal)

/// Runs a program to completion with `input` on stdin (flatc, the Python clients); its stdout. Fails with its stderr.
let run (program: string) (args: string list) (input: string) =
    let start =
        ProcessStartInfo(program, args, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true)

    use p = Process.Start start
    // Read both pipes while writing, or a large scenario deadlocks on full pipe buffers.
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.StandardInput.Write input
    p.StandardInput.Close()
    p.WaitForExit()

    if p.ExitCode <> 0 then
        failwith $"{program} exited with {p.ExitCode}: {err.Result}"

    out.Result

/// A temporary directory for one test's sockets, removed on Dispose.
[<Sealed>]
type Sandbox() =
    let dir = Directory.CreateTempSubdirectory "a6-"

    /// A path inside the directory.
    member _.Path(name: string) = Path.Combine(dir.FullName, name)

    /// The default socket path.
    member s.Socket = s.Path "runner.sock"

    interface IDisposable with
        member _.Dispose() =
            try
                dir.Delete true
            with :? IOException ->
                ()

/// Whether a unix socket accepts a connection now (the connection is closed at once).
let accepts (path: string) =
    use probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)

    try
        probe.Connect(UnixDomainSocketEndPoint path)
        true
    with :? SocketException ->
        false

/// A runner that did not come to accept connections; its process tree was killed first.
type RunnerNotReady(pid: int, message: string) =
    inherit Exception(message)

    /// The pid the runner had.
    member _.Pid = pid

/// Kills a process and everything it started, and waits (boundedly) until it is reaped. Safe to
/// call on a process that has exited or never started.
let private killTree (p: Process) =
    try
        p.Kill true
    with
    | :? InvalidOperationException
    | :? ComponentModel.Win32Exception -> ()

    try
        p.WaitForExit(TimeSpan.FromSeconds 10.0) |> ignore
    with :? InvalidOperationException ->
        ()

/// Every runner process started and not yet disposed. Whatever a test does (it fails, it hangs,
/// it forgets to dispose), none outlives the test run: what is left here
/// is killed when the tests are over, when the run is interrupted, and when the process exits.
module private Live =
    let runners = ConcurrentDictionary<int, Process>()

    /// The runners meant to serve until the tests end (a fixture shared by several tests).
    let forTheRun = ConcurrentDictionary<int, unit>()

    /// Kills every runner still running; the pids it killed that were not meant to live that long.
    let killAll () =
        [ for pid in List.ofSeq runners.Keys do
              match runners.TryRemove pid with
              | true, p when not p.HasExited ->
                  killTree p
                  if not (forTheRun.ContainsKey pid) then pid
              | _ -> () ]

    let watch =
        lazy
            afterRunTests (fun () ->
                match killAll () with
                | [] -> ()
                | pids -> eprintfn "killed %d runner processes that no test had stopped: %A" pids.Length pids)

            AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> killAll () |> ignore)

/// The runner processes started by one test (the code of one async flow), for its deadline.
[<Sealed; AllowNullLiteral>]
type private TestRunners() =
    let started = ConcurrentBag<Process>()
    member _.Add(p: Process) = started.Add p

    member _.KillAll() =
        for p in started do
            killTree p

let private currentTest = AsyncLocal<TestRunners>()

/// Runs `body` (one test's code), which must be over within `limit`. Past it, fails at once,
/// saying so, and kills the runner processes the body started, so that whatever it still waits on
/// ends too: a test whose runner misbehaves fails instead of holding up the run.
let runWithin (limit: TimeSpan) (body: unit -> Task<unit>) : Task<unit> =
    task {
        let runners = TestRunners()
        currentTest.Value <- runners
        let work = Task.Run<unit>(fun () -> body ())
        let! first = Task.WhenAny(work, Task.Delay limit)

        if obj.ReferenceEquals(first, work) then
            return! work
        else
            runners.KillAll()
            // The body fails once its runners are gone; nobody waits for it any more.
            work.ContinueWith(fun (t: Task<unit>) -> t.Exception |> ignore) |> ignore
            return failtest $"not over within {limit}: failed, and its runner processes were killed"
    }

/// A test that must be over within `limit` (see runWithin). A failed expectation is reported as a
/// failure, not unwrapped from the task as an error.
let testTaskWithin (limit: TimeSpan) (name: string) (body: unit -> Task<unit>) =
    testCaseAsync
        name
        (async {
            try
                do! Async.AwaitTask(runWithin limit body)
            with :? AggregateException as e when e.InnerExceptions.Count = 1 ->
                ExceptionDispatchInfo.Throw e.InnerException
        })

/// The processes whose environment names `socket` as their listen address: a runner started for
/// it and whatever that runner started. After a test, there must be none.
let processesServing (socket: string) =
    let mark = "APISIX_LISTEN_ADDRESS=unix:" + socket

    [ for dir in Directory.EnumerateDirectories "/proc" do
          match Int32.TryParse(Path.GetFileName dir) with
          | true, pid when pid <> Environment.ProcessId ->
              try
                  let environ = File.ReadAllText(Path.Combine(dir, "environ"))

                  if environ.Split('\000') |> Array.contains mark then
                      // A zombie is dead, only not yet reaped by its parent.
                      let stat = File.ReadAllText(Path.Combine(dir, "stat"))
                      if stat[stat.LastIndexOf ')' + 2] <> 'Z' then pid
              with
              | :? IOException
              | :? UnauthorizedAccessException -> ()
          | _ -> () ]

/// A runner process. The environment is the test's own without any runner setting (APISIX_*,
/// Runner__*, Logging__*), plus APISIX's two variables for `socket`, plus `env`, where a null value
/// unsets a variable. Its process tree is killed on Dispose, and by `Ready` when it does not come
/// to accept connections; the few that escape both are killed when the tests end.
[<Sealed>]
type Runner(socket: string, env: (string * string) list, ?program: string) =
    // nginx spawns the runner with default signal dispositions; a shell that ignores SIGINT for its
    // background jobs would otherwise pass that on (exec keeps ignored signals ignored) and SIGINT
    // would do nothing. `env` execs dotnet, so the pid stays the runner's.
    let start =
        let program = defaultArg program testHostDll.Value
        let command = if program.EndsWith ".dll" then [ "dotnet"; program ] else [ program ]

        ProcessStartInfo(
            "/usr/bin/env",
            "--default-signal=INT,TERM" :: command,
            RedirectStandardOutput = true,
            RedirectStandardError = true
        )

    do
        for name in List.ofSeq start.Environment.Keys do
            if [ "APISIX_"; "Runner__"; "Logging__" ] |> List.exists (fun p -> name.StartsWith(p, StringComparison.OrdinalIgnoreCase)) then
                start.Environment.Remove name |> ignore

        for name, value in [ "APISIX_LISTEN_ADDRESS", "unix:" + socket; "APISIX_CONF_EXPIRE_TIME", "3600" ] @ TransportUnderTest.env @ env do
            if isNull value then start.Environment.Remove name |> ignore else start.Environment[name] <- value

    let lines = ResizeArray<string>()
    let p = new Process(StartInfo = start)

    do
        Live.watch.Force()
        p.Start() |> ignore
        Live.runners[p.Id] <- p

        match currentTest.Value with
        | null -> ()
        | test -> test.Add p

    // Dedicated threads rather than BeginOutputReadLine: on Unix an asynchronous pipe read holds a
    // thread-pool thread while it waits, and on a 2-core machine the test's own continuations would
    // then wait for the pool to grow, hundreds of milliseconds.
    let capture (output: StreamReader) =
        let read () =
            let mutable line = output.ReadLine()

            while not (isNull line) do
                lock lines (fun () -> lines.Add line)
                line <- output.ReadLine()

        let t = Thread(read, IsBackground = true)
        t.Start()
        t

    let readers =
        try
            [ capture p.StandardOutput; capture p.StandardError ]
        with _ ->
            killTree p
            Live.runners.TryRemove p.Id |> ignore
            reraise ()

    /// The longest a runner may take to accept connections when nothing says otherwise: generous,
    /// for a loaded 2-core machine.
    static member DefaultReadyWithin = TimeSpan.FromSeconds 15.0

    /// Starts a runner (the TestHost unless `program` names a dll or an executable) on `socket`
    /// and waits until it accepts connections, for at most `readyWithin`. When it does not (it
    /// timed out, exited, or the wait itself failed), its process tree is killed and the error
    /// (RunnerNotReady when the wait ended) says why, with the runner's output.
    static member Ready(socket: string, ?env: (string * string) list, ?program: string, ?readyWithin: TimeSpan) =
        let r = new Runner(socket, defaultArg env [], defaultArg program testHostDll.Value)

        try
            r.WaitReady(defaultArg readyWithin Runner.DefaultReadyWithin)
            r
        with _ ->
            (r :> IDisposable).Dispose()
            reraise ()

    member _.Socket = socket

    /// The runner's pid.
    member _.Pid = p.Id

    /// What it wrote so far to stdout and stderr, in the order read.
    member _.Output: string list = lock lines (fun () -> List.ofSeq lines)

    /// The process and its output, for failure messages.
    member r.Describe() =
        let status = if p.HasExited then $"exited with {p.ExitCode}" else "running"
        let output = String.Join("\n  ", r.Output)
        $"runner pid {p.Id} ({status}), output:\n  {output}"

    /// Waits until the socket accepts a connection, for at most `within` (15 s by default). When
    /// it does not, or the runner exits first, kills the runner's process tree and raises
    /// RunnerNotReady with the output.
    member r.WaitReady(?within: TimeSpan) =
        let within = defaultArg within Runner.DefaultReadyWithin
        let clock = Stopwatch.StartNew()

        while not (accepts socket) do
            if p.HasExited || clock.Elapsed > within then
                let why = if p.HasExited then "exited before it accepted connections" else $"did not accept connections within {within}"
                r.Kill()
                raise (RunnerNotReady(p.Id, $"the runner on {socket} {why}: {r.Describe()}"))

            Thread.Sleep 20

    member _.Signal(signal: Signal) =
        if Native.kill (p.Id, int signal) <> 0 then
            failwith $"kill({p.Id}, {signal}) failed with errno {Marshal.GetLastPInvokeError()}"

    /// Whether the kernel has the process stopped (SIGSTOP): its state in /proc is T.
    member _.IsStopped =
        let stat = File.ReadAllText $"/proc/{p.Id}/stat"
        // The state follows the command name, which is in parentheses and may hold spaces.
        stat[stat.LastIndexOf ')' + 2] = 'T'

    /// The exit code, once the process has exited within `timeout` and its output is all read;
    /// fails with the output otherwise.
    member r.WaitForExit(timeout: TimeSpan) : Task<int> =
        task {
            use expiry = new CancellationTokenSource(timeout)

            try
                do! p.WaitForExitAsync expiry.Token
            with :? OperationCanceledException ->
                failwith $"the runner did not exit within {timeout}: {r.Describe()}"

            for t in readers do
                t.Join timeout |> ignore

            return p.ExitCode
        }

    member _.HasExited = p.HasExited

    /// When this process saw the runner exit (wall clock).
    member _.ExitTime = p.ExitTime

    /// Kills the runner and everything it started, at once, and waits until it is reaped.
    member _.Kill() = killTree p

    /// Leaves the runner running until the tests end (for a runner several tests share), when
    /// it is killed with the ones a test left behind, but not reported as left behind.
    member _.ServeUntilTestsEnd() = Live.forTheRun[p.Id] <- ()

    interface IDisposable with
        member _.Dispose() =
            killTree p
            Live.runners.TryRemove p.Id |> ignore

            for t in readers do
                t.Join(TimeSpan.FromSeconds 5.0) |> ignore

            p.Dispose()
