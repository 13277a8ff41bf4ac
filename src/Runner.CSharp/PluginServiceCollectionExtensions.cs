using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using Microsoft.Extensions.DependencyInjection;

namespace Apisix.Runner.CSharp;

/// <summary>
/// Registration of C# plugins in the runner's services, next to the F# core's
/// <c>services.AddPlugin(Plugin)</c>. Each registration goes through the core's
/// <c>services.AddPlugin(Func&lt;IServiceProvider, Plugin&gt;)</c>: one F# <see cref="Plugin"/>
/// whose Prepare creates the plugin class through this container, once per route configuration.
/// </summary>
public static class PluginServiceCollectionExtensions
{
    /// <summary>Registers a plugin class under its name (<see cref="PluginType.NameOf"/>). Trimming and Native AOT safe.</summary>
    /// <typeparam name="T">The plugin class.</typeparam>
    /// <param name="services">The runner's services.</param>
    /// <returns>The same services, to chain calls.</returns>
    /// <exception cref="ArgumentException">The class is abstract or generic, or its name is empty.</exception>
    public static IServiceCollection AddPlugin<[DynamicallyAccessedMembers(PluginFactory.PluginMembers)] T>(this IServiceCollection services)
        where T : PluginBase =>
        services.AddPlugin(typeof(T), null);

    /// <summary>Registers a plugin class under the given name. Trimming and Native AOT safe.</summary>
    /// <typeparam name="T">The plugin class.</typeparam>
    /// <param name="services">The runner's services.</param>
    /// <param name="name">The name routes use for it.</param>
    /// <returns>The same services, to chain calls.</returns>
    /// <exception cref="ArgumentException">The class is abstract or generic, or the name is empty.</exception>
    public static IServiceCollection AddPlugin<[DynamicallyAccessedMembers(PluginFactory.PluginMembers)] T>(this IServiceCollection services, string name)
        where T : PluginBase
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        return services.AddPlugin(typeof(T), name);
    }

    /// <summary>
    /// Registers every concrete <see cref="PluginBase"/> subclass of an assembly, public or not,
    /// each under its name. It finds them by reflection: in a trimmed or Native AOT build the
    /// classes may be gone, so register them one by one with <see cref="AddPlugin{T}(IServiceCollection)"/> there.
    /// </summary>
    /// <param name="services">The runner's services.</param>
    /// <param name="assembly">The assembly to scan.</param>
    /// <returns>The same services, to chain calls.</returns>
    [RequiresUnreferencedCode("Finds plugin classes by reflection; register them with AddPlugin<T>() for trimmed or Native AOT builds.")]
    public static IServiceCollection AddPluginsFromAssembly(this IServiceCollection services, Assembly assembly)
    {
        ArgumentNullException.ThrowIfNull(assembly);

        foreach (var type in assembly.GetTypes().Where(t => t.IsSubclassOf(typeof(PluginBase)) && !t.IsAbstract && !t.ContainsGenericParameters))
        {
            services.AddPlugin(type, null);
        }

        return services;
    }

    private static IServiceCollection AddPlugin(this IServiceCollection services, [DynamicallyAccessedMembers(PluginFactory.PluginMembers)] Type type, string? name)
    {
        ArgumentNullException.ThrowIfNull(services);
        var description = PluginFactory.Describe(type, name);
        return RunnerServiceCollectionExtensions.AddPlugin(services, description.ToPlugin);
    }
}
