module Apisix.Runner.Tests.RoundTripTests

open Xunit
open Apisix.Runner

[<Fact>]
let ``prepare conf resp round trips`` () =
    use b = new FlatBufferBuilder()
    let frame = (Encode.prepareConfResp b { ConfToken = 7u }) |> Result.defaultWith (fun _ -> failwith "enc")
    let body = frame.Span.Slice(4)
    Assert.Equal(Ok { PrepareConf.Resp.ConfToken = 7u }, Decode.prepareConfResp body)
