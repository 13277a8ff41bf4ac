/// Typed configuration binding (PluginConfig, Plugin.ofJson), every value of a header
/// (Request/Response.HeaderValues), DI-aware registration and the answer helpers (TestAnswer):
/// what the C# facade offers, offered by the F# core.
module Apisix.Runner.Tests.PluginConfigTests

open System
open System.Collections.Generic
open System.Text
open System.Text.Json
open System.Text.Json.Serialization.Metadata
open System.Threading
open System.Threading.Tasks
open Microsoft.Extensions.DependencyInjection
open Xunit
open Apisix.Runner
open Apisix.Runner.Filter

/// A configuration shaped like the Go runner's fault-injection sample.
[<CLIMutable>]
type Fault =
    { HttpStatus: int
      Body: string
      Tags: string[] }

let private faultInfo = PluginConfig.reflectionTypeInfo<Fault> ()

let private noProblems (_: Fault) : string seq = Seq.empty

let private okValue =
    function
    | Ok v -> v
    | Error e -> failwith $"expected Ok, got Error {e}"

let private errorValue =
    function
    | Ok v -> failwith $"expected Error, got Ok {v}"
    | Error e -> e

// ---- PluginConfig.bind ----

[<Fact>]
let ``bind reads snake_case names without case and ignores unknown properties`` () =
    let fault =
        PluginConfig.bind faultInfo noProblems """{"http_status": 403, "BODY": "no", "Tags": ["a", "b"], "unknown": true}"""
        |> okValue

    Assert.Equal(403, fault.HttpStatus)
    Assert.Equal("no", fault.Body)
    Assert.Equal<string[]>([| "a"; "b" |], fault.Tags)

[<Theory>]
[<InlineData("")>]
[<InlineData("   ")>]
[<InlineData(null: string)>]
let ``an empty configuration reads as an empty object`` (json: string) =
    let fault = PluginConfig.bind faultInfo noProblems json |> okValue
    Assert.Equal(0, fault.HttpStatus)
    Assert.Null(fault.Body)

[<Theory>]
[<InlineData("not json")>]
[<InlineData("""{"http_status": "ten"}""")>]
[<InlineData("[1, 2]")>]
[<InlineData("""{"http_status": 1""")>]
let ``JSON that does not bind gives one invalid-JSON message and skips validation`` (json: string) =
    let mutable validated = false

    let validate (_: Fault) : string seq =
        validated <- true
        Seq.empty

    let problems = PluginConfig.bind faultInfo validate json |> errorValue
    let problem = Assert.Single problems
    Assert.StartsWith("invalid JSON configuration: ", problem)
    // The serializer's own explanation follows, so the operator sees what is wrong.
    Assert.True(problem.Length > "invalid JSON configuration: ".Length)
    Assert.False validated

[<Fact>]
let ``the literal null is rejected with its own message`` () =
    let problems = PluginConfig.bind faultInfo noProblems " null " |> errorValue
    Assert.Equal<string list>([ "the configuration is null: expected a JSON object" ], problems)

[<Fact>]
let ``every validation message is kept, in order; none accepts the bound value`` () =
    let validate (f: Fault) =
        seq {
            if String.IsNullOrEmpty f.Body then "body is required"
            if f.HttpStatus < 200 then $"http_status must be at least 200, got {f.HttpStatus}"
        }

    Assert.Equal<string list>(
        [ "body is required"; "http_status must be at least 200, got 100" ],
        PluginConfig.bind faultInfo validate """{"http_status": 100}""" |> errorValue
    )

    let fault = PluginConfig.bind faultInfo validate """{"http_status": 418, "body": "teapot"}""" |> okValue
    Assert.Equal(418, fault.HttpStatus)
    Assert.Equal("teapot", fault.Body)

[<Fact>]
let ``validate sees the bound configuration`` () =
    let seen = List<Fault>()

    let validate (f: Fault) : string seq =
        seen.Add f
        Seq.empty

    PluginConfig.bind faultInfo validate """{"http_status": 500}""" |> okValue |> ignore
    Assert.Equal(500, (Assert.Single seen).HttpStatus)

