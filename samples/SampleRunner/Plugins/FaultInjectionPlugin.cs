using Apisix.Runner.CSharp;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="FaultInjectionPlugin"/>.</summary>
public sealed record FaultInjectionConfig
{
    /// <summary>The body of the injected answer; none: an empty body.</summary>
    public string? Body { get; set; }

    /// <summary>The status of the injected answer, 200 to 599. Required.</summary>
    public int HttpStatus { get; set; }

    /// <summary>The share of requests that get it, 0 to 100 (per cent); 100 when not given.</summary>
    public int Percentage { get; set; } = 100;
}

/// <summary>
/// <c>fault-injection</c> {"http_status": 503, "body": "down", "percentage": 10}: answers that share of
/// the requests itself with that status and body, picked at random; the others go on untouched.
/// A configuration without a valid status or with a share outside 0..100 is rejected.
/// </summary>
/// <param name="random">
/// Where the share is drawn from: a <see cref="Random"/> registered in the services (tests register
/// a seeded one), else <see cref="Random.Shared"/>, which is safe across connections.
/// </param>
public sealed class FaultInjectionPlugin(Random? random = null)
    : PluginBase<FaultInjectionConfig>(SampleJsonContext.Default.FaultInjectionConfig)
{
    private readonly Random _random = random ?? Random.Shared;

    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(FaultInjectionConfig config)
    {
        if (config.HttpStatus is < 200 or > 599)
        {
            yield return $"http_status is required and must be between 200 and 599, got {config.HttpStatus}";
        }

        if (config.Percentage is < 0 or > 100)
        {
            yield return $"percentage must be between 0 and 100, got {config.Percentage}";
        }
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        if (_random.Next(100) >= Config.Percentage)
        {
            return Continue();
        }

        response.Status = Config.HttpStatus;

        if (!string.IsNullOrEmpty(Config.Body))
        {
            response.SetBody(Config.Body);
        }

        return Stop();
    }
}
