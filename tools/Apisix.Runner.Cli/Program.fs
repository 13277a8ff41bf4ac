/// apisix-runner-try: plays APISIX against a plugin runner's unix socket, so that a runner can be
/// tried without an APISIX. It prepares a route's plugins, sends one request (or one upstream
/// answer), serves the runner's ExtraInfo requests, and prints what APISIX would do.
module Apisix.Runner.Cli.Program

open System
open System.CommandLine
open System.IO
open System.Net
open System.Text
open Apisix.Runner
open Apisix.Runner.Cli.Apisix
open Apisix.Runner.Cli.Conversation

/// Exit codes: 0 the runner answered, 1 it answered with an error, 2 a bad command line, 3 no
/// runner or a broken conversation.
module Exit =
    let [<Literal>] Answered = 0
    let [<Literal>] RunnerError = 1
    let [<Literal>] Usage = 2
    let [<Literal>] NoConversation = 3

/// Everything the command line says.
type Scenario =
    { Socket: string
      Plugins: TextEntry[]
      Key: string
      Token: uint32 option
      Request: ClientRequest
      Vars: Map<string, string>
      Upstream: UpstreamAnswer option
      Timeout: TimeSpan }

let private defaultSocket () =
    match Environment.GetEnvironmentVariable "APISIX_LISTEN_ADDRESS" with
    | null
    | "" -> "/tmp/runner.sock"
    | address -> address

/// TEXT, or the bytes of FILE for @FILE, as curl's `-d` reads them.
let private textOrFile (what: string) (value: string) : Result<byte[], string> =
    if value.StartsWith '@' then
        let path = value.Substring 1

        if File.Exists path then
            Ok(File.ReadAllBytes path)
        else
            Error $"{what}: no file {path}"
    else
        Ok(Encoding.UTF8.GetBytes value)

/// NAME=VALUE (or NAME alone, when `bare` says what that means).
let private pair (what: string) (bare: string -> Result<TextEntry, string>) (value: string) =
    match value.IndexOf '=' with
    | 0 -> Error $"{what} '{value}': the name is empty"
    | -1 -> bare value
    | i -> Ok(TextEntry.Set(value[.. i - 1], value[i + 1 ..]))

/// "NAME: VALUE", as curl's `-H` reads it.
let private header (what: string) (value: string) =
    match value.IndexOf ':' with
    | i when i > 0 -> Ok(TextEntry.Set(value[.. i - 1].Trim(), value[i + 1 ..].Trim()))
    | _ -> Error $"{what} '{value}': expected NAME: VALUE"

