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
    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(Config.Body))
        {
            return Continue();
        }

        response.SetHeader("X-Resp-A6-Runner", "DotNet");
        response.SetBody(Config.Body);
        return Stop();
    }
}
