using System.Diagnostics.CodeAnalysis;
using System.Text.Json.Serialization.Metadata;
using Microsoft.FSharp.Core;

namespace Apisix.Runner.CSharp;

/// <summary>
/// A plugin written in C#. Subclass it, override <see cref="FilterAsync"/> for the request phase
/// (<c>ext-plugin-pre-req</c>, <c>ext-plugin-post-req</c>) and/or <see cref="ResponseFilterAsync"/>
/// for the response phase (<c>ext-plugin-post-resp</c>), and register it with
/// <see cref="PluginServiceCollectionExtensions.AddPlugin{T}(Microsoft.Extensions.DependencyInjection.IServiceCollection)"/>.
/// </summary>
/// <remarks>
/// <para>
/// One instance is made per route configuration, when APISIX prepares it (PrepareConf), through
/// dependency injection: constructors may take <c>ILogger&lt;T&gt;</c>, options and any other
/// registered service. The configuration is set after the constructor, so read
/// <see cref="RawConfig"/> in the filters, not in the constructor. The instance then serves every
/// request of that route, on many connections at once: any state it keeps must be thread-safe.
/// </para>
/// <para>
/// A plugin runs in a phase only when it overrides that phase's method. To stop, set the answer on
/// the response (<c>Status</c>, <c>SetHeader</c>, <c>SetBody</c>) and return <see cref="Stop"/>;
/// to let the request go on, possibly changed through the request's setters, return
/// <see cref="Continue"/>. For a configuration bound to a C# type, derive from
/// <see cref="PluginBase{TConfig}"/>.
/// </para>
/// <para>
/// A runner also finds the concrete subclasses in the plugin assemblies of the folders
/// <c>Runner:PluginFolders</c> lists, and registers each under its name: the attribute below tells
/// the core how to make them.
/// </para>
/// </remarks>
[PluginBaseClass(typeof(PluginClassFactory))]
public abstract class PluginBase
{
    /// <summary>The name routes use for this plugin; set before any filter runs.</summary>
    public string Name { get; private set; } = "";

    /// <summary>
    /// The plugin's configuration in this route, as APISIX sent it (a JSON text, usually an
    /// object); set after the constructor, before any filter runs.
    /// </summary>
    public string RawConfig { get; private set; } = "";

    /// <summary>
    /// The request phase: decide on a request before it goes upstream. Override it for the plugin
    /// to run in <c>ext-plugin-pre-req</c> and <c>ext-plugin-post-req</c>.
    /// </summary>
    /// <param name="request">The request, with the changes made earlier in the chain applied.</param>
    /// <param name="response">The answer a <see cref="Stop"/> sends; its headers also go out with a rewrite.</param>
    /// <param name="cancellationToken">Signals the call's deadline or that the runner gives up on the call.</param>
    /// <returns><see cref="Stop"/> to answer the client now, <see cref="Continue"/> to go on.</returns>
    public virtual ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken) =>
        Continue();

    /// <summary>
    /// The response phase: change the upstream's answer. Override it for the plugin to run in
    /// <c>ext-plugin-post-resp</c>. The upstream's status and headers are on the response
    /// (<c>UpstreamStatus</c>, <c>UpstreamHeaders</c>), its body comes from
    /// <see cref="Response.GetUpstreamBodyAsync"/>; what the filter sets is sent back.
    /// </summary>
    /// <param name="request">The request: the call id, nginx variables (no request line or headers in this phase).</param>
    /// <param name="response">The upstream's answer, and the changes made to it in the chain.</param>
    /// <param name="cancellationToken">Signals the call's deadline or that the runner gives up on the call.</param>
    /// <returns><see cref="Stop"/> to end the chain (changes made still go out), <see cref="Continue"/> to go on.</returns>
    public virtual ValueTask<Decision> ResponseFilterAsync(Request request, Response response, CancellationToken cancellationToken) =>
        Continue();

    /// <summary>
    /// What the filters will read from APISIX (nginx variables, the request or the response body;
    /// build them with <see cref="Fetch"/>), asked for the whole chain at once before it runs,
    /// instead of one round trip per read. Read once per route configuration, after the configuration is set.
    /// </summary>
    protected virtual IEnumerable<ExtraInfo.Info> Prefetch => [];

    /// <summary>Stop the chain: the request phase answers the client with the response as built.</summary>
    /// <returns>A completed <see cref="Decision.Stop"/>, cached.</returns>
    protected static ValueTask<Decision> Stop() => Filters.Halt;

    /// <summary>Go on with the chain, with whatever the filter changed.</summary>
    /// <returns>A completed <see cref="Decision.Continue"/>, cached.</returns>
    protected static ValueTask<Decision> Continue() => Filters.Proceed;

    internal IEnumerable<ExtraInfo.Info> DeclaredPrefetch => Prefetch;

    /// <summary>Sets the name and configuration; returns why the configuration is rejected (empty when accepted).</summary>
    internal IReadOnlyList<string> Configure(string name, string rawConfig)
    {
        Name = name;
        RawConfig = rawConfig;
        return Bind(rawConfig);
    }

    private protected virtual IReadOnlyList<string> Bind(string rawConfig) => [];
}

