using System.Text;
using Microsoft.Extensions.Logging;

namespace Apisix.Runner.Samples.Tests.Facade;

// Plugins made to exercise the facade: each shows one thing a plugin author relies on.

public interface IGreeter
{
    string Greet(string who);
}

public sealed class Greeter(string greeting) : IGreeter
{
    public string Greet(string who) => $"{greeting}, {who}";
}

/// <summary>Takes services in its constructor: answers with the injected greeter's words.</summary>
public sealed class GreetingPlugin(IGreeter greeter, ILogger<GreetingPlugin> logger) : PluginBase
{
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        logger.LogInformation("greeting {Who}", request.GetHeader("x-who"));
        response.SetBody(greeter.Greet(request.GetHeader("x-who") ?? "world"));
        return Stop();
    }
}

/// <summary>Response phase only: upper-cases the upstream body.</summary>
public sealed class ShoutPlugin : PluginBase
{
    public override async ValueTask<Decision> ResponseFilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        var body = await response.GetUpstreamBodyAsync();

        if (body is not null)
        {
            response.SetBody(Encoding.UTF8.GetString(body).ToUpperInvariant());
        }

        return Decision.Continue;
    }
}

/// <summary>Declares the nginx variable it reads, so the runner fetches it up front.</summary>
public sealed class ClientIpPlugin : PluginBase
{
    protected override IEnumerable<ExtraInfo.Info> Prefetch => [Fetch.Var("remote_addr")];

    public override async ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        if (await request.GetVarAsync("remote_addr") is { } ip)
        {
            request.SetHeader("x-client-ip", ip);
        }

        return Decision.Continue;
    }
}

/// <summary>Reads the variable and the body on demand, without declaring them.</summary>
public sealed class LazyReaderPlugin : PluginBase
{
    public override async ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        var first = await request.GetVarAsync("request_time");
        var again = await request.GetVarAsync("request_time");
        var unset = await request.GetVarAsync("unset_var");
        var body = await request.GetBodyAsync();
        request.SetHeader("x-seen", $"{first ?? "(null)"}|{again ?? "(null)"}|{unset ?? "(null)"}|{(body is null ? "(null)" : Encoding.UTF8.GetString(body))}");
        request.SetHeader("x-host", request.GetHeader("host") ?? "(null)");
        request.SetHeader("x-arg", request.GetArg("a") ?? "(null)");
        request.SetHeader("x-flag", request.GetArg("flag") ?? "(null)");
        return Decision.Continue;
    }
}

/// <summary>Runs in both phases.</summary>
public sealed class BothPhasesPlugin : PluginBase
{
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        request.SetHeader("x-phase", "request");
        return Continue();
    }

    public override ValueTask<Decision> ResponseFilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        response.SetHeader("x-phase", "response");
        return Continue();
    }
}

/// <summary>Answers with its own name and raw configuration.</summary>
public sealed class RawConfigPlugin : PluginBase
{
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        response.SetHeader("x-name", Name);
        response.SetBody(RawConfig);
        return Stop();
    }
}

public sealed record QuotaConfig
{
    public string? Name { get; init; }

    public int MaxRequests { get; init; }

    public List<string>? Tags { get; init; }
}

/// <summary>A typed configuration bound by reflection (no JsonTypeInfo given), with validation.</summary>
public sealed class QuotaPlugin : PluginBase<QuotaConfig>
{
    protected override IEnumerable<string> Validate(QuotaConfig config)
    {
        if (string.IsNullOrEmpty(config.Name))
        {
            yield return "name is required";
        }

        if (config.MaxRequests <= 0)
        {
            yield return $"max_requests must be above 0, got {config.MaxRequests}";
        }
    }

    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        request.SetHeader("x-quota", $"{Config.Name}:{Config.MaxRequests}:{string.Join(",", Config.Tags ?? [])}");
        return Continue();
    }
}

/// <summary>Reads its configuration too early, in the constructor.</summary>
public sealed class EagerConfigPlugin : PluginBase<QuotaConfig>
{
    public EagerConfigPlugin() => _ = Config.Name;
}

public sealed class ThrowingConstructorPlugin : PluginBase
{
    public ThrowingConstructorPlugin() => throw new InvalidOperationException("no database");
}

[PluginName("custom-name")]
public sealed class AttributedPlugin : PluginBase;

public sealed class RateLimitingPlugin : PluginBase;

public sealed class HTTPSRedirectPlugin : PluginBase;

public sealed class Echo : PluginBase;

public static class Odd
{
    public sealed class Plugin : PluginBase;
}

public abstract class AbstractPlugin : PluginBase;

public sealed class GenericPlugin<T> : PluginBase;

/// <summary>Reads the request the way C# reads collections and missing values: foreach, null, int.</summary>
public sealed class InventoryPlugin : PluginBase
{
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        var names = new List<string>();

        foreach (var header in request.OriginalHeaders)
        {
            names.Add(header.HasValue ? $"{header.Name}={header.Value}" : header.Name);
        }

        foreach (var arg in request.OriginalArgs)
        {
            names.Add(arg.HasValue ? $"?{arg.Name}={arg.Value}" : $"?{arg.Name}");
        }

        string? missing = request.GetHeader("x-missing");
        response.Status = missing is null ? 299 : 500;
        response.SetBody(string.Join(" ", names) + $" ({request.OriginalHeaders.Count} headers, {request.OriginalArgs.Find("flag") ?? "flag has no value"})");
        return Stop();
    }
}

/// <summary>Answers with the status of its configuration, whatever it is.</summary>
public sealed class StatusPlugin : PluginBase<StatusConfig>
{
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        response.Status = Config.Status;
        return Stop();
    }
}

public sealed class StatusConfig
{
    public int Status { get; set; }
}
