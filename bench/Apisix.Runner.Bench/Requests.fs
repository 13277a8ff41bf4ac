/// The messages the benchmarks encode and decode, built once.
module Apisix.Runner.Bench.Requests

open System
open Apisix.Runner

/// 10 browser-like request headers, lower case as nginx gives them, with the values loadgen
/// sends (shared/loadgen/loadgen.c); cookie is the last one, so a lookup of it scans them all.
let headers =
    [| TextEntry.Set("host", "127.0.0.1:9080")
       TextEntry.Set("connection", "keep-alive")
       TextEntry.Set(
           "user-agent",
           "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
       )
       TextEntry.Set(
           "accept",
           "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
       )
       TextEntry.Set("accept-encoding", "gzip, deflate, br")
       TextEntry.Set("accept-language", "en-US,en;q=0.9")
       TextEntry.Set("sec-fetch-site", "none")
       TextEntry.Set("sec-fetch-mode", "navigate")
       TextEntry.Set("sec-fetch-dest", "document")
       TextEntry.Set("cookie", "session=3f2a9c0d1e4b5a69788776655443; theme=dark; _ga=GA1.1.1234567890.1700000000") |]

/// An HTTPReqCall.Req like loadgen's default one: GET /get?q=apisix&page=2 from 192.168.1.23.
let request: HttpReqCall.Req =
    { Id = 42u
      SrcIp = [| 192uy; 168uy; 1uy; 23uy |]
      Method = Method.GET
      Path = "/get"
      Args = [| TextEntry.Set("q", "apisix"); TextEntry.Set("page", "2") |]
      Headers = headers
      ConfToken = 1u }

/// The whole frame (4-byte header + FlatBuffers body) of `request`, as APISIX would send it.
let requestFrame () : byte[] =
    use b = new FrameBuilder()

    match Encode.httpReqCallReq b request with
    | Ok frame -> frame.ToArray()
    | Error e -> failwith (e.Describe())

/// The answer the floor gives: Stop{200, [X-Resp-A6-Runner], "hello"}.
let stop: HttpReqCall.Stop =
    { Status = 200us
      Headers = [| TextEntry.Set("X-Resp-A6-Runner", "Apisix.Runner") |]
      Body = "hello"B }

let stopAction = HttpReqCall.Stop stop

let stopResp: HttpReqCall.Resp = { Id = 42u; Action = stopAction }

/// A rewrite: new path, one request header set, one argument set, a 22-byte body.
let rewrite: HttpReqCall.Rewrite =
    { Path = "/anything/rewritten"
      Headers = [| TextEntry.Set("x-rewritten-by", "apisix-runner") |]
      Args = [| TextEntry.Set("page", "3") |]
      RespHeaders = [||]
      Body = """{"status":"rewritten"}"""B }

let rewriteResp: HttpReqCall.Resp =
    { Id = 42u
      Action = HttpReqCall.Rewrite rewrite }

/// The body of a frame (everything after the 4-byte header).
let bodyOf (frame: byte[]) = ReadOnlyMemory(frame, Frame.HeaderLength, frame.Length - Frame.HeaderLength)