/// <summary>
/// A plugin whose JSON configuration is bound to <typeparamref name="TConfig"/> once per route
/// configuration (PrepareConf) and exposed as <see cref="Config"/>. A configuration that does not
/// bind, or that <see cref="Validate"/> finds wrong, is rejected: APISIX gets an error for the
/// PrepareConf and answers 503 for the route (it is never skipped), and the runner logs the plugin
/// name and the messages.
/// </summary>
/// <remarks>
/// Property names are snake_case (<c>HttpStatus</c> reads <c>"http_status"</c>), matched without
/// case, as in the Go runner's samples. An empty configuration reads as <c>{}</c>. The binding and
/// its messages are the F# core's <see cref="PluginConfig"/> (<c>PluginConfig.bind</c>), which F#
/// plugins use through <c>Plugin.ofJson</c>.
/// </remarks>
/// <typeparam name="TConfig">The configuration type, usually a record with init properties.</typeparam>
public abstract class PluginBase<TConfig> : PluginBase
{
    private static JsonTypeInfo<TConfig>? s_reflected;
    private readonly JsonTypeInfo<TConfig> _typeInfo;
    private TConfig? _config;
    private bool _bound;

    /// <summary>
    /// Binds the configuration with reflection-based System.Text.Json (snake_case names, case
    /// ignored). Not for trimmed or Native AOT builds: there, pass a source-generated
    /// <see cref="JsonTypeInfo{T}"/> to the other constructor.
    /// </summary>
    [RequiresUnreferencedCode("Binds the configuration with reflection; pass a source-generated JsonTypeInfo<TConfig> instead.")]
    [RequiresDynamicCode("Binds the configuration with reflection; pass a source-generated JsonTypeInfo<TConfig> instead.")]
    protected PluginBase()
        : this(s_reflected ??= PluginConfig.reflectionTypeInfo<TConfig>())
    {
    }

    /// <summary>
    /// Binds the configuration with a source-generated <see cref="JsonTypeInfo{T}"/>, with no
    /// reflection (trimming and Native AOT safe). To read configurations as the reflection default
    /// does, give its context
    /// <c>[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, PropertyNameCaseInsensitive = true)]</c>.
    /// Give properties with a default value (<c>= 100</c>) a <c>set</c> accessor, not <c>init</c>:
    /// generated code sets init-only properties missing from the JSON to their type's default.
    /// </summary>
    /// <param name="configTypeInfo">For example <c>MyJsonContext.Default.MyConfig</c>.</param>
    protected PluginBase(JsonTypeInfo<TConfig> configTypeInfo)
    {
        ArgumentNullException.ThrowIfNull(configTypeInfo);
        _typeInfo = configTypeInfo;
    }

    /// <summary>The configuration of this route, bound before any filter runs (and before <see cref="Validate"/>).</summary>
    /// <exception cref="InvalidOperationException">Read in the constructor, before the configuration is bound.</exception>
    public TConfig Config => _bound
        ? _config!
        : throw new InvalidOperationException($"{GetType().Name}: the configuration is bound after the constructor; read Config in Validate or the filters.");

    /// <summary>
    /// Checks the bound configuration, once per route configuration. Each message returned rejects
    /// the configuration (they are joined into the error APISIX's route gets and the runner logs).
    /// Also the place to precompute from the configuration (compile a pattern, size a bucket):
    /// it runs once, before any filter.
    /// </summary>
    /// <param name="config">The bound configuration, also available as <see cref="Config"/>.</param>
    /// <returns>What is wrong with it, one sentence each; nothing when it is fine.</returns>
    protected virtual IEnumerable<string> Validate(TConfig config) => [];

    private protected sealed override IReadOnlyList<string> Bind(string rawConfig)
    {
        var bound = PluginConfig.bind(
            _typeInfo,
            FuncConvert.FromFunc<TConfig, IEnumerable<string>>(config =>
            {
                // Validate may read Config: set it before.
                _config = config;
                _bound = true;
                return Validate(config);
            }),
            rawConfig);

        return bound.IsOk ? [] : [.. bound.ErrorValue];
    }
}
