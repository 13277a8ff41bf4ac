/// One connection to a runner, spoken as APISIX speaks it: PrepareConf, then one call, answering
/// the ExtraInfo requests the runner makes during the call. Encoded and decoded by the core's codec.
module Apisix.Runner.Cli.Conversation

open System
open System.IO
open System.Net.Sockets
open Apisix.Runner

/// Why the conversation could not go on.
type Failure =
    /// Nothing accepts connections on the socket.
    | NotListening of socket: string * reason: string
    /// The runner answered a frame with an error.
    | RunnerError of stage: string * code: Err.Code
    /// The connection broke, timed out, or carried something APISIX could not read.
    | Broken of stage: string * reason: string

exception private ConversationFailed of Failure

let private fail failure = raise (ConversationFailed failure)

/// An ExtraInfo request served during the call, and what it was answered.
type Served =
    { Asked: ExtraInfo.Info
      Answer: byte[] voption
      /// Where the answer came from (`--var`, `--client`, ...), or why there was none.
      Source: string }

/// How an ExtraInfo request is answered: the value, if any, and where it came from.
type ExtraInfoAnswers = ExtraInfo.Info -> byte[] voption * string

/// A connection to the runner's unix socket; APISIX's timeouts (connect 1 s, read and send 60 s)
/// unless told otherwise.
type Connection private (socket: Socket, stream: NetworkStream) =
    let builder = new FrameBuilder()

    /// Connects to the socket at `path`.
    static member Open(path: string, timeout: TimeSpan) : Result<Connection, Failure> =
        if not (File.Exists path) then
            Error(NotListening(path, "the socket file does not exist"))
        else
            let socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)

            try
                // A unix socket connects at once or not at all: APISIX's 1 s connect timeout never bites.
                socket.Connect(UnixDomainSocketEndPoint path)
                socket.ReceiveTimeout <- int timeout.TotalMilliseconds
                socket.SendTimeout <- int timeout.TotalMilliseconds
                Ok(new Connection(socket, new NetworkStream(socket, ownsSocket = true)))
            with :? SocketException as e ->
                socket.Dispose()

                let reason =
                    match e.SocketErrorCode with
                    | SocketError.ConnectionRefused -> "the socket file exists but nothing accepts on it (a runner that stopped without removing it?)"
                    | SocketError.AccessDenied -> "permission denied (the socket's mode or its folder's)"
                    | _ -> e.Message

                Error(NotListening(path, reason))

    member private _.Send(stage: string, frame: Result<ReadOnlyMemory<byte>, EncodeError>) =
        match frame with
        | Error e -> fail (Broken(stage, e.Describe()))
        | Ok bytes ->
            try
                stream.Write(bytes.Span)
            with :? IOException as e ->
                fail (Broken(stage, $"the runner closed the connection ({e.Message})"))

    member private _.Receive(stage: string) : RunnerMessage =
        let header = Array.zeroCreate<byte> Frame.HeaderLength

        let read (buffer: byte[]) =
            try
                stream.ReadExactly(buffer)
            with
            | :? EndOfStreamException -> fail (Broken(stage, "the runner closed the connection without answering"))
            | :? IOException as e when (e.InnerException :? SocketException) ->
                match (e.InnerException :?> SocketException).SocketErrorCode with
                | SocketError.TimedOut
                | SocketError.WouldBlock -> fail (Broken(stage, $"no answer within {socket.ReceiveTimeout / 1000} s"))
                | _ -> fail (Broken(stage, $"the connection broke ({e.InnerException.Message})"))

        read header
        let body = Array.zeroCreate<byte> ((int header[1] <<< 16) ||| (int header[2] <<< 8) ||| int header[3])
        read body

        match Decode.runnerMessage (LanguagePrimitives.EnumOfValue header[0]) (ReadOnlySpan body) with
        | Ok(ErrResp code) -> fail (RunnerError(stage, code))
        | Ok message -> message
        | Error e -> fail (Broken(stage, $"the answer is not one APISIX can read: {e.Describe()}"))

    /// Sends a route's plugin configuration and returns its conf token.
    member c.Prepare(conf: TextEntry[], key: string) : Result<uint32, Failure> =
        try
            c.Send("PrepareConf", Encode.prepareConfReq builder { Conf = conf; Key = key })

            match c.Receive "PrepareConf" with
            | PrepareConfResp resp -> Ok resp.ConfToken
            | other -> fail (Broken("PrepareConf", $"unexpected answer {other.GetType().Name}"))
        with ConversationFailed failure ->
            Error failure

    /// Sends a call and serves the runner's ExtraInfo requests until it answers; the answer and
    /// what was served, in order.
    member private c.Call(stage: string, send: FrameBuilder -> Result<ReadOnlyMemory<byte>, EncodeError>, answers: ExtraInfoAnswers) =
        try
            c.Send(stage, send builder)
            let served = Collections.Generic.List<Served>()

            let rec loop () =
                match c.Receive stage with
                | ExtraInfoReq info ->
                    let value, source = answers info
                    served.Add { Asked = info; Answer = value; Source = source }
                    c.Send(stage, Encode.extraInfoResp builder { Result = value })
                    loop ()
                | answer -> answer

            let answer = loop ()
            Ok(answer, List.ofSeq served)
        with ConversationFailed failure ->
            Error failure

    /// A request-phase call (ext-plugin-pre-req, ext-plugin-post-req).
    member c.Request(call: HttpReqCall.Req, answers: ExtraInfoAnswers) : Result<HttpReqCall.Resp * Served list, Failure> =
        c.Call("HTTPReqCall", (fun b -> Encode.httpReqCallReq b call), answers)
        |> Result.bind (function
            | HttpReqCallResp resp, served -> Ok(resp, served)
            | other, _ -> Error(Broken("HTTPReqCall", $"unexpected answer {other.GetType().Name}")))

    /// A response-phase call (ext-plugin-post-resp).
    member c.Response(call: HttpRespCall.Req, answers: ExtraInfoAnswers) : Result<HttpRespCall.Resp * Served list, Failure> =
        c.Call("HTTPRespCall", (fun b -> Encode.httpRespCallReq b call), answers)
        |> Result.bind (function
            | HttpRespCallResp resp, served -> Ok(resp, served)
            | other, _ -> Error(Broken("HTTPRespCall", $"unexpected answer {other.GetType().Name}")))

    interface IDisposable with
        member _.Dispose() =
            stream.Dispose()
            builder.Dispose()
