using System.Net.Sockets;
using Microsoft.FSharp.Core;

namespace Apisix.Runner.Samples.Tests.Support;

/// <summary>Plays APISIX on one connection to a runner's socket, with the core's codec.</summary>
public sealed class ApisixConnection : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly FrameBuilder _builder = new(1024);

    public ApisixConnection(string socketPath) => _socket.Connect(new UnixDomainSocketEndPoint(socketPath));

    public async Task<RunnerMessage> PrepareAsync(params (string Name, string Config)[] conf)
    {
        var request = new PrepareConf.Req([.. conf.Select(c => TextEntry.Set(c.Name, c.Config))], null);
        await SendAsync(Encode.prepareConfReq(_builder, request));
        return await ReceiveAsync();
    }

    public async Task<RunnerMessage> CallAsync(uint token, string path)
    {
        var request = new HttpReqCall.Req(1, [127, 0, 0, 1], Method.GET, path, [], [TextEntry.Set("host", "example.com")], token);
        await SendAsync(Encode.httpReqCallReq(_builder, request));
        return await ReceiveAsync();
    }

    public async Task<RunnerMessage> RespondAsync(uint token, ushort status)
    {
        var request = new HttpRespCall.Req(2, status, [TextEntry.Set("content-type", "text/plain")], token);
        await SendAsync(Encode.httpRespCallReq(_builder, request));
        return await ReceiveAsync();
    }

    public async Task<RunnerMessage> ReplyAsync(byte[]? value)
    {
        var reply = new ExtraInfo.Resp(value is null ? FSharpValueOption<byte[]>.None : FSharpValueOption<byte[]>.NewValueSome(value));
        await SendAsync(Encode.extraInfoResp(_builder, reply));
        return await ReceiveAsync();
    }

    public void Dispose()
    {
        _socket.Dispose();
        _builder.Dispose();
    }

    private async Task SendAsync(FSharpResult<ReadOnlyMemory<byte>, EncodeError> frame)
    {
        Assert.True(frame.IsOk);
        await _socket.SendAsync(frame.ResultValue);
    }

    private async Task<RunnerMessage> ReceiveAsync()
    {
        var header = new byte[4];
        await ReadExactlyAsync(header);
        var body = new byte[(header[1] << 16) | (header[2] << 8) | header[3]];
        await ReadExactlyAsync(body);
        var message = Decode.runnerMessage((FrameType)header[0], body);
        Assert.True(message.IsOk, message.IsOk ? "" : message.ErrorValue.Describe());
        return message.ResultValue;
    }

    private async Task ReadExactlyAsync(Memory<byte> buffer)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        while (!buffer.IsEmpty)
        {
            var n = await _socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);

            if (n == 0)
            {
                throw new IOException("the runner closed the connection");
            }

            buffer = buffer[n..];
        }
    }
}
