using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.DependencyInjection;

namespace Apisix.Runner.CSharp.Testing;

/// <summary>
/// Runs plugins in-process against requests you build, on the runner's own call path (the
/// answer is encoded and decoded as APISIX reads it), without a socket or APISIX. Plugins are
/// prepared exactly as a PrepareConf prepares them: created through dependency injection, their
/// configuration bound and validated, their phases and prefetch collected into one chain.
/// </summary>
/// <example>
/// <code>
/// var tester = PluginTester.Create&lt;SayPlugin&gt;("""{"body": "hello"}""");
/// var result = await tester.RunAsync(new TestRequest().WithPath("/get"));
/// Assert.Equal("hello", result.Stop.BodyText);
/// </code>
/// </example>
public sealed class PluginTester
{
    private static readonly Lazy<IServiceProvider> s_defaultServices =
        new(() => new ServiceCollection().AddLogging().BuildServiceProvider());

    private PluginTester(Chain chain) => Chain = chain;

    /// <summary>
    /// The services plugins get when a test gives none: logging only (<c>ILogger&lt;T&gt;</c>
    /// resolves, and logs nowhere).
    /// </summary>
    public static IServiceProvider DefaultServices => s_defaultServices.Value;

    /// <summary>The prepared chain: the filters of each phase and what each phase prefetches.</summary>
    public Chain Chain { get; }

    /// <summary>Prepares one plugin with its JSON configuration.</summary>
    /// <typeparam name="TPlugin">The plugin class.</typeparam>
    /// <param name="jsonConfig">The configuration, as a route gives it in <c>value</c>.</param>
    /// <param name="services">Where constructor arguments come from; none: <see cref="DefaultServices"/>.</param>
    /// <param name="name">The plugin's name; none: the name it registers under by default.</param>
    /// <returns>A tester for that one-plugin chain.</returns>
    /// <exception cref="ConfigurationRejectedException">The configuration is rejected, as PrepareConf would reject it.</exception>
    public static PluginTester Create<[DynamicallyAccessedMembers(PluginFactory.PluginMembers)] TPlugin>(
        string jsonConfig, IServiceProvider? services = null, string? name = null)
        where TPlugin : PluginBase =>
        CreateChain((PluginFactory.Create<TPlugin>(services ?? DefaultServices, name), jsonConfig));

    /// <summary>
    /// Prepares a chain: each plugin with its JSON configuration, in the route's order. Make C#
    /// plugins with <see cref="PluginFactory.Create{T}(IServiceProvider?, string?)"/>; F# plugins
    /// go in as they are.
    /// </summary>
    /// <param name="chain">The plugins and their configurations, in execution order.</param>
    /// <returns>A tester for the chain.</returns>
    /// <exception cref="ConfigurationRejectedException">A configuration is rejected, as PrepareConf would reject it.</exception>
    public static PluginTester CreateChain(params (Plugin Plugin, string Config)[] chain)
    {
        var prepared = PluginTestKit.Prepare(chain.Select(c => Tuple.Create(c.Plugin, c.Config)));

        return prepared.IsOk
            ? new PluginTester(prepared.ResultValue)
            : throw new ConfigurationRejectedException([.. prepared.ErrorValue]);
    }

    /// <summary>Runs the request-phase chain on a request, as for <c>ext-plugin-pre-req</c> or <c>ext-plugin-post-req</c>.</summary>
    /// <param name="request">The request APISIX would send, with the variables and body it would give when asked.</param>
    /// <returns>The answer as APISIX would read it, and the ExtraInfo asked. Exceptions from plugins surface.</returns>
    public async Task<RequestResult> RunAsync(TestRequest request) =>
        new(await PluginTestKit.RunRequestAsync(Chain, request).ConfigureAwait(false));

    /// <summary>Runs the response-phase chain on an upstream answer, as for <c>ext-plugin-post-resp</c>.</summary>
    /// <param name="upstream">The upstream's status, headers and body, and the variables APISIX would give.</param>
    /// <returns>The answer as APISIX would read it, and the ExtraInfo asked. Exceptions from plugins surface.</returns>
    public async Task<ResponseResult> RunResponseAsync(TestUpstream upstream) =>
        new(await PluginTestKit.RunResponseAsync(Chain, upstream).ConfigureAwait(false));
}

/// <summary>A configuration rejected at preparation: what APISIX would get as an error for its PrepareConf.</summary>
public sealed class ConfigurationRejectedException : Exception
{
    /// <summary>Makes the exception from the problems the runner would log.</summary>
    /// <param name="problems">One message per rejected plugin, naming it.</param>
    public ConfigurationRejectedException(IReadOnlyList<string> problems)
        : base("configuration rejected: " + string.Join(" | ", problems)) =>
        Problems = problems;

    /// <summary>One message per rejected plugin, as the runner logs it: <c>plugin 'NAME' rejected its configuration: WHY</c>.</summary>
    public IReadOnlyList<string> Problems { get; }
}