[<Fact>]
let ``bind works with a JsonTypeInfo made without reflection`` () =
    // Metadata as source generation produces it: no reflection-based resolver anywhere.
    let options = JsonSerializerOptions(TypeInfoResolver = JsonTypeInfoResolver.Combine())
    let intInfo = JsonMetadataServices.CreateValueInfo<int>(options, JsonMetadataServices.Int32Converter)
    let stringInfo = JsonMetadataServices.CreateValueInfo<string>(options, JsonMetadataServices.StringConverter)
    let positive (n: int) = if n > 0 then Seq.empty else Seq.singleton $"must be above 0, got {n}"

    Assert.Equal(Ok 42, PluginConfig.bind intInfo positive "42")
    Assert.Equal(Error [ "must be above 0, got -1" ], PluginConfig.bind intInfo positive "-1")
    Assert.StartsWith("invalid JSON configuration: ", PluginConfig.bind intInfo positive "" |> errorValue |> List.exactlyOne)
    Assert.Equal(Ok "hi", PluginConfig.bind stringInfo PluginConfig.accept "\"hi\"")
    Assert.Equal(Error [ "the configuration is null: expected a JSON object" ], PluginConfig.bind stringInfo PluginConfig.accept "null")

[<Fact>]
let ``the reflection options are made once, read-only, with the Go runner's naming`` () =
    let options = PluginConfig.reflectionOptions ()
    Assert.Same(options, PluginConfig.reflectionOptions ())
    Assert.True options.IsReadOnly
    Assert.True options.PropertyNameCaseInsensitive
    Assert.Equal("http_status", options.PropertyNamingPolicy.ConvertName "HttpStatus")
    Assert.Same(options, faultInfo.Options)

[<Fact>]
let ``describe and parser make the problems one message, joined as the runner logs them`` () =
    Assert.Equal("a; b", PluginConfig.describe [ "a"; "b" ])
    Assert.Equal("", PluginConfig.describe [])

    let parse = PluginConfig.parser faultInfo (fun f -> [ "one"; $"two {f.HttpStatus}" ])
    Assert.Equal(Error "one; two 7", parse """{"http_status": 7}""")

// ---- Plugin.ofJson ----

let private faultFilter (f: Fault) : Filter = respond (uint16 f.HttpStatus) [ "x-tags", String.Join(",", f.Tags) ] f.Body

let private requireBody (f: Fault) =
    if String.IsNullOrEmpty f.Body then Seq.singleton "body is required" else Seq.empty

[<Fact>]
let ``ofJson binds once per PrepareConf and runs the request filter made from the configuration`` () =
    let plugin = Plugin.ofJson "fault" faultInfo requireBody faultFilter

    let chain =
        PluginTestKit.Prepare [ plugin, """{"http_status": 503, "body": "down", "tags": ["x", "y"]}""" ] |> okValue

    Assert.Single chain.RequestFilters |> ignore
    Assert.Empty chain.ResponseFilters

    let result = PluginTestKit.RunRequestAsync(chain, TestRequest()).Result

    match result.Answer.Action with
    | HttpReqCall.Stop stop ->
        Assert.Equal(503us, stop.Status)
        Assert.Equal("down", TestAnswer.text stop.Body)
        Assert.Equal(ValueSome "x,y", TestAnswer.first "X-Tags" stop.Headers)
    | other -> failwith $"expected a Stop, got {TestAnswer.describe other}"

[<Fact>]
let ``ofJson rejects a configuration with the joined problems, naming the plugin`` () =
    let plugin = Plugin.ofJson "fault" faultInfo requireBody faultFilter
    Assert.Equal(Error "body is required", plugin.Prepare "{}")

    let problems = PluginTestKit.Prepare [ plugin, "{oops" ] |> errorValue
    Assert.StartsWith("plugin 'fault' rejected its configuration: invalid JSON configuration: ", List.exactlyOne problems)

