using Apisix.Runner.CSharp;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="StopPlugin"/>.</summary>
public sealed record StopConfig
{
    /// <summary>The status to answer with, 100 to 599; 200 when not given.</summary>
    public int Status { get; set; } = 200;

    /// <summary>Headers to answer with, by name.</summary>
    public Dictionary<string, string>? Headers { get; set; }

    /// <summary>The body to answer with; none: an empty body.</summary>
    public string? Body { get; set; }
}

/// <summary>
/// <c>stop</c> {"status": 403, "headers": {"X-Reason": "closed"}, "body": "closed"}: answers every
/// request itself with that status, headers and body, without the upstream (the Python runner's
/// <c>stop</c> example).
/// </summary>
public sealed class StopPlugin() : PluginBase<StopConfig>(SampleJsonContext.Default.StopConfig)
{
    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(StopConfig config)
    {
        if (config.Status is < 100 or > 599)
        {
            yield return $"status must be between 100 and 599, got {config.Status}";
        }
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        response.Status = Config.Status;

        foreach (var (name, value) in Config.Headers ?? [])
        {
            response.SetHeader(name, value);
        }

        if (!string.IsNullOrEmpty(Config.Body))
        {
            response.SetBody(Config.Body);
        }

        return Stop();
    }
}
