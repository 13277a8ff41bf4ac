using Apisix.Runner.CSharp;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="RewritePlugin"/>.</summary>
public sealed record RewriteConfig
{
    /// <summary>The path the upstream gets (starting with <c>/</c>); none: unchanged.</summary>
    public string? Path { get; set; }

    /// <summary>Request headers to set, by name; a <c>null</c> value deletes the header.</summary>
    public Dictionary<string, string?>? Headers { get; set; }

    /// <summary>Query arguments to set, by name; a <c>null</c> value deletes the argument.</summary>
    public Dictionary<string, string?>? Args { get; set; }
}

/// <summary>
/// <c>rewrite</c> {"path": "/a6/dotnet/runner", "headers": {"X-Runner": "DotNet"}, "args": {"a6_runner": "DotNet"}}:
/// lets the request go on to another path, with headers and query arguments set or deleted (the
/// Python runner's <c>rewrite</c> example). Only what changes is sent back to APISIX.
/// </summary>
public sealed class RewritePlugin() : PluginBase<RewriteConfig>(SampleJsonContext.Default.RewriteConfig)
{
    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(RewriteConfig config)
    {
        if (config.Path is { Length: > 0 } path && !path.StartsWith('/'))
        {
            yield return $"path must start with '/', got '{path}'";
        }
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        if (!string.IsNullOrEmpty(Config.Path))
        {
            request.SetPath(Config.Path);
        }

        foreach (var (name, value) in Config.Headers ?? [])
        {
            if (value is null)
            {
                request.DeleteHeader(name);
            }
            else
            {
                request.SetHeader(name, value);
            }
        }

        foreach (var (name, value) in Config.Args ?? [])
        {
            if (value is null)
            {
                request.DeleteArg(name);
            }
            else
            {
                request.SetArg(name, value);
            }
        }

        return Continue();
    }
}