[<Fact>]
let ``ofJsonResponse makes a response-phase plugin`` () =
    let shout (f: Fault) : Filter =
        fun _ resp ->
            resp.Status <- uint16 f.HttpStatus
            resp.SetBody f.Body
            next

    let plugin = Plugin.ofJsonResponse "shout" faultInfo requireBody shout
    let chain = PluginTestKit.Prepare [ plugin, """{"http_status": 201, "body": "LOUD"}""" ] |> okValue
    Assert.Empty chain.RequestFilters
    let result = PluginTestKit.RunResponseAsync(chain, TestUpstream()).Result
    Assert.Equal(201us, result.Answer.Status)
    Assert.Equal("LOUD", TestAnswer.text result.Answer.Body)
    Assert.False(TestAnswer.isUnchanged result.Answer)

// ---- HeaderValues ----

/// Plays APISIX's side of ExtraInfo: nothing is set.
type private NoExtraInfo() =
    interface IExtraInfoSource with
        member _.Fetch(_, _) = ValueTask<byte[] voption>(ValueNone)

let private bodyOf (encode: FlatBufferBuilder -> 'T -> Result<ReadOnlyMemory<byte>, EncodeError>) (message: 'T) =
    use b = new FlatBufferBuilder()

    match encode b message with
    | Ok frame -> ReadOnlyMemory(frame.Slice(Frame.HeaderLength).ToArray())
    | Error e -> failwith (e.Describe())

let private viewOf =
    function
    | Ok v -> v
    | Error(e: DecodeError) -> failwith (e.Describe())

let private requestWith (headers: TextEntry[]) =
    let message: HttpReqCall.Req =
        { Id = 1u
          SrcIp = [| 127uy; 0uy; 0uy; 1uy |]
          Method = Method.GET
          Path = "/"
          Args = [||]
          Headers = headers
          ConfToken = 1u }

    let req = Request()
    req.Reset(viewOf (HttpReqCallView.Read(bodyOf Encode.httpReqCallReq message)), 1u, NoExtraInfo(), CancellationToken.None)
    let resp = Response()
    resp.Reset(Unchecked.defaultof<_>, NoExtraInfo(), CancellationToken.None)
    req, resp

let private upstreamWith (headers: TextEntry[]) =
    let message: HttpRespCall.Req =
        { Id = 1u
          Status = 200us
          Headers = headers
          ConfToken = 1u }

    let req = Request()
    req.Reset(Unchecked.defaultof<_>, 1u, NoExtraInfo(), CancellationToken.None)
    let resp = Response()
    resp.Reset(viewOf (HttpRespCallView.Read(bodyOf Encode.httpRespCallReq message)), NoExtraInfo(), CancellationToken.None)
    req, resp

[<Fact>]
let ``Request.HeaderValues gives every original value in order, case ignored`` () =
    let req, _ =
        requestWith [| TextEntry.Set("accept", "a/b"); TextEntry.Set("x-multi", "1"); TextEntry.Set("host", "h"); TextEntry.Set("x-multi", "2") |]

    Assert.Equal<string[]>([| "1"; "2" |], req.HeaderValues "X-Multi")
    Assert.Equal<string[]>([| "h" |], req.HeaderValues "host")
    Assert.Equal<string[]>([||], req.HeaderValues "absent")
    Assert.False req.Changed

[<Fact>]
let ``Request.HeaderValues applies the chain's changes`` () =
    let req, _ = requestWith [| TextEntry.Set("x-multi", "1"); TextEntry.Set("x-multi", "2"); TextEntry.Set("x-gone", "v") |]
    req.SetHeader("X-MULTI", "3")
    req.DeleteHeader "x-gone"
    req.SetHeader("x-new", "n")
    Assert.Equal<string[]>([| "3" |], req.HeaderValues "x-multi")
    Assert.Equal<string[]>([||], req.HeaderValues "x-gone")
    Assert.Equal<string[]>([| "n" |], req.HeaderValues "X-New")
    // The first value agrees with Header.
    let values = req.HeaderValues "x-multi"
    Assert.Equal(req.Header "x-multi", ValueSome values[0])

