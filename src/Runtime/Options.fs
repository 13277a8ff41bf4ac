namespace Apisix.Runner

open System
open System.Collections.Generic
open System.IO

/// Settings of the runner. APISIX sets the first two through the environment
/// (APISIX_LISTEN_ADDRESS, APISIX_CONF_EXPIRE_TIME); the rest come from the `Runner` section of
/// the configuration (appsettings.json, or environment variables such as `Runner__SocketMode`).
[<Sealed; AllowNullLiteral>]
type RunnerOptions() =
    /// `unix:/path/to.sock` or a bare absolute path.
    member val ListenAddress = "" with get, set

    /// How long APISIX caches a conf token; prepared configurations live 1.2 times as long.
    member val ConfExpireTime = TimeSpan.FromSeconds 3600.0 with get, set

    /// Permission bits of the socket file, in octal. APISIX workers often run as another user.
    member val SocketMode = "0766" with get, set

    /// Deadline of one call, below APISIX's 60 s read timeout.
    member val CallTimeout = TimeSpan.FromSeconds 50.0 with get, set

    /// The largest frame body accepted; bounds the memory one connection can take.
    member val MaxFrameBytes = Frame.MaxBodyLength with get, set

    /// The most bytes held at once across all connections beyond their standing buffers: frames and
    /// ExtraInfo replies over 64 KiB, from their header until their call is answered, and answers
    /// grown past 64 KiB. A large frame or reply that does not fit waits, unread, until memory frees;
    /// smaller ones go on. By default an eighth of the memory available to the process, at least
    /// 64 MiB and at most 512 MiB (RunnerOptions.DefaultMaxBufferedBytes).
    member val MaxBufferedBytes = RunnerOptions.DefaultMaxBufferedBytes with get, set

    /// The most prepared configurations kept at once; beyond it the least recently used go.
    member val ConfCacheCapacity = 100_000 with get, set

    /// How long in-flight calls may take to finish on SIGTERM (APISIX kills the runner after about 1 s).
    member val ShutdownTimeout = TimeSpan.FromMilliseconds 800.0 with get, set

    /// Run socket continuations, and so the plugins of calls that need nothing asynchronous, on the
    /// socket engine's thread instead of hopping to the thread pool: about a third less CPU per call,
    /// but a plugin that blocks a thread (a synchronous wait, heavy computation) then holds up every
    /// connection. Only for plugins that never block; applied by RunnerHost when the process starts.
    member val InlineCompletions = false with get, set

    /// The default of MaxBufferedBytes: an eighth of the memory available to the process (the
    /// machine's, or a container's or the GC's limit when lower), at least 64 MiB (three frames of
    /// the protocol's largest size, with room for their answers) and at most 512 MiB.
    static member DefaultMaxBufferedBytes: int64 =
        Math.Clamp(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 8L, 64L <<< 20, 512L <<< 20)

    /// How bytes move between APISIX and the runner: `epoll`, event loops of the runner's own on
    /// Linux (the default there), or `socket`, .NET's socket engine (the default elsewhere, and the
    /// fallback on Linux).
    member val Transport = (if OperatingSystem.IsLinux() then "epoll" else "socket") with get, set

    /// Event-loop threads of the epoll transport; 0 chooses one per four cores, at least one (one
    /// measured best on 2 cores, where APISIX and the runner share them).
    member val EventLoops = 0 with get, set

    /// How long one call may hold an event loop before the epoll transport moves the loop's other
    /// connections to a fresh thread (a plugin that blocks its thread, or computes for long).
    member val StallThreshold = TimeSpan.FromMilliseconds 20.0 with get, set

    /// Folders whose plugin assemblies are loaded at start, each an absolute path: every `.dll` with
    /// its `.deps.json` beside it (what `dotnet publish` of a plugin project makes) is loaded in a
    /// load context of its own, and its plugins are registered beside the runner's own. Configured
    /// as `Runner:PluginFolders:0`, `Runner:PluginFolders:1`, ... (a JSON array), or as one string
    /// of paths separated by the platform's path separator (`:` on Linux, as in PATH). Not
    /// available in a Native AOT build, which cannot load assemblies.
    member val PluginFolders: IList<string> = ResizeArray<string>() with get, set

    /// How long a prepared configuration lives after its last use.
    member o.ConfLifetime = o.ConfExpireTime * 1.2

    /// The socket path of ListenAddress.
    member o.SocketPath =
        if o.ListenAddress.StartsWith("unix:", StringComparison.Ordinal) then
            o.ListenAddress.Substring 5
        else
            o.ListenAddress

    /// SocketMode as permission bits.
    member o.UnixFileMode: UnixFileMode =
        LanguagePrimitives.EnumOfValue(Convert.ToInt32(o.SocketMode, 8))

    /// Every problem with these settings, one sentence each; empty when they are usable.
    member o.Validate() : string list =
        [ if String.IsNullOrWhiteSpace o.ListenAddress then
              "APISIX_LISTEN_ADDRESS is not set: expected unix:/path/to/runner.sock"
          elif not (Path.IsPathRooted o.SocketPath) then
              $"APISIX_LISTEN_ADDRESS must name an absolute socket path, got '{o.ListenAddress}'"
          let octal = not (String.IsNullOrEmpty o.SocketMode) && o.SocketMode |> Seq.forall (fun c -> c >= '0' && c <= '7')

          if not octal || o.SocketMode.Length > 4 then
              $"Runner:SocketMode must be octal permission bits such as 0766, got '{o.SocketMode}'"
          if o.ConfExpireTime <= TimeSpan.Zero then
              "APISIX_CONF_EXPIRE_TIME must be a positive number of seconds"
          if o.CallTimeout <= TimeSpan.Zero || o.CallTimeout >= TimeSpan.FromSeconds 60.0 then
              "Runner:CallTimeout must be positive and below APISIX's 60 s timeout"
          if o.MaxFrameBytes < 1024 || o.MaxFrameBytes > Frame.MaxBodyLength then
              $"Runner:MaxFrameBytes must be between 1024 and {Frame.MaxBodyLength}"
          if o.MaxBufferedBytes < int64 o.MaxFrameBytes + int64 Frame.HeaderLength then
              $"Runner:MaxBufferedBytes must hold at least one frame of Runner:MaxFrameBytes ({int64 o.MaxFrameBytes + int64 Frame.HeaderLength} bytes), got {o.MaxBufferedBytes}"
          if o.ConfCacheCapacity < 1 then
              "Runner:ConfCacheCapacity must be at least 1"
          if o.ShutdownTimeout < TimeSpan.Zero then
              "Runner:ShutdownTimeout must not be negative"
          if o.Transport <> "epoll" && o.Transport <> "socket" then
              $"Runner:Transport must be epoll or socket, got '{o.Transport}'"
          elif o.Transport = "epoll" && not (OperatingSystem.IsLinux()) then
              "Runner:Transport epoll needs Linux; use socket"
          if o.EventLoops < 0 || o.EventLoops > 256 then
              $"Runner:EventLoops must be between 0 (one per four cores) and 256, got {o.EventLoops}"
          if o.StallThreshold <= TimeSpan.Zero then
              "Runner:StallThreshold must be positive"
          if not (isNull o.PluginFolders) then
              let listed = HashSet<string>(StringComparer.Ordinal)

              for folder in o.PluginFolders do
                  if String.IsNullOrWhiteSpace folder || not (Path.IsPathRooted folder) then
                      $"Runner:PluginFolders must list absolute folder paths, got '{folder}'"
                  elif not (listed.Add(Path.TrimEndingDirectorySeparator(Path.GetFullPath folder))) then
                      $"Runner:PluginFolders lists {folder} twice" ]
