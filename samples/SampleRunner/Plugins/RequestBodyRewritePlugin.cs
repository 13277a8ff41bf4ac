using System.Text;
using Apisix.Runner.CSharp;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="RequestBodyRewritePlugin"/>.</summary>
public sealed record RequestBodyRewriteConfig
{
    /// <summary>The body the upstream gets instead of the client's; none or empty: the plugin does nothing.</summary>
    public string? NewBody { get; set; }
}

/// <summary>
/// <c>request-body-rewrite</c> {"new_body": "..."}: replaces the request body sent upstream. Without
/// <c>new_body</c>, or with an empty one, the request goes on untouched, as with the Go runner.
/// </summary>
public sealed class RequestBodyRewritePlugin()
    : PluginBase<RequestBodyRewriteConfig>(SampleJsonContext.Default.RequestBodyRewriteConfig)
{
    private ReadOnlyMemory<byte> _body; // encoded once per route configuration, not per request

    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(RequestBodyRewriteConfig config)
    {
        _body = Encoding.UTF8.GetBytes(config.NewBody ?? "");
        return [];
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        if (!_body.IsEmpty)
        {
            request.SetBody(_body);
        }

        return Continue();
    }
}
