using System.Runtime.Loader;
using Apisix.Runner.CSharp;
using Apisix.Runner.ExternalPlugin.Dependency;

namespace Apisix.Runner.ExternalPlugin;

/// <summary>
/// <c>external-greeting</c>: answers with its dependency's greeting, and says in headers which load
/// context each part came from: the plugin and its dependency from the plugin's own, the facade
/// from the runner's (when the runner has it).
/// </summary>
public sealed class ExternalGreetingPlugin : PluginBase
{
    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        response.SetHeader("x-plugin-context", ContextOf(typeof(ExternalGreetingPlugin)));
        response.SetHeader("x-dependency-context", ContextOf(typeof(Greeting)));
        response.SetHeader("x-facade-context", ContextOf(typeof(PluginBase)));
        response.SetBody(Greeting.For(request.GetHeader("x-who") ?? "APISIX"));
        return Stop();
    }

    private static string ContextOf(Type type) => AssemblyLoadContext.GetLoadContext(type.Assembly)?.Name ?? "";
}

/// <summary>A plugin as a value: a public static property of type <see cref="Plugin"/>, as an F# module's value is.</summary>
public static class ValuePlugins
{
    /// <summary><c>external-tag</c>: tags the request for the upstream.</summary>
    public static Plugin Tag { get; } = PluginModule.ofFilter(
        "external-tag",
        Filters.OfFunc((request, _) =>
        {
            request.SetHeader("x-external-tag", "1");
            return ValueTask.FromResult(Decision.Continue);
        }));
}
