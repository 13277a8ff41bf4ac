/// A call's request and response as the connection sets them up for the plugins, with APISIX's
/// side of ExtraInfo played in memory: for the tests of filters, requests and responses.
module Apisix.Runner.Tests.Support.Calls

open System
open System.Collections.Generic
open System.Text
open System.Threading
open System.Threading.Tasks
open Apisix.Runner

/// Plays APISIX's side of ExtraInfo in memory: answers from `answer` and records every ask.
/// Answers complete later, as a socket round trip does, so filters take their asynchronous path.
type FakeSource(answer: ExtraInfo.Info -> byte[] voption) =
    let asked = List<ExtraInfo.Info>()
    member _.Asked = List.ofSeq asked

    interface IExtraInfoSource with
        member _.Fetch(tag, name) =
            let info = ExtraInfo.ofWire tag name
            asked.Add info

            ValueTask<byte[] voption>(
                task {
                    do! Task.Yield()
                    return answer info
                }
            )

/// Plays APISIX's side of ExtraInfo: nothing is set.
type NoExtraInfo() =
    interface IExtraInfoSource with
        member _.Fetch(_, _) = ValueTask<byte[] voption>(ValueNone)

let utf8 (s: string) = Encoding.UTF8.GetBytes s

/// The FlatBuffers body of a message, as the connection hands it to the views.
let bodyOf (encode: FrameBuilder -> 'T -> Result<ReadOnlyMemory<byte>, EncodeError>) (message: 'T) =
    use b = new FrameBuilder()

    match encode b message with
    | Ok frame -> ReadOnlyMemory(frame.Slice(Frame.HeaderLength).ToArray())
    | Error e -> failwith (e.Describe())

let valueOf =
    function
    | Ok v -> v
    | Error(e: DecodeError) -> failwith (e.Describe())

/// APISIX's request: `?a=1&a=2&flag`, a repeated header, nginx variable `remote_addr` and a body.
let original: HttpReqCall.Req =
    { Id = 7u
      SrcIp = [| 10uy; 0uy; 0uy; 1uy |]
      Method = Method.POST
      Path = "/orig"
      Args = [| TextEntry.Set("a", "1"); TextEntry.Set("a", "2"); TextEntry.Delete "flag" |]
      Headers = [| TextEntry.Set("host", "example.com"); TextEntry.Set("x-multi", "1"); TextEntry.Set("x-multi", "2") |]
      ConfToken = 1u }

/// What the fake APISIX answers: `remote_addr` and both bodies are set, other variables are not.
let answers =
    function
    | ExtraInfo.Var "remote_addr" -> ValueSome(utf8 "10.0.0.1")
    | ExtraInfo.ReqBody -> ValueSome(utf8 "request body")
    | ExtraInfo.RespBody -> ValueSome(utf8 "upstream body")
    | ExtraInfo.Var _ -> ValueNone

/// A request-phase call on `original`: the request, the response a Stop would send, and the fake APISIX.
let requestCall () =
    let source = FakeSource answers
    let call = Call()
    call.StartRequest(valueOf (HttpReqCallView.Read(bodyOf Encode.httpReqCallReq original)), source, CancellationToken.None)
    call.Request, call.Response, source

/// A response-phase call on an upstream 502 with two set-cookie values.
let responseCall () =
    let upstream: HttpRespCall.Req =
        { Id = 9u
          Status = 502us
          Headers = [| TextEntry.Set("content-type", "text/plain"); TextEntry.Set("set-cookie", "a=1"); TextEntry.Set("set-cookie", "b=2") |]
          ConfToken = 1u }

    let source = FakeSource answers
    let call = Call()
    call.StartResponse(valueOf (HttpRespCallView.Read(bodyOf Encode.httpRespCallReq upstream)), source, CancellationToken.None)
    call.Request, call.Response, source

/// A request-phase call of GET / with these headers; APISIX has nothing set.
let requestWith (headers: TextEntry[]) =
    let message: HttpReqCall.Req =
        { Id = 1u
          SrcIp = [| 127uy; 0uy; 0uy; 1uy |]
          Method = Method.GET
          Path = "/"
          Args = [||]
          Headers = headers
          ConfToken = 1u }

    let call = Call()
    call.StartRequest(valueOf (HttpReqCallView.Read(bodyOf Encode.httpReqCallReq message)), NoExtraInfo(), CancellationToken.None)
    call.Request, call.Response

/// A response-phase call on an upstream 200 with these headers; APISIX has nothing set.
let upstreamWith (headers: TextEntry[]) =
    let message: HttpRespCall.Req =
        { Id = 1u
          Status = 200us
          Headers = headers
          ConfToken = 1u }

    let call = Call()
    call.StartResponse(valueOf (HttpRespCallView.Read(bodyOf Encode.httpRespCallReq message)), NoExtraInfo(), CancellationToken.None)
    call.Request, call.Response

/// Runs a filter to its decision.
let run (filter: Filter) (req: Request) (resp: Response) = (filter req resp).AsTask().Result
