/// Runner processes for the process-level and end-to-end tests: the TestHost (or any runner)
/// started the way APISIX starts it, on a socket in a temporary directory, with its output captured.
module Apisix.Runner.Tests.Support.RunnerProcess

open System
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Reflection
open System.Runtime.InteropServices
open System.Threading
open System.Threading.Tasks

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

/// A runner process. The environment is the test's own without any runner setting (APISIX_*,
/// Runner__*, Logging__*), plus APISIX's two variables for `socket`, plus `env`, where a null value
/// unsets a variable. Killed on Dispose if still running.
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

        for name, value in [ "APISIX_LISTEN_ADDRESS", "unix:" + socket; "APISIX_CONF_EXPIRE_TIME", "3600" ] @ env do
            if isNull value then start.Environment.Remove name |> ignore else start.Environment[name] <- value

    let lines = ResizeArray<string>()
    let p = new Process(StartInfo = start)

    do p.Start() |> ignore

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

    let readers = [ capture p.StandardOutput; capture p.StandardError ]

    /// Starts a runner (the TestHost unless `program` names a dll or an executable) on `socket`
    /// and waits until it accepts connections.
    static member Ready(socket: string, ?env: (string * string) list, ?program: string) =
        let r = new Runner(socket, defaultArg env [], defaultArg program testHostDll.Value)
        r.WaitReady()
        r

    member _.Socket = socket

    /// What it wrote so far to stdout and stderr, in the order read.
    member _.Output: string list = lock lines (fun () -> List.ofSeq lines)

    /// The process and its output, for failure messages.
    member r.Describe() =
        let status = if p.HasExited then $"exited with {p.ExitCode}" else "running"
        let output = String.Join("\n  ", r.Output)
        $"runner pid {p.Id} ({status}), output:\n  {output}"

    /// Waits until the socket accepts a connection; fails with the output after 15 s or if the runner exits.
    member r.WaitReady() =
        let clock = Stopwatch.StartNew()

        while not (accepts socket) do
            if p.HasExited || clock.Elapsed > TimeSpan.FromSeconds 15.0 then
                failwith $"the runner did not accept connections on {socket}: {r.Describe()}"

            Thread.Sleep 20

    member _.Signal(signal: Signal) =
        if Native.kill (p.Id, int signal) <> 0 then
            failwith $"kill({p.Id}, {signal}) failed with errno {Marshal.GetLastPInvokeError()}"

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

    interface IDisposable with
        member _.Dispose() =
            if not p.HasExited then
                p.Kill true
                p.WaitForExit()

            p.Dispose()
