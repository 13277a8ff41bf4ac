/// A runner process seen from outside, through /proc: memory, threads, descriptors, sockets.
module Apisix.Runner.Tests.Support.ProcessProbe

open System
open System.Buffers.Binary
open System.Diagnostics
open System.IO
open System.Net.Sockets
open System.Threading.Tasks

/// A runner process seen through /proc, found from its socket (SO_PEERCRED names the listener's pid).
[<Sealed>]
type ProcessProbe(pid: int) =
    /// The process listening on `socket`.
    static member Of(socket: string) =
        use s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
        s.Connect(UnixDomainSocketEndPoint socket)
        // struct ucred { pid; uid; gid }, at SOL_SOCKET (1), SO_PEERCRED (17).
        let cred = Array.zeroCreate<byte> 12
        s.GetRawSocketOption(1, 17, Span cred) |> ignore
        ProcessProbe(BinaryPrimitives.ReadInt32LittleEndian(ReadOnlySpan cred))

    member _.Pid = pid

    member private _.Status(field: string) =
        File.ReadLines $"/proc/{pid}/status"
        |> Seq.tryFind (fun l -> l.StartsWith(field + ":", StringComparison.Ordinal))
        |> Option.map (fun l -> int64 (l.Substring(field.Length + 1).Trim().Split(' ')[0]))
        |> Option.defaultValue -1L

    /// Resident memory (VmRSS), in MiB.
    member p.RssMiB = float (p.Status "VmRSS") / 1024.0

    member p.Threads = int (p.Status "Threads")

    /// Open file descriptors.
    member _.Fds = Directory.EnumerateFileSystemEntries $"/proc/{pid}/fd" |> Seq.length

    /// Open sockets: the listener, the connections, and the runtime's own.
    member _.Sockets =
        Directory.EnumerateFileSystemEntries $"/proc/{pid}/fd"
        |> Seq.sumBy (fun fd ->
            try
                match FileInfo(fd).LinkTarget with
                | null -> 0
                | target when target.StartsWith("socket:", StringComparison.Ordinal) -> 1
                | _ -> 0
            with _ ->
                0)

    /// The socket count once it has stopped changing (connections just closed are let go asynchronously).
    member p.SettledSockets() : Task<int> =
        task {
            let mutable last = p.Sockets
            let mutable same = 0
            let clock = Stopwatch.StartNew()

            while same < 5 && clock.Elapsed < TimeSpan.FromSeconds 5.0 do
                do! Task.Delay 50
                let now = p.Sockets
                if now = last then same <- same + 1 else same <- 0
                last <- now

            return last
        }

    /// One line for the test output.
    member p.Describe() =
        $"RSS %.1f{p.RssMiB} MiB, {p.Fds} fds ({p.Sockets} sockets), {p.Threads} threads"

/// Waits until `condition` holds, for at most `timeout`; whether it came to hold.
let within (timeout: TimeSpan) (condition: unit -> bool) : Task<bool> =
    ApisixClient.poll (TimeSpan.FromMilliseconds 50.0) timeout condition
