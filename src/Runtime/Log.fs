namespace Apisix.Runner

open System
open System.Globalization
open System.Text
open Microsoft.Extensions.Logging

/// Log messages, defined once so that nothing is formatted unless the level is on. Every value
/// that comes from the wire (keys, plugin names, reasons, exception messages) goes through
/// `escape` at the call site: nothing APISIX sends can start a log line or drive a terminal.
/// Header values are never logged, at any level.
module internal Log =
    /// A character that must not reach a log line raw: C0 and C1 controls (line breaks, ESC of
    /// terminal sequences, NUL, DEL), Unicode line and paragraph separators, bidirectional overrides.
    let private unsafe (c: char) =
        Char.IsControl c
        || c = '\u2028'
        || c = '\u2029'
        || (c >= '\u202A' && c <= '\u202E')
        || (c >= '\u2066' && c <= '\u2069')

    /// The most characters of one value a log line shows: a frame can carry megabytes of it.
    [<Literal>]
    let MaxValueLength = 1024

    /// A value as it may appear in a log line: each unsafe character written as an escape (`\n`,
    /// `\r`, `\t`, otherwise `\u001b` and the like), and cut after MaxValueLength characters
    /// with the count of the rest. The value itself when it needs neither.
    let escape (value: string) : string =
        if isNull value then
            value
        else
            let shown = min value.Length MaxValueLength
            let mutable first = 0

            while first < shown && not (unsafe value[first]) do
                first <- first + 1

            if first = value.Length then
                value
            else
                let sb = StringBuilder(shown + 32)
                sb.Append(value, 0, first) |> ignore

                for i in first .. shown - 1 do
                    match value[i] with
                    | '\n' -> sb.Append "\\n" |> ignore
                    | '\r' -> sb.Append "\\r" |> ignore
                    | '\t' -> sb.Append "\\t" |> ignore
                    | c when unsafe c -> sb.Append("\\u").Append((int c).ToString("x4", CultureInfo.InvariantCulture)) |> ignore
                    | c -> sb.Append c |> ignore

                if shown < value.Length then
                    sb.Append("... (").Append(value.Length - shown).Append(" more characters)") |> ignore

                sb.ToString()

    /// The most problems of one rejected configuration a log line lists: one frame can name
    /// thousands of unknown plugins.
    [<Literal>]
    let MaxProblems = 10

    /// The problems of a rejected configuration, escaped, in one line.
    let problems (all: string list) : string =
        let shown = all |> List.truncate MaxProblems |> List.map escape
        let rest = all.Length - shown.Length
        let text = String.Join("; ", shown)
        if rest > 0 then text + "; and " + string rest + " more" else text

    /// An exception as the log shows it: the original's type, message (escaped: it may echo what
    /// APISIX sent), inner exceptions and stack traces, laid out as .NET does.
    [<Sealed>]
    type EscapedException(original: exn) =
        inherit Exception(escape original.Message)

        /// The exception that was thrown.
        member _.Original = original

        override _.StackTrace = original.StackTrace

        override _.ToString() =
            let sb = StringBuilder()

            let rec write (e: exn) =
                sb.Append(e.GetType().FullName).Append(": ").Append(escape e.Message) |> ignore

                match e.InnerException with
                | null -> ()
                | inner ->
                    sb.Append " ---> " |> ignore
                    write inner
                    sb.AppendLine().Append "   --- End of inner exception stack trace ---" |> ignore

                match e.StackTrace with
                | null -> ()
                | trace -> sb.AppendLine().Append trace |> ignore

            write original
            sb.ToString()

    /// An exception for the log, its message escaped.
    let escaped (ex: exn) : exn = EscapedException ex :> exn

    let confRejected =
        LoggerMessage.Define<string, string>(LogLevel.Error, EventId(1, "ConfRejected"), "PrepareConf rejected, the route answers 503 until fixed (key {Key}): {Problems}")

    let pluginFailed =
        LoggerMessage.Define<string, uint32>(LogLevel.Error, EventId(2, "PluginFailed"), "Plugin {Plugin} failed in call {CallId}; answered SERVICE_UNAVAILABLE")

    let callTimedOut =
        LoggerMessage.Define<uint32, string, TimeSpan>(LogLevel.Error, EventId(3, "CallTimedOut"), "Call {CallId} did not finish in plugin {Plugin} within {Deadline}; answered SERVICE_UNAVAILABLE and closed the connection")

    let badFrame =
        LoggerMessage.Define<string>(LogLevel.Warning, EventId(4, "BadFrame"), "Answered BAD_REQUEST and closed the connection: {Reason}")

    let answerFailed =
        LoggerMessage.Define<uint32, string>(LogLevel.Error, EventId(5, "AnswerFailed"), "The answer to call {CallId} could not be encoded: {Reason}")

    let tokenNotFound =
        LoggerMessage.Define<uint32>(LogLevel.Information, EventId(6, "TokenNotFound"), "Conf token {Token} is unknown or expired; APISIX will prepare it again")

    let connectionLost =
        LoggerMessage.Define<string>(LogLevel.Information, EventId(7, "ConnectionLost"), "Connection dropped mid-call: {Reason}")

    let connectionFailed =
        LoggerMessage.Define(LogLevel.Error, EventId(9, "ConnectionFailed"), "A connection failed unexpectedly; it was closed")

    let call =
        LoggerMessage.Define<uint32, uint32, string>(LogLevel.Debug, EventId(8, "Call"), "Call {CallId} with token {Token}: {Answer}")

    let listening =
        LoggerMessage.Define<string, string, string, string>(LogLevel.Information, EventId(10, "Listening"), "Listening on unix:{Socket} (mode {Mode}, {Transport} transport) with plugins {Plugins}")

    let acceptFailed =
        LoggerMessage.Define(LogLevel.Warning, EventId(11, "AcceptFailed"), "Accepting a connection failed")

    let drainTimedOut =
        LoggerMessage.Define<int, TimeSpan>(LogLevel.Warning, EventId(12, "DrainTimedOut"), "{Count} connections still busy after {Timeout}; closing them")

    let stopFailed =
        LoggerMessage.Define(LogLevel.Error, EventId(13, "StopFailed"), "A connection failed while stopping")

    let stopped =
        LoggerMessage.Define<string>(LogLevel.Information, EventId(14, "Stopped"), "Stopped; unix:{Socket} removed")

    let unknownSetting =
        LoggerMessage.Define<string>(LogLevel.Warning, EventId(15, "UnknownSetting"), "Unknown setting {Key} ignored: no runner setting has that name")

    let budgetFull =
        LoggerMessage.Define<int64, int64, int64>(
            LogLevel.Warning,
            EventId(18, "BudgetFull"),
            "The memory budget is in use ({InUse} of {Limit} bytes, Runner:MaxBufferedBytes): a frame of {Bytes} bytes waits, unread, until memory frees; smaller frames go on"
        )

    let memoryReturned =
        LoggerMessage.Define<int64, int64>(LogLevel.Debug, EventId(19, "MemoryReturned"), "Large buffers idle after a burst: collected, the GC's committed memory went from {Before} to {After} bytes")

    let pluginFolderLoaded =
        LoggerMessage.Define<string, string>(LogLevel.Information, EventId(16, "PluginFolderLoaded"), "Loaded plugin folder {Folder}: {Plugins}")

    // The Linux transport (Runtime/Linux).
    let loopHeld =
        LoggerMessage.Define<int, int, string>(
            LogLevel.Warning,
            EventId(20, "LoopHeld"),
            "Event loop {Loop} was held for more than {ThresholdMs} ms by {Holder}; its other connections go on on a fresh thread"
        )

    let loopHeldOutsideCall =
        LoggerMessage.Define<int, int, string>(
            LogLevel.Debug,
            EventId(25, "LoopHeldOutsideCall"),
            "Event loop {Loop} was held for more than {ThresholdMs} ms outside any call ({Holder}); its other connections go on on a fresh thread"
        )

    let acceptLimit =
        LoggerMessage.Define<int, int>(
            LogLevel.Error,
            EventId(21, "AcceptLimit"),
            "Cannot accept connections (errno {Errno}: out of file descriptors or memory); serving the open connections and retrying every {RetryMs} ms"
        )

    let acceptResumed =
        LoggerMessage.Define(LogLevel.Information, EventId(22, "AcceptResumed"), "Accepting connections again")

    let acceptStopped =
        LoggerMessage.Define<int>(LogLevel.Error, EventId(23, "AcceptStopped"), "Accepting stopped: accept4 failed with errno {Errno}")

    let loopFailed =
        LoggerMessage.Define(LogLevel.Error, EventId(24, "LoopFailed"), "An event-loop handler failed; the loop goes on")
