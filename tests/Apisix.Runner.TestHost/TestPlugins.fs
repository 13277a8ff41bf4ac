/// Plugins that exercise the runner in tests: each does one observable thing.
module Apisix.Runner.TestHost.TestPlugins

open System
open System.Text
open System.Text.Json
open System.Threading.Tasks
open Apisix.Runner

let private json (text: string) : Result<JsonElement, string> =
    try
        Ok(JsonDocument.Parse(if String.IsNullOrWhiteSpace text then "{}" else text).RootElement)
    with :? JsonException as e ->
        Error e.Message

/// A property of a JSON object of the given kind.
let private prop (e: JsonElement) (name: string) (kind: JsonValueKind) =
    match e.ValueKind with
    | JsonValueKind.Object ->
        match e.TryGetProperty name with
        | true, v when v.ValueKind = kind -> Some v
        | _ -> None
    | _ -> None

let private str e name =
    prop e name JsonValueKind.String |> Option.map _.GetString()

let private props e name =
    match prop e name JsonValueKind.Object with
    | Some v -> [ for p in v.EnumerateObject() -> p.Name, (if p.Value.ValueKind = JsonValueKind.Null then None else Some(p.Value.ToString())) ]
    | None -> []

let private names e name =
    match prop e name JsonValueKind.Array with
    | Some v -> [ for x in v.EnumerateArray() -> x.GetString() ]
    | None -> []

let private int' e name (fallback: int) =
    prop e name JsonValueKind.Number |> Option.map _.GetInt32() |> Option.defaultValue fallback

/// `stop` {"status", "headers": {name: value}, "body"}: answers at once.
let stop =
    Plugin.create "stop" json (fun c ->
        respond (int' c "status" 200) [ for n, v in props c "headers" -> n, defaultArg v "" ] (defaultArg (str c "body") ""))

/// `rewrite` {"path", "headers": {name: value|null}, "args": {name: value|null}, "resp_headers": {...}, "body"}.
let rewrite =
    Plugin.create "rewrite" json (fun c ->
        fun req resp ->
            str c "path" |> Option.iter req.SetPath

            for n, v in props c "headers" do
                match v with
                | Some v -> req.SetHeader(n, v)
                | None -> req.DeleteHeader n

            for n, v in props c "args" do
                match v with
                | Some v -> req.AddArg(n, v)
                | None -> req.DeleteArg n

            for n, v in props c "resp_headers" do
                resp.SetHeader(n, defaultArg v "")

            str c "body" |> Option.iter (fun b -> req.SetBody b)
            proceed)

/// `mirror`: copies what it sees into request headers x-seen-*, so a test can check what a filter saw.
let mirror =
    Plugin.ofFilter "mirror" (fun req _ ->
        req.SetHeader("x-seen-path", req.Path)
        req.SetHeader("x-seen-method", string (byte req.Method))
        req.SetHeader("x-seen-ip", string req.SrcIp)
        req.SetHeader("x-seen-host", req.Header "host" |> ValueOption.defaultValue "(none)")
        req.SetHeader("x-seen-args", String.Join(",", req.ArgValues "a"))
        proceed)

/// `vars` {"names": [...]}: reads nginx variables on demand (twice each) into x-var-NAME headers.
let vars =
    Plugin.create "vars" json (fun c ->
        let wanted = names c "names"

        fun req _ ->
            task {
                for n in wanted @ wanted do
                    match! req.Var n with
                    | ValueSome v -> req.SetHeader("x-var-" + n, v)
                    | ValueNone -> req.SetHeader("x-var-" + n, "(unset)")

                return Decision.Continue
            }
            |> ValueTask<Decision>)

/// `prefetch` {"names": [...]}: the same, but declared up front so the runner asks before the chain.
let prefetch =
    { Name = "prefetch"
      Prepare =
        fun text ->
            json text
            |> Result.bind (fun c ->
                match vars.Prepare text with
                | Ok f -> Ok { f with Prefetch = [ for n in names c "names" -> ExtraInfo.Var n ] @ [ ExtraInfo.ReqBody ] }
                | Error e -> Error e) }

/// `body`: reads the request body and sends it upstream upper-cased, with x-body-length.
let body =
    Plugin.ofFilter "body" (fun req _ ->
        task {
            match! req.Body() with
            | ValueSome b ->
                req.SetHeader("x-body-length", string b.Length)
                req.SetBody((Encoding.UTF8.GetString b).ToUpperInvariant())
            | ValueNone -> req.SetHeader("x-body-length", "(none)")

            return Decision.Continue
        }
        |> ValueTask<Decision>)

/// `resp` (response phase): reads the upstream status, headers and body, and answers with them changed.
let resp =
    Plugin.createResponse "resp" json (fun c ->
        fun _ r ->
            task {
                let! upstream = r.UpstreamBody()
                let text = upstream |> ValueOption.map Encoding.UTF8.GetString |> ValueOption.defaultValue "(none)"
                r.Status <- int' c "status" r.UpstreamStatus
                r.SetHeader("x-upstream-status", string r.UpstreamStatus)
                r.SetHeader("x-upstream-type", r.Header "content-type" |> ValueOption.defaultValue "(none)")
                r.SetBody(text.ToUpperInvariant())
                return Decision.Continue
            }
            |> ValueTask<Decision>)

/// `throw`: fails every call.
let throw' =
    Plugin.ofFilter "throw" (fun _ _ -> raise (InvalidOperationException "plugin failure on purpose"))

/// `hang`: never finishes and ignores cancellation.
let hang =
    Plugin.ofFilter "hang" (fun _ _ -> ValueTask<Decision>(TaskCompletionSource<Decision>().Task))

/// `slow` {"ms"}: awaits that long (honouring cancellation), then goes on.
let slow =
    Plugin.create "slow" json (fun c ->
        let delay = TimeSpan.FromMilliseconds(float (int' c "ms" 100))

        fun req _ ->
            task {
                do! Task.Delay(delay, req.CancellationToken)
                return Decision.Continue
            }
            |> ValueTask<Decision>)

/// `block` {"ms"}: blocks its thread that long (a synchronous wait, as a plugin calling blocking
/// IO would), then goes on.
let block =
    Plugin.create "block" json (fun c ->
        let ms = int' c "ms" 100

        fun _ _ ->
            Threading.Thread.Sleep ms
            proceed)

/// `spin`: computes forever on its thread, never looking at its cancellation token.
let spin =
    Plugin.ofFilter "spin" (fun _ _ ->
        let mutable n = 0L

        while n >= 0L do
            n <- (n + 1L) % Int64.MaxValue

        proceed)

/// `picky` {"ok": true}: rejects every configuration without "ok": true.
let picky =
    Plugin.create
        "picky"
        (fun text ->
            json text
            |> Result.bind (fun c ->
                match prop c "ok" JsonValueKind.True with
                | Some _ -> Ok()
                | None -> Error "\"ok\" must be true"))
        (fun () -> pass)

let all = [ stop; rewrite; mirror; vars; prefetch; body; resp; throw'; hang; slow; block; spin; picky ]
