/// APISIX's side of the protocol, without a socket: the request it sends for a client's request,
/// the nginx variables it answers, and what it does with each answer, rule for rule as its
/// ext-plugin client (apisix/plugins/ext-plugin/init.lua and ext-plugin-post-resp.lua) does.
module Apisix.Runner.Cli.Apisix

open System
open System.Net
open Apisix.Runner

/// The client's request, as the command line describes it.
type ClientRequest =
    { Method: Method
      /// The path as typed, without the query (nginx's `$request_uri` without its query).
      RawPath: string
      /// The path decoded (nginx's `$uri`), what APISIX sends as `path`.
      Path: string
      /// The query string as typed and as built from `--arg`, without `?`; empty when none.
      RawQuery: string
      /// The arguments decoded, one entry per value; no value for an argument without `=`.
      Args: TextEntry list
      /// The headers as typed: names keep their case here and go to the runner in lower case.
      Headers: TextEntry list
      Body: byte[] option
      Client: IPAddress }

/// The upstream's answer, for the response phase.
type UpstreamAnswer =
    { Status: int
      Headers: TextEntry list
      Body: byte[] option }

/// An HTTP response as the client gets it.
type ClientResponse =
    { Status: int
      Headers: TextEntry list
      Body: byte[] option
      /// How APISIX made it from the runner's answer, one line each.
      Notes: string list }

/// The request the upstream gets after a Rewrite.
type UpstreamRequest =
    { Method: Method
      Path: string
      /// Empty when none.
      Query: string
      Headers: TextEntry list
      Body: byte[] option
      /// Headers APISIX puts on the client's eventual response.
      ResponseHeaders: TextEntry list
      Notes: string list }

/// Response headers APISIX does not take from a Rewrite's `resp_headers`, nor keep from the
/// upstream in the response phase when the runner sends no headers.
let excludedResponseHeaders =
    set
        [ "connection"
          "content-length"
          "transfer-encoding"
          "location"
          "server"
          "www-authenticate"
          "content-encoding"
          "content-type"
          "content-location"
          "content-language" ]

let private sameName (a: string) (b: string) =
    String.Equals(a, b, StringComparison.OrdinalIgnoreCase)

let private decode (s: string) = Uri.UnescapeDataString(s.Replace('+', ' '))

/// The arguments of a query string, decoded as `ngx.req.get_uri_args` decodes them, in order.
let parseQuery (raw: string) : TextEntry list =
    [ for part in raw.Split('&', StringSplitOptions.RemoveEmptyEntries) do
          match part.IndexOf '=' with
          | -1 -> TextEntry.Delete(decode part)
          | i -> TextEntry.Set(decode part[.. i - 1], decode part[i + 1 ..]) ]

/// A query string from arguments, as `ngx.encode_args` writes one.
let encodeQuery (args: TextEntry list) : string =
    args
    |> List.map (fun a ->
        if a.HasValue then
            $"{Uri.EscapeDataString a.Name}={Uri.EscapeDataString a.Value}"
        else
            Uri.EscapeDataString a.Name)
    |> String.concat "&"

/// The HTTPReqCall APISIX sends for the request: header names in lower case, as nginx gives them.
let requestCall (request: ClientRequest) (id: uint32) (token: uint32) : HttpReqCall.Req =
    { Id = id
      SrcIp = request.Client.GetAddressBytes()
      Method = request.Method
      Path = request.Path
      Args = Array.ofList request.Args
      Headers = [| for h in request.Headers -> TextEntry.Set(h.Name.ToLowerInvariant(), h.Value) |]
      ConfToken = token }

/// The HTTPRespCall APISIX sends for the upstream's answer.
let responseCall (upstream: UpstreamAnswer) (id: uint32) (token: uint32) : HttpRespCall.Req =
    { Id = id
      Status = uint16 upstream.Status
      Headers = Array.ofList upstream.Headers
      ConfToken = token }

let private headerValues (request: ClientRequest) (name: string) =
    request.Headers |> List.filter (fun h -> sameName h.Name name) |> List.map (fun h -> h.Value)

/// What nginx knows of a variable without a `--var`, from the request as described, and where
/// from: the variables a plugin most often asks for. None when nginx would not have it here.
let derivedVar (request: ClientRequest) (name: string) : (string * string) option =
    let header (headerName: string) =
        match headerValues request headerName with
        | [] -> None
        | values -> Some(String.Join(", ", values), "--header")

    match name with
    | "remote_addr" -> Some(string request.Client, "--client")
    | "request_method" -> Some(string request.Method, "--method")
    | "uri" -> Some(request.Path, "--path")
    | "request_uri" ->
        Some((if request.RawQuery = "" then request.RawPath else $"{request.RawPath}?{request.RawQuery}"), "--path and --arg")
    | "args"
    | "query_string" -> if request.RawQuery = "" then None else Some(request.RawQuery, "--path and --arg")
    | "is_args" -> Some((if request.RawQuery = "" then "" else "?"), "--path and --arg")
    | "host" ->
        header "host"
        |> Option.map (fun (value, from) ->
            let host = (value.Split(',')[0]).Trim().ToLowerInvariant()
            let port = host.LastIndexOf ':'
            (if port > 0 && not (host.EndsWith "]") then host[.. port - 1] else host), from)
    | "content_type" -> header "content-type"
    | "content_length" -> header "content-length"
    | _ when name.StartsWith("http_", StringComparison.Ordinal) -> header (name.Substring(5).Replace('_', '-'))
    | _ when name.StartsWith("arg_", StringComparison.Ordinal) ->
        // nginx's $arg_NAME: the first NAME=value of the raw query, not decoded, name without case.
        request.RawQuery.Split('&', StringSplitOptions.RemoveEmptyEntries)
        |> Array.tryPick (fun part ->
            match part.IndexOf '=' with
            | i when i > 0 && sameName part[.. i - 1] (name.Substring 4) -> Some(part[i + 1 ..], "--path and --arg")
            | _ -> None)
    | _ -> None

