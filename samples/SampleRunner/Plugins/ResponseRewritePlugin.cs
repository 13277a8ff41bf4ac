using System.Text;
using System.Text.RegularExpressions;
using System.Text.Unicode;
using Apisix.Runner.CSharp;
using Microsoft.Extensions.Logging;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="ResponseRewritePlugin"/>.</summary>
public sealed record ResponseRewriteConfig
{
    /// <summary>The status the client gets, 100 to 599; 0 or none: the upstream's.</summary>
    public int Status { get; set; }

    /// <summary>Response headers to set, by name; a <c>null</c> value deletes the header.</summary>
    public Dictionary<string, string?>? Headers { get; set; }

    /// <summary>The body the client gets instead of the upstream's; not used when there are <see cref="Filters"/>.</summary>
    public string? Body { get; set; }

    /// <summary>Replacements in the upstream's body, applied in order; when there are any, <see cref="Body"/> is not used.</summary>
    public List<ResponseRewriteFilter>? Filters { get; set; }
}

/// <summary>One replacement in the upstream's body.</summary>
public sealed record ResponseRewriteFilter
{
    /// <summary>A .NET regular expression. Required.</summary>
    public string? Regex { get; set; }

    /// <summary><c>once</c> (the first match, the default) or <c>global</c> (every match).</summary>
    public string? Scope { get; set; }

    /// <summary>What a match becomes; <c>$1</c>, <c>${name}</c> and <c>$0</c> refer to its groups. None: removed.</summary>
    public string? Replace { get; set; }
}

/// <summary>
/// <c>response-rewrite</c> {"status": 200, "headers": {"X-Server": "A6"}, "body": "...",
/// "filters": [{"regex": "world", "scope": "global", "replace": "APISIX"}]}: a response-phase
/// plugin (<c>ext-plugin-post-resp</c>) that changes the upstream's answer: its status, its
/// headers, and its body, either rewritten by the <c>filters</c> or, when there are none, replaced
/// by <c>body</c>. When no filter matches, the upstream's body is left as it is. Every answer
/// carries <c>X-Resp-A6-Runner: DotNet</c> (the configured headers may change it), as the Go
/// runner's carries <c>X-Resp-A6-Runner: Go</c>.
/// </summary>
/// <remarks>
/// The patterns are compiled once per route configuration; an invalid pattern or scope rejects the
/// configuration. Each match is bounded by <see cref="MatchTimeout"/>: a pattern that backtracks
/// without end (ReDoS) leaves the body unchanged and logs a warning instead of holding the call.
/// A body that is not UTF-8 text is left unchanged.
/// </remarks>
/// <param name="logger">Where a timed-out pattern is reported.</param>
public sealed partial class ResponseRewritePlugin(ILogger<ResponseRewritePlugin> logger)
    : PluginBase<ResponseRewriteConfig>(SampleJsonContext.Default.ResponseRewriteConfig)
{
    /// <summary>The longest one pattern may search the body before the rewrite is given up.</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromMilliseconds(100);

    private ReadOnlyMemory<byte> _body;
    private (Regex Regex, bool Global, string Replace)[] _filters = [];

    /// <summary>The upstream body, fetched up front when the filters will read it.</summary>
    protected override IEnumerable<ExtraInfo.Info> Prefetch => _filters.Length > 0 ? [Fetch.ResponseBody] : [];

    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(ResponseRewriteConfig config)
    {
        var problems = new List<string>();

        if (config.Status != 0 && config.Status is < 100 or > 599)
        {
            problems.Add($"status must be between 100 and 599, got {config.Status}");
        }

        var filters = config.Filters ?? [];

        if (filters.Count == 0 && !string.IsNullOrEmpty(config.Body))
        {
            _body = Encoding.UTF8.GetBytes(config.Body);
        }

        var compiled = new List<(Regex, bool, string)>(filters.Count);

        for (var i = 0; i < filters.Count; i++)
        {
            var filter = filters[i];
            var global = filter.Scope is "global";

            if (filter.Scope is not (null or "once" or "global"))
            {
                problems.Add($"filters[{i}].scope must be \"once\" or \"global\", got \"{filter.Scope}\"");
            }

            if (string.IsNullOrEmpty(filter.Regex))
            {
                problems.Add($"filters[{i}].regex is required");
                continue;
            }

            try
            {
                compiled.Add((new Regex(filter.Regex, RegexOptions.CultureInvariant, MatchTimeout), global, filter.Replace ?? ""));
            }
            catch (ArgumentException e)
            {
                problems.Add($"filters[{i}].regex is invalid: {e.Message}");
            }
        }

        _filters = [.. compiled];
        return problems;
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> ResponseFilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        if (Config.Status != 0)
        {
            response.Status = Config.Status;
        }

        response.SetHeader("X-Resp-A6-Runner", "DotNet");

        foreach (var (name, value) in Config.Headers ?? [])
        {
            if (value is null)
            {
                response.DeleteHeader(name);
            }
            else
            {
                response.SetHeader(name, value);
            }
        }

        if (_filters.Length > 0)
        {
            return RewriteBodyAsync(response);
        }

        if (!_body.IsEmpty)
        {
            response.SetBody(_body);
        }

        return Continue();
    }

    private async ValueTask<Decision> RewriteBodyAsync(Response response)
    {
        var upstream = await response.GetUpstreamBodyAsync().ConfigureAwait(false);

        if (upstream is null || !Utf8.IsValid(upstream))
        {
            return Decision.Continue;
        }

        var original = Encoding.UTF8.GetString(upstream);
        var text = original;

        foreach (var (regex, global, replace) in _filters)
        {
            try
            {
                text = global ? regex.Replace(text, replace) : regex.Replace(text, replace, 1);
            }
            catch (RegexMatchTimeoutException)
            {
                LogMatchTimeout(logger, Name, regex.ToString(), MatchTimeout);
                return Decision.Continue;
            }
        }

        if (!string.Equals(text, original, StringComparison.Ordinal))
        {
            response.SetBody(text);
        }

        return Decision.Continue;
    }

    [LoggerMessage(EventId = 100, Level = LogLevel.Warning,
        Message = "Plugin {Plugin}: pattern {Pattern} took longer than {Timeout} on the upstream body; body left unchanged")]
    private static partial void LogMatchTimeout(ILogger logger, string plugin, string pattern, TimeSpan timeout);
}
