using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;
using FilterFunc = Microsoft.FSharp.Core.FSharpFunc<
    Apisix.Runner.Request,
    Microsoft.FSharp.Core.FSharpFunc<Apisix.Runner.Response, System.Threading.Tasks.ValueTask<Apisix.Runner.Decision>>>;

namespace Apisix.Runner.CSharp;

/// <summary>
/// Turns a <see cref="PluginBase"/> subclass into the F# core's <see cref="Plugin"/>: a name, and
/// a Prepare that, once per route configuration, creates an instance through dependency
/// injection, sets and binds its configuration, and hands over the filters of the phases it
/// overrides and the ExtraInfo it declares.
/// </summary>
public static class PluginFactory
{
    /// <summary>The members of a plugin type that creating it and finding its phases need.</summary>
    public const DynamicallyAccessedMemberTypes PluginMembers =
        DynamicallyAccessedMemberTypes.PublicConstructors | DynamicallyAccessedMemberTypes.PublicMethods;

    private static readonly Type[] s_filterParameters = [typeof(Request), typeof(Response), typeof(CancellationToken)];

    /// <summary>Makes the F# plugin of <typeparamref name="T"/>.</summary>
    /// <typeparam name="T">The plugin class.</typeparam>
    /// <param name="services">Where constructor arguments come from; none: an empty provider.</param>
    /// <param name="name">The name routes use; none: <see cref="PluginType.NameOf"/>.</param>
    /// <returns>The plugin, to register with <c>services.AddPlugin(plugin)</c> or to test with <c>PluginTestKit</c>.</returns>
    public static Plugin Create<[DynamicallyAccessedMembers(PluginMembers)] T>(IServiceProvider? services = null, string? name = null)
        where T : PluginBase =>
        Create(typeof(T), services, name);

    /// <summary>Makes the F# plugin of a <see cref="PluginBase"/> subclass.</summary>
    /// <param name="pluginType">A concrete subclass of <see cref="PluginBase"/>.</param>
    /// <param name="services">Where constructor arguments come from; none: an empty provider.</param>
    /// <param name="name">The name routes use; none: <see cref="PluginType.NameOf"/>.</param>
    /// <returns>The plugin.</returns>
    /// <exception cref="ArgumentException">The type is not a concrete plugin class, or the name is empty.</exception>
    public static Plugin Create([DynamicallyAccessedMembers(PluginMembers)] Type pluginType, IServiceProvider? services = null, string? name = null) =>
        Describe(pluginType, name).ToPlugin(services ?? EmptyServices.Instance);

    /// <summary>Checks a plugin type once, at registration: its name, constructor and phases.</summary>
    internal static PluginDescription Describe([DynamicallyAccessedMembers(PluginMembers)] Type pluginType, string? name)
    {
        ArgumentNullException.ThrowIfNull(pluginType);

        if (!pluginType.IsSubclassOf(typeof(PluginBase)) || pluginType.IsAbstract || pluginType.ContainsGenericParameters)
        {
            throw new ArgumentException($"{pluginType} is not a concrete subclass of {nameof(PluginBase)}.", nameof(pluginType));
        }

        name ??= PluginType.NameOf(pluginType);

        if (string.IsNullOrWhiteSpace(name))
        {
            throw new ArgumentException($"{pluginType} has an empty plugin name.", nameof(name));
        }

        return new PluginDescription(
            name,
            ActivatorUtilities.CreateFactory(pluginType, Type.EmptyTypes),
            PluginType.Overrides(pluginType, nameof(PluginBase.FilterAsync), s_filterParameters),
            PluginType.Overrides(pluginType, nameof(PluginBase.ResponseFilterAsync), s_filterParameters));
    }

    private static class EmptyServices
    {
        internal static readonly IServiceProvider Instance = new ServiceCollection().BuildServiceProvider();
    }
}

/// <summary>
/// Makes the plugin of a <see cref="PluginBase"/> subclass that the core found in a plugin folder
/// (<c>Runner:PluginFolders</c>), as <c>AddPlugin&lt;T&gt;()</c> registers one: named by
/// <see cref="PluginType.NameOf"/>, its instances made from the runner's services.
/// </summary>
internal sealed class PluginClassFactory : IPluginClassFactory
{
    public Plugin Create([DynamicallyAccessedMembers(PluginFactory.PluginMembers)] Type pluginType, IServiceProvider services) =>
        PluginFactory.Describe(pluginType, null).ToPlugin(services);
}

/// <summary>A plugin type checked at registration: what Prepare needs, per route configuration.</summary>
internal sealed class PluginDescription(string name, ObjectFactory factory, bool requestPhase, bool responsePhase)
{
    public string Name => name;

    public Plugin ToPlugin(IServiceProvider services) =>
        new(name, FuncConvert.FromFunc<string, FSharpResult<PluginFilters, string>>(json => Prepare(services, json)));

    private FSharpResult<PluginFilters, string> Prepare(IServiceProvider services, string json)
    {
        var plugin = (PluginBase)factory(services, null);
        var problems = plugin.Configure(name, json);

        if (problems.Count > 0)
        {
            return FSharpResult<PluginFilters, string>.NewError(PluginConfig.describe(problems));
        }

        var request = requestPhase
            ? FSharpValueOption<FilterFunc>.NewValueSome(
                Filters.OfFunc((req, resp) => plugin.FilterAsync(req, resp, req.CancellationToken)))
            : FSharpValueOption<FilterFunc>.None;

        var response = responsePhase
            ? FSharpValueOption<FilterFunc>.NewValueSome(
                Filters.OfFunc((req, resp) => plugin.ResponseFilterAsync(req, resp, req.CancellationToken)))
            : FSharpValueOption<FilterFunc>.None;

        return FSharpResult<PluginFilters, string>.NewOk(new PluginFilters(request, response, ListModule.OfSeq(plugin.DeclaredPrefetch)));
    }
}
