using System.Text;
using Apisix.Runner.CSharp;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="SayPlugin"/>.</summary>
public sealed record SayConfig
{
    /// <summary>The body to answer with; none: the plugin does nothing.</summary>
    public string? Body { get; set; }
}

/// <summary>
/// <c>say</c> {"body": "hello"}: answers the client itself with that body and a header
/// <c>X-Resp-A6-Runner: DotNet</c>, without the upstream. Without a body it lets the request go on
/// untouched. The hello world of plugins, as in the Go runner.
/// </summary>
public sealed class SayPlugin() : PluginBase<SayConfig>(SampleJsonContext.Default.SayConfig)
{
    private ReadOnlyMemory<byte> _body; // encoded once per route configuration, not per request

    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(SayConfig config)
    {
        _body = Encoding.UTF8.GetBytes(config.Body ?? "");
        return [];
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        if (_body.IsEmpty)
        {
            return Continue();
        }

        response.SetHeader("X-Resp-A6-Runner", "DotNet");
        response.SetBody(_body);
        return Stop();
    }
}