/// Response headers as `core.response.set_header` then `add_header` leave them: names in lower
/// case, the first entry of a name sets it (no value clears it), later entries of the name add.
let private setThenAdd (entries: TextEntry seq) : TextEntry list =
    let seen = Collections.Generic.HashSet<string>()
    let result = Collections.Generic.List<TextEntry>()

    for e in entries do
        let name = e.Name.ToLowerInvariant()

        if seen.Add name then
            result.RemoveAll(fun h -> h.Name = name) |> ignore

        if e.HasValue then
            // Grouped under the name's first line, as the client reads a header with several values.
            match Seq.tryFindIndexBack (fun (h: TextEntry) -> h.Name = name) result with
            | Some i -> result.Insert(i + 1, TextEntry.Set(name, e.Value))
            | None -> result.Add(TextEntry.Set(name, e.Value))

    List.ofSeq result

let private nonEmpty (body: byte[]) = if isNull body || body.Length = 0 then None else Some body

/// A Stop: the response APISIX gives the client itself, without the upstream.
let stopped (stop: HttpReqCall.Stop) : ClientResponse =
    { Status = (if stop.Status = 0us then 200 else int stop.Status)
      Headers = setThenAdd stop.Headers
      Body = nonEmpty stop.Body
      Notes = [ if stop.Status = 0us then "status 0 in the Stop: APISIX answers 200" ] }

/// A Rewrite: the request as the upstream gets it once APISIX has applied the answer.
let rewritten (request: ClientRequest) (rewrite: HttpReqCall.Rewrite) : UpstreamRequest =
    // Headers: `core.request.set_header` per entry, so a later entry of a name replaces an
    // earlier one and an entry without a value deletes the header.
    let headers =
        (request.Headers, rewrite.Headers)
        ||> Array.fold (fun headers e ->
            let kept = headers |> List.filter (fun h -> not (sameName h.Name e.Name))
            if e.HasValue then kept @ [ TextEntry.Set(e.Name, e.Value) ] else kept)

    // Arguments: an entry without a value deletes; the first value of a name replaces the
    // client's values, later values of the name add to it.
    let changed = Collections.Generic.HashSet<string>(StringComparer.Ordinal)

    let args =
        (request.Args, rewrite.Args)
        ||> Array.fold (fun args e ->
            if not e.HasValue then
                args |> List.filter (fun a -> a.Name <> e.Name)
            elif changed.Add e.Name then
                (args |> List.filter (fun a -> a.Name <> e.Name)) @ [ e ]
            else
                args @ [ e ])

    let hostChange = rewrite.Headers |> Array.tryFindBack (fun e -> sameName e.Name "host" && e.HasValue)

    let ignored =
        rewrite.RespHeaders
        |> Array.filter (fun e -> excludedResponseHeaders.Contains(e.Name.ToLowerInvariant()))
        |> Array.map (fun e -> e.Name.ToLowerInvariant())
        |> Array.distinct

    { Method = request.Method
      Path = (if isNull rewrite.Path then request.Path else rewrite.Path)
      Query = (if rewrite.Args.Length = 0 then request.RawQuery else encodeQuery args)
      Headers = headers
      Body = (match nonEmpty rewrite.Body with
              | Some body -> Some body
              | None -> request.Body)
      ResponseHeaders =
        rewrite.RespHeaders
        |> Seq.filter (fun e -> not (excludedResponseHeaders.Contains(e.Name.ToLowerInvariant())))
        |> setThenAdd
      Notes =
        [ if not (isNull rewrite.Path) then $"path rewritten to {rewrite.Path}"
          match hostChange with
          | Some host -> $"upstream host set to {host.Value} (a host header changes it)"
          | None -> ()
          if rewrite.Args.Length > 0 then "query rebuilt from the changed arguments"
          match nonEmpty rewrite.Body with
          | Some body -> $"body replaced ({body.Length} bytes)"
          | None -> ()
          if ignored.Length > 0 then
              $"""response headers APISIX ignores in a Rewrite, dropped: {String.Join(", ", ignored)}""" ] }

/// The response phase: the response the client gets from the upstream's answer and the runner's.
let responded (upstream: UpstreamAnswer) (answer: HttpRespCall.Resp) : ClientResponse =
    let body = nonEmpty answer.Body

    let headers, headerNote =
        if answer.Headers.Length > 0 then
            setThenAdd answer.Headers, "headers: the runner's, in place of the upstream's"
        else
            let dropped =
                upstream.Headers
                |> List.filter (fun h -> excludedResponseHeaders.Contains(h.Name.ToLowerInvariant()))
                |> List.map (fun h -> h.Name.ToLowerInvariant())
                |> List.distinct

            upstream.Headers |> List.filter (fun h -> not (excludedResponseHeaders.Contains(h.Name.ToLowerInvariant()))),
            match dropped with
            | [] -> "headers: the upstream's (the runner sent none)"
            | names -> $"""headers: the upstream's (the runner sent none), less those APISIX drops here: {String.Join(", ", names)}"""

    { Status = (if answer.Status = 0us then upstream.Status else int answer.Status)
      Headers = headers
      Body = (match body with
              | Some b -> Some b
              | None -> upstream.Body)
      Notes =
        [ if answer.Status = 0us then "status: the upstream's" else $"status: the runner's ({answer.Status})"
          headerNote
          match body with
          | Some b -> $"body: the runner's ({b.Length} bytes)"
          | None -> "body: the upstream's" ] }