[<Fact>]
let ``Request.HeaderValues is empty in the response phase, where APISIX sends no headers`` () =
    let req, _ = upstreamWith [| TextEntry.Set("x-multi", "1") |]
    Assert.Equal<string[]>([||], req.HeaderValues "x-multi")

[<Fact>]
let ``Response.HeaderValues in the request phase holds what filters set`` () =
    let _, resp = requestWith [| TextEntry.Set("x-a", "from the request") |]
    Assert.Equal<string[]>([||], resp.HeaderValues "x-a")
    resp.SetHeader("X-A", "1")
    resp.AddHeader("x-a", "2")
    Assert.Equal<string[]>([| "1"; "2" |], resp.HeaderValues "x-a")
    resp.DeleteHeader "x-a"
    Assert.Equal<string[]>([||], resp.HeaderValues "x-a")

/// The values of `name` in a response-phase answer, as APISIX gets them.
let private sent (resp: Response) (name: string) =
    let answer = resp.AnswerHeaders.ToArray()
    // No change sends no headers: APISIX keeps the upstream's.
    let answer = if answer.Length = 0 then resp.UpstreamHeaders.ToArray() else answer
    TestAnswer.values name answer

[<Fact>]
let ``Response.HeaderValues in the response phase is what the answer will carry`` () =
    let _, resp =
        upstreamWith [| TextEntry.Set("set-cookie", "a=1"); TextEntry.Set("content-type", "text/plain"); TextEntry.Set("set-cookie", "b=2") |]

    Assert.Equal<string[]>([| "a=1"; "b=2" |], resp.HeaderValues "Set-Cookie")
    Assert.Equal<string[]>(sent resp "set-cookie", resp.HeaderValues "set-cookie")

    resp.AddHeader("x-added", "1")
    resp.AddHeader("x-added", "2")
    resp.DeleteHeader "content-type"

    for name in [ "set-cookie"; "x-added"; "content-type"; "absent" ] do
        Assert.Equal<string[]>(sent resp name, resp.HeaderValues name)

    Assert.Equal<string[]>([| "1"; "2" |], resp.HeaderValues "x-added")
    Assert.Equal<string[]>([||], resp.HeaderValues "content-type")

    resp.SetHeader("set-cookie", "c=3")
    Assert.Equal<string[]>([| "c=3" |], resp.HeaderValues "set-cookie")
    Assert.Equal<string[]>(sent resp "set-cookie", resp.HeaderValues "set-cookie")

// ---- AddPlugin with a factory ----

type private Greeting(text: string) =
    member _.Text = text

[<Fact>]
let ``AddPlugin with a factory makes the plugin from the built services`` () =
    let services = ServiceCollection()
    services.AddSingleton(Greeting "bonjour") |> ignore
    let mutable made = 0

    services.AddPlugin(
        Func<IServiceProvider, Plugin>(fun sp ->
            made <- made + 1
            let greeting = sp.GetRequiredService<Greeting>()
            Plugin.ofFilter "greet" (respond 200us [] greeting.Text))
    )
    |> ignore

    Assert.Equal(0, made)
    use provider = services.BuildServiceProvider()
    let plugins = provider.GetServices<Plugin>() |> List.ofSeq
    Assert.Equal("greet", (List.exactlyOne plugins).Name)
    Assert.Same(List.exactlyOne plugins, provider.GetRequiredService<Plugin>())
    Assert.Equal(1, made)

    let chain = PluginTestKit.Prepare [ List.exactlyOne plugins, "" ] |> okValue

    match (PluginTestKit.RunRequestAsync(chain, TestRequest()).Result).Answer.Action with
    | HttpReqCall.Stop stop -> Assert.Equal("bonjour", TestAnswer.text stop.Body)
    | other -> failwith $"expected a Stop, got {TestAnswer.describe other}"

// ---- TestAnswer ----

