/// What the tool prints: each exchange in one line, then the HTTP message that results, as the
/// client or the upstream would see it. Results go to stdout, failures to stderr.
module Apisix.Runner.Cli.Report

open System
open System.IO
open System.Text
open Apisix.Runner
open Apisix.Runner.Cli.Apisix
open Apisix.Runner.Cli.Conversation

let private strictUtf8 = UTF8Encoding(false, true)

/// A body as text when it is printable UTF-8, else its size and base64.
let body (bytes: byte[]) : string =
    let text =
        try
            Some(strictUtf8.GetString bytes)
        with :? DecoderFallbackException ->
            None

    match text with
    | Some t when t |> Seq.forall (fun c -> not (Char.IsControl c) || c = '\n' || c = '\r' || c = '\t') -> t
    | _ -> $"({bytes.Length} bytes, not text; base64: {Convert.ToBase64String bytes})"

let private quoted (bytes: byte[] voption) =
    match bytes with
    | ValueNone -> "absent"
    | ValueSome b when b.Length > 80 || b |> Array.exists (fun c -> c = 10uy) -> $"{b.Length} bytes"
    | ValueSome b -> $"\"{body b}\""

let private info (i: ExtraInfo.Info) =
    match i with
    | ExtraInfo.Var name -> $"var {name}"
    | ExtraInfo.ReqBody -> "request body"
    | ExtraInfo.RespBody -> "upstream body"

/// The ExtraInfo requests served during the call, one line each.
let served (out: TextWriter) (served: Served list) =
    for s in served do
        out.WriteLine $"  ExtraInfo {info s.Asked} -> {quoted s.Answer} ({s.Source})"

let private headers (out: TextWriter) (entries: TextEntry seq) =
    for h in entries do
        out.WriteLine $"{h.Name}: {h.Value}"

let private message (out: TextWriter) (content: byte[] option) =
    out.WriteLine()

    match content with
    | Some b -> out.WriteLine(body b)
    | None -> out.WriteLine "(no body)"

let private notes (out: TextWriter) (lines: string list) =
    if not lines.IsEmpty then
        out.WriteLine()

        for n in lines do
            out.WriteLine $"note: {n}"

/// The response the client gets.
let response (out: TextWriter) (r: ClientResponse) =
    out.WriteLine $"HTTP/1.1 {r.Status}"
    headers out r.Headers
    message out r.Body
    notes out r.Notes

/// The request the upstream gets after a Rewrite, and the headers the client's response gets.
let upstreamRequest (out: TextWriter) (r: UpstreamRequest) =
    let target = if r.Query = "" then r.Path else $"{r.Path}?{r.Query}"
    out.WriteLine $"{r.Method} {target} HTTP/1.1"
    headers out r.Headers
    message out r.Body

    if not r.ResponseHeaders.IsEmpty then
        out.WriteLine()
        out.WriteLine "Headers APISIX adds to the client's response, whatever the upstream answers:"
        headers out r.ResponseHeaders

    notes out r.Notes

/// A failure, in words that say what APISIX would do about it.
let failure (err: TextWriter) (f: Failure) =
    match f with
    | NotListening(socket, reason) ->
        err.WriteLine $"error: no runner listens on {socket}: {reason}."
        err.WriteLine $"Start one first, for example: APISIX_LISTEN_ADDRESS=unix:{socket} dotnet run --project YourRunner"
    | RunnerError("PrepareConf", code) ->
        err.WriteLine $"error: the runner rejected the route's configuration ({code})."
        err.WriteLine "APISIX answers 503 on this route until it is fixed; the runner's log names the plugin and why."
    | RunnerError(stage, Err.Code.CONF_TOKEN_NOT_FOUND) ->
        err.WriteLine $"error: the runner does not know the conf token ({Err.Code.CONF_TOKEN_NOT_FOUND}, in answer to {stage})."
        err.WriteLine "APISIX would flush its token cache, send PrepareConf again and retry the call, up to 3 times."
    | RunnerError(stage, Err.Code.BAD_REQUEST) ->
        err.WriteLine $"error: the runner could not read the {stage} ({Err.Code.BAD_REQUEST})."
        err.WriteLine "APISIX answers 503 on this request (or lets it through when the route sets allow_degradation)."
    | RunnerError(stage, code) ->
        err.WriteLine $"error: the runner could not serve the {stage} ({code}): a plugin failed or ran out of time; the runner's log says which."
        err.WriteLine "APISIX answers 503 on this request (or lets it through when the route sets allow_degradation)."
    | Broken(stage, reason) ->
        err.WriteLine $"error: {stage}: {reason}."
        err.WriteLine "APISIX closes such a connection and answers 503 (or lets the request through when the route sets allow_degradation)."
