using Apisix.Runner.CSharp;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="LimitReqPlugin"/>.</summary>
public sealed record LimitReqConfig
{
    /// <summary>Requests let through per second, more than 0 (fractions allowed: 0.5 is one every 2 s).</summary>
    public double Rate { get; set; }

    /// <summary>Requests over the rate that may wait for their turn, 0 or more; beyond them: 503.</summary>
    public int Burst { get; set; }
}

/// <summary>
/// <c>limit-req</c> {"rate": 10, "burst": 5}: lets requests through at <c>rate</c> per second, one
/// every 1/rate s, as nginx's limit_req does. A request that comes early waits, asynchronously,
/// for its turn, as long as at most <c>burst</c> requests are ahead of it; otherwise it is answered
/// 503 at once. One bucket per route configuration: each route that configures the plugin gets its
/// own plugin instance, shared by every connection. The Go runner's sample differs: it lets
/// <c>burst</c> requests through at once and makes every later one wait, without bound, and with
/// no burst it refuses every request (docs/comparison.md).
/// </summary>
/// <remarks>
/// The bucket is one number, the time the next request may go, moved forward with a
/// compare-and-swap: no lock, and no thread blocked while a request waits.
/// </remarks>
/// <param name="time">The clock: the registered <see cref="TimeProvider"/> (the runner registers the system one), else the system one.</param>
public sealed class LimitReqPlugin(TimeProvider? time = null)
    : PluginBase<LimitReqConfig>(SampleJsonContext.Default.LimitReqConfig)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private long _interval; // timestamp ticks between two requests
    private long _maxWait; // how far ahead a request may be given a turn: burst intervals
    private long _next; // when the next request may go, as a timestamp

    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(LimitReqConfig config)
    {
        if (!(config.Rate > 0 && double.IsFinite(config.Rate)))
        {
            yield return $"rate must be a number of requests per second above 0, got {config.Rate}";
            yield break;
        }

        if (config.Burst < 0)
        {
            yield return $"burst must be 0 or more, got {config.Burst}";
            yield break;
        }

        _interval = (long)Math.Clamp(_time.TimestampFrequency / config.Rate, 1, long.MaxValue / 4);
        _maxWait = (long)Math.Min((double)_interval * config.Burst, long.MaxValue / 4);
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        var now = _time.GetTimestamp();

        while (true)
        {
            var next = Volatile.Read(ref _next);
            var turn = Math.Max(next, now);

            if (turn - now > _maxWait)
            {
                response.Status = 503;
                return Stop();
            }

            if (Interlocked.CompareExchange(ref _next, turn + _interval, next) == next)
            {
                return turn == now ? Continue() : WaitAsync(_time.GetElapsedTime(now, turn), cancellationToken);
            }
        }
    }

    private async ValueTask<Decision> WaitAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        await Task.Delay(delay, _time, cancellationToken).ConfigureAwait(false);
        return Decision.Continue;
    }
}
