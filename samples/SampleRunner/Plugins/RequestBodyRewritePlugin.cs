using System.Text;
using Apisix.Runner.CSharp;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="RequestBodyRewritePlugin"/>.</summary>
public sealed record RequestBodyRewriteConfig
{
    /// <summary>The body the upstream gets instead of the client's. Required, not empty.</summary>
    public string? NewBody { get; set; }
}

/// <summary>
/// <c>request-body-rewrite</c> {"new_body": "..."}: replaces the request body sent upstream. An empty
/// or missing <c>new_body</c> is rejected (APISIX applies only a non-empty body).
/// </summary>
public sealed class RequestBodyRewritePlugin()
    : PluginBase<RequestBodyRewriteConfig>(SampleJsonContext.Default.RequestBodyRewriteConfig)
{
    private ReadOnlyMemory<byte> _body; // encoded once per route configuration, not per request

    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(RequestBodyRewriteConfig config)
    {
        if (string.IsNullOrEmpty(config.NewBody))
        {
            return ["new_body is required and must not be empty"];
        }

        _body = Encoding.UTF8.GetBytes(config.NewBody);
        return [];
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        request.SetBody(_body);
        return Continue();
    }
}