let private entries =
    [| TextEntry.Set("X-A", "1")
       TextEntry.Delete "x-gone"
       TextEntry.Set("x-a", "2")
       TextEntry.Set("x-b", "")
       TextEntry.Set("X-Gone", "back") |]

[<Fact>]
let ``first gives the first value of a name, case ignored, deletions skipped`` () =
    Assert.Equal(ValueSome "1", TestAnswer.first "x-a" entries)
    Assert.Equal(ValueSome "", TestAnswer.first "X-B" entries)
    Assert.Equal(ValueSome "back", TestAnswer.first "x-gone" entries)
    Assert.Equal(ValueNone, TestAnswer.first "absent" entries)
    Assert.Equal(ValueNone, TestAnswer.first "x-a" [||])

[<Fact>]
let ``values gives every value of a name in order; deletes finds an entry without a value`` () =
    Assert.Equal<string[]>([| "1"; "2" |], TestAnswer.values "X-a" entries)
    Assert.Equal<string[]>([| "back" |], TestAnswer.values "x-gone" entries)
    Assert.Equal<string[]>([||], TestAnswer.values "absent" entries)
    Assert.True(TestAnswer.deletes "X-GONE" entries)
    Assert.False(TestAnswer.deletes "x-a" entries)
    Assert.False(TestAnswer.deletes "absent" entries)

[<Fact>]
let ``text, isUnchanged and describe read answers`` () =
    Assert.Equal("héllo", TestAnswer.text (Encoding.UTF8.GetBytes "héllo"))
    Assert.Equal("", TestAnswer.text [||])
    Assert.Equal("", TestAnswer.text null)

    let unchanged: HttpRespCall.Resp = { Id = 1u; Status = 0us; Headers = [||]; Body = [||] }
    Assert.True(TestAnswer.isUnchanged unchanged)
    Assert.False(TestAnswer.isUnchanged { unchanged with Status = 200us })
    Assert.False(TestAnswer.isUnchanged { unchanged with Headers = [| TextEntry.Set("a", "b") |] })
    Assert.False(TestAnswer.isUnchanged { unchanged with Body = [| 1uy |] })

    Assert.Equal("no action", TestAnswer.describe HttpReqCall.NoAction)
    Assert.Equal("Stop", TestAnswer.describe (HttpReqCall.Stop { Status = 200us; Headers = [||]; Body = [||] }))

    Assert.Equal(
        "Rewrite",
        TestAnswer.describe (
            HttpReqCall.Rewrite
                { Path = ValueNone
                  Headers = [||]
                  Args = [||]
                  RespHeaders = [||]
                  Body = [||] }
        )
    )

[<Fact>]
let ``the helpers read a Rewrite decoded from a real run`` () =
    let rewrite =
        Plugin.ofFilter "rw" (fun req resp ->
            req.SetHeader("X-Set", "v")
            req.DeleteHeader "x-drop"
            req.AddArg("a", "3")
            req.DeleteArg "b"
            resp.SetHeader("x-resp", "r")
            next)

    let chain = PluginTestKit.Prepare [ rewrite, "" ] |> okValue

    let request =
        TestRequest().WithHeader("x-drop", "1").WithArg("a", "1").WithArg("a", "2").WithArg("b", "x")

    match (PluginTestKit.RunRequestAsync(chain, request).Result).Answer.Action with
    | HttpReqCall.Rewrite rw ->
        Assert.Equal(ValueSome "v", TestAnswer.first "x-set" rw.Headers)
        Assert.True(TestAnswer.deletes "X-Drop" rw.Headers)
        Assert.Equal<string[]>([| "1"; "2"; "3" |], TestAnswer.values "a" rw.Args)
        Assert.True(TestAnswer.deletes "b" rw.Args)
        Assert.Equal(ValueNone, TestAnswer.first "b" rw.Args)
        Assert.Equal(ValueSome "r", TestAnswer.first "x-resp" rw.RespHeaders)
    | other -> failwith $"expected a Rewrite, got {TestAnswer.describe other}"