let private all (results: Result<'T, string> seq) : Result<'T list, string> =
    (results, Ok [])
    ||> Seq.foldBack (fun r acc ->
        match r, acc with
        | Ok v, Ok vs -> Ok(v :: vs)
        | Error e, _ -> Error e
        | _, Error e -> Error e)

let private orEmpty (values: string[]) = if isNull values then [||] else values

type private Options() =
    member val Socket =
        Option<string>(
            "--socket",
            "-s",
            Description = "The runner's socket: a path or unix:PATH [default: $APISIX_LISTEN_ADDRESS, else /tmp/runner.sock]",
            HelpName = "PATH"
        )

    member val Plugin =
        Option<string[]>(
            "--plugin",
            "-p",
            Description = "A plugin of the route, in order: NAME=JSON, NAME=@FILE, or NAME alone for {} (repeatable)",
            HelpName = "NAME=JSON"
        )

    member val Key = Option<string>("--key", Description = "The route configuration's key, sent with PrepareConf", HelpName = "KEY")

    member val Token =
        Option<uint32 Nullable>(
            "--token",
            Description = "Skip PrepareConf and call with this conf token (one an earlier run printed)",
            HelpName = "TOKEN"
        )

    member val Method =
        Option<string>("--method", "-X", Description = "The request's method", HelpName = "METHOD", DefaultValueFactory = fun _ -> "GET")

    member val Path =
        Option<string>(
            "--path",
            Description = "The request's path, with a query string if you like: /get?a=1&flag",
            HelpName = "PATH",
            DefaultValueFactory = fun _ -> "/"
        )

    member val Arg =
        Option<string[]>("--arg", Description = "A query argument: NAME=VALUE, or NAME alone (repeatable)", HelpName = "NAME=VALUE")

    member val Header =
        Option<string[]>("--header", "-H", Description = "A request header: 'NAME: VALUE' (repeatable)", HelpName = "HEADER")

    member val Body =
        Option<string>("--body", "-d", Description = "The request body, answered to ExtraInfo ReqBody: TEXT or @FILE", HelpName = "BODY")

    member val Client =
        Option<string>(
            "--client",
            Description = "The client's address (src_ip, and the remote_addr variable)",
            HelpName = "IP",
            DefaultValueFactory = fun _ -> "127.0.0.1"
        )

    member val Var =
        Option<string[]>(
            "--var",
            Description =
                "An nginx variable answered to ExtraInfo Var: NAME=VALUE (repeatable). Without one, remote_addr, request_method, uri, request_uri, args, host, http_*, arg_* come from the request",
            HelpName = "NAME=VALUE"
        )

    member val UpstreamStatus =
        Option<int Nullable>(
            "--upstream-status",
            Description = "Response phase (ext-plugin-post-resp): the upstream answered with this status",
            HelpName = "STATUS"
        )

    member val UpstreamHeader =
        Option<string[]>("--upstream-header", Description = "Response phase: an upstream header, 'NAME: VALUE' (repeatable)", HelpName = "HEADER")

    member val UpstreamBody =
        Option<string>(
            "--upstream-body",
            Description = "Response phase: the upstream body, answered to ExtraInfo RespBody: TEXT or @FILE",
            HelpName = "BODY"
        )

    member val Timeout =
        Option<float>("--timeout", Description = "Seconds to wait for each answer (APISIX waits 60)", HelpName = "SECONDS", DefaultValueFactory = fun _ -> 60.0)

    member o.All: Option list =
        [ o.Socket
          o.Plugin
          o.Key
          o.Token
          o.Method
          o.Path
          o.Arg
          o.Header
          o.Body
          o.Client
          o.Var
          o.UpstreamStatus
          o.UpstreamHeader
          o.UpstreamBody
          o.Timeout ]

/// The scenario the command line describes, or what is wrong with it.
let private scenario (o: Options) (r: ParseResult) : Result<Scenario, string> =
    let socket =
        match r.GetValue o.Socket with
        | null
        | "" -> defaultSocket ()
        | s -> s

    let socket = if socket.StartsWith "unix:" then socket.Substring 5 else socket
    let token = r.GetValue o.Token |> Option.ofNullable
    let upstreamStatus = r.GetValue o.UpstreamStatus |> Option.ofNullable

    let plugins =
        orEmpty (r.GetValue o.Plugin)
        |> Seq.map (fun p ->
            pair "--plugin" (fun name -> Ok(TextEntry.Set(name, "{}"))) p
            |> Result.bind (fun e ->
                textOrFile $"--plugin {e.Name}" e.Value |> Result.map (fun conf -> TextEntry.Set(e.Name, Encoding.UTF8.GetString conf))))
        |> all

    let method =
        match Enum.TryParse<Method>(r.GetValue o.Method, true) with
        | true, m when Enum.IsDefined m && not (Char.IsDigit((r.GetValue o.Method)[0])) -> Ok m
        | _ -> Error $"""--method {r.GetValue o.Method}: APISIX sends one of {String.Join(", ", Enum.GetNames<Method>())}"""

    let rawPath, typedQuery =
        match (r.GetValue o.Path).Split('?', 2) with
        | [| path; query |] -> path, query
        | parts -> parts[0], ""

    let args =
        orEmpty (r.GetValue o.Arg) |> Seq.map (pair "--arg" (fun name -> Ok(TextEntry.Delete name))) |> all

    let client =
        match IPAddress.TryParse(r.GetValue o.Client) with
        | true, ip -> Ok ip
        | _ -> Error $"--client {r.GetValue o.Client}: not an IP address"

    let optionalBody (option: Option<string>) (what: string) =
        match r.GetValue option with
        | null -> Ok None
        | value -> textOrFile what value |> Result.map Some

    let vars =
        orEmpty (r.GetValue o.Var)
        |> Seq.map (pair "--var" (fun v -> Error $"--var {v}: expected NAME=VALUE"))
        |> all

    let problems =
        [ if token.IsSome && (orEmpty (r.GetValue o.Plugin)).Length > 0 then
              "give the route's plugins (--plugin) or a conf token (--token), not both"
          if token.IsNone && (orEmpty (r.GetValue o.Plugin)).Length = 0 then
              "give the route's plugins (--plugin NAME=JSON, repeatable), or a conf token (--token)"
          if upstreamStatus.IsNone && ((orEmpty (r.GetValue o.UpstreamHeader)).Length > 0 || not (isNull (r.GetValue o.UpstreamBody))) then
              "--upstream-header and --upstream-body describe the upstream's answer: give its --upstream-status too"
          match upstreamStatus with
          | Some s when s < 100 || s > 599 -> $"--upstream-status {s}: an HTTP status is between 100 and 599"
          | _ -> ()
          if r.GetValue o.Timeout <= 0.0 then "--timeout must be above 0" ]

    match problems with
    | problem :: _ -> Error problem
    | [] ->
        match plugins, method, args, client, vars with
        | Error e, _, _, _, _
        | _, Error e, _, _, _
        | _, _, Error e, _, _
        | _, _, _, Error e, _
        | _, _, _, _, Error e -> Error e
        | Ok plugins, Ok method, Ok args, Ok client, Ok vars ->
            let headers = orEmpty (r.GetValue o.Header) |> Seq.map (header "--header") |> all
            let upstreamHeaders = orEmpty (r.GetValue o.UpstreamHeader) |> Seq.map (header "--upstream-header") |> all
            let rawQuery = String.Join("&", [ typedQuery; encodeQuery args ] |> List.filter (fun q -> q <> ""))

            match headers, upstreamHeaders, optionalBody o.Body "--body", optionalBody o.UpstreamBody "--upstream-body" with
            | Error e, _, _, _
            | _, Error e, _, _
            | _, _, Error e, _
            | _, _, _, Error e -> Error e
            | Ok headers, Ok upstreamHeaders, Ok body, Ok upstreamBody ->
                Ok
                    { Socket = socket
                      Plugins = Array.ofList plugins
                      Key = r.GetValue o.Key
                      Token = token
                      Request =
                        { Method = method
                          RawPath = rawPath
                          Path = Uri.UnescapeDataString rawPath
                          RawQuery = rawQuery
                          Args = parseQuery rawQuery
                          Headers = headers
                          Body = body
                          Client = client }
                      Vars = vars |> List.map (fun v -> v.Name, v.Value) |> Map.ofList
                      Upstream =
                        upstreamStatus
                        |> Option.map (fun status ->
                            { Status = status
                              Headers = upstreamHeaders
                              Body = upstreamBody })
                      Timeout = TimeSpan.FromSeconds(r.GetValue o.Timeout) }

/// How APISIX answers the runner's ExtraInfo requests in this scenario.
let private answers (s: Scenario) : ExtraInfoAnswers =
    fun info ->
        match info with
        | ExtraInfo.Var name ->
            match s.Vars.TryFind name, derivedVar s.Request name with
            | Some value, _ -> ValueSome(Encoding.UTF8.GetBytes value), "from --var"
            | None, Some(value, from) -> ValueSome(Encoding.UTF8.GetBytes value), $"from {from}"
            | None, None -> ValueNone, "unset: give it with --var"
        | ExtraInfo.ReqBody ->
            match s.Request.Body with
            | Some body -> ValueSome body, "from --body"
            | None -> ValueNone, "no --body"
        | ExtraInfo.RespBody ->
            match s.Upstream with
            | None -> ValueNone, "the request phase has no upstream body"
            | Some { Body = Some body } -> ValueSome body, "from --upstream-body"
            | Some _ -> ValueNone, "no --upstream-body"

let private plural (n: int) (one: string) = if n = 1 then $"1 {one}" else $"{n} {one}s"

/// Plays the scenario; the exit code.
let play (s: Scenario) (out: TextWriter) (err: TextWriter) : int =
    let failed (f: Failure) =
        out.Flush()
        Report.failure err f

        match f with
        | RunnerError _ -> Exit.RunnerError
        | NotListening _
        | Broken _ -> Exit.NoConversation

    let checkId (id: uint32) =
        if id <> 1u then
            err.WriteLine $"warning: the answer carries id {id}, the call had id 1 (APISIX does not check, but it should match)"

    match Connection.Open(s.Socket, s.Timeout) with
    | Error f -> failed f
    | Ok connection ->
        use connection = connection

        let token =
            match s.Token with
            | Some token ->
                out.WriteLine $"PrepareConf skipped: conf token {token} (--token)"
                Ok token
            | None ->
                let names = String.Join(", ", s.Plugins |> Array.map (fun p -> p.Name))
                let key = if isNull s.Key then "" else $", key {s.Key}"

                connection.Prepare(s.Plugins, s.Key)
                |> Result.map (fun token ->
                    out.WriteLine $"PrepareConf [{names}]{key} -> conf token {token}"
                    token)

        match token, s.Upstream with
        | Error f, _ -> failed f
        | Ok token, None ->
            let target = if s.Request.RawQuery = "" then s.Request.Path else $"{s.Request.Path}?{s.Request.RawQuery}"
            out.WriteLine $"HTTPReqCall {s.Request.Method} {target}"

            match connection.Request(requestCall s.Request 1u token, answers s) with
            | Error f -> failed f
            | Ok(answer, served) ->
                Report.served out served
                checkId answer.Id

                match answer.Action with
                | HttpReqCall.NoAction ->
                    out.WriteLine "answer: no action"
                    out.WriteLine()
                    out.WriteLine "The request passes unchanged: the upstream gets it as the client sent it."
                | HttpReqCall.Stop stop ->
                    out.WriteLine "answer: Stop"
                    out.WriteLine()
                    out.WriteLine "The client gets this response from APISIX; the upstream is not called:"
                    out.WriteLine()
                    Report.response out (stopped stop)
                | HttpReqCall.Rewrite rewrite ->
                    out.WriteLine "answer: Rewrite"
                    out.WriteLine()
                    out.WriteLine "The upstream gets this request:"
                    out.WriteLine()
                    Report.upstreamRequest out (rewritten s.Request rewrite)

                Exit.Answered
        | Ok token, Some upstream ->
            let headers = plural upstream.Headers.Length "header"
            out.WriteLine $"HTTPRespCall: the upstream answered {upstream.Status} with {headers}"

            match connection.Response(responseCall upstream 1u token, answers s) with
            | Error f -> failed f
            | Ok(answer, served) ->
                Report.served out served
                checkId answer.Id
                let status = if answer.Status = 0us then "status kept" else $"status {answer.Status}"
                let headers = plural answer.Headers.Length "header"
                let body = if answer.Body.Length = 0 then "body kept" else "body of " + plural answer.Body.Length "byte"
                out.WriteLine $"answer: {status}, {headers}, {body}"
                out.WriteLine()
                out.WriteLine "The client gets this response:"
                out.WriteLine()
                Report.response out (responded upstream answer)
                Exit.Answered

let private description =
    """Plays APISIX against a plugin runner's socket, to try a runner without an APISIX.

It sends PrepareConf with the route's plugins, then one request (HTTPReqCall, as for
ext-plugin-pre-req and ext-plugin-post-req) or, with --upstream-status, one upstream answer
(HTTPRespCall, as for ext-plugin-post-resp). It answers the runner's ExtraInfo requests from
--var, --body and --upstream-body, and prints what APISIX would do with the runner's answer.

Exit codes: 0 the runner answered; 1 it answered with an error (CONF_TOKEN_NOT_FOUND,
BAD_REQUEST, SERVICE_UNAVAILABLE); 2 a bad command line; 3 no runner on the socket, or a
broken conversation."""

[<EntryPoint>]
let main argv =
    let options = Options()
    let root = RootCommand description

    for option in options.All do
        root.Options.Add option

    root.SetAction(fun (parsed: ParseResult) ->
        match scenario options parsed with
        | Error problem ->
            Console.Error.WriteLine $"error: {problem}"
            Console.Error.WriteLine "Run apisix-runner-try --help for the options."
            Exit.Usage
        | Ok s -> play s Console.Out Console.Error)

    // No response files: @FILE is a body or a configuration here, as in curl.
    let parsed = root.Parse(argv, ParserConfiguration(ResponseFileTokenReplacer = null))

    if parsed.Errors.Count > 0 then
        for e in parsed.Errors do
            Console.Error.WriteLine $"error: {e.Message}"

        Console.Error.WriteLine "Run apisix-runner-try --help for the options."
        Exit.Usage
    else
        parsed.Invoke()
