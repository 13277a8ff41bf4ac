using Apisix.Runner;
using Apisix.Runner.CSharp;

namespace MyRunner;

/// <summary>The configuration of <see cref="HelloPlugin"/>, as a route gives it: <c>{"greeting": "hello"}</c>.</summary>
public sealed record HelloConfig
{
    /// <summary>The greeting; <c>greeting</c> in JSON. A <c>set</c> accessor keeps the default when the JSON has none.</summary>
    public string Greeting { get; set; } = "hello";
}

/// <summary>
/// The plugin routes call <c>hello</c> (the class name without <c>Plugin</c>, in kebab case). It
/// answers a request that carries an <c>x-hello</c> header itself; the others go upstream with an
/// <c>x-greeted: no</c> header.
/// </summary>
public sealed class HelloPlugin() : PluginBase<HelloConfig>(PluginJsonContext.Default.HelloConfig)
{
    /// <summary>Runs once per route configuration: each message rejects it, and APISIX answers 503 on that route.</summary>
    protected override IEnumerable<string> Validate(HelloConfig config)
    {
        if (string.IsNullOrWhiteSpace(config.Greeting))
        {
            yield return "greeting must not be empty";
        }
    }

    /// <summary>The request phase (ext-plugin-pre-req and ext-plugin-post-req).</summary>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        if (request.GetHeader("x-hello") is not { } who)
        {
            request.SetHeader("x-greeted", "no");
            return Continue();
        }

        response.SetHeader("Content-Type", "text/plain");
        response.SetBody($"{Config.Greeting}, {who}");
        return Stop();
    }
}
