using Apisix.Runner.CSharp;

namespace Apisix.Runner.Samples.Plugins;

/// <summary>The configuration of <see cref="ClientIpPlugin"/>.</summary>
public sealed record ClientIpConfig
{
    /// <summary>The request header that carries the address upstream; <c>X-Real-IP</c> by default.</summary>
    public string Header { get; set; } = "X-Real-IP";
}

/// <summary>
/// <c>client-ip</c> {"header": "X-Real-IP"}: passes the client's address, as nginx sees it
/// (<c>$remote_addr</c>), to the upstream in a request header. The variable comes from APISIX
/// through ExtraInfo, asked for up front with the request; when APISIX has none, the request goes
/// on untouched. Shows reading nginx variables, and costs one ExtraInfo round trip per call.
/// </summary>
public sealed class ClientIpPlugin() : PluginBase<ClientIpConfig>(SampleJsonContext.Default.ClientIpConfig)
{
    /// <inheritdoc/>
    protected override IEnumerable<ExtraInfo.Info> Prefetch => [Fetch.Var("remote_addr")];

    /// <inheritdoc/>
    protected override IEnumerable<string> Validate(ClientIpConfig config)
    {
        if (string.IsNullOrWhiteSpace(config.Header))
        {
            yield return "header must name a request header";
        }
    }

    /// <inheritdoc/>
    public override ValueTask<Decision> FilterAsync(Request request, Response response, CancellationToken cancellationToken)
    {
        // Prefetched with the request: the read completes at once.
        var address = request.GetVarAsync("remote_addr");

        if (!address.IsCompletedSuccessfully)
        {
            return Await(address, request);
        }

        SetAddress(request, address.Result);
        return Continue();
    }

    private async ValueTask<Decision> Await(ValueTask<string?> address, Request request)
    {
        SetAddress(request, await address.ConfigureAwait(false));
        return Decision.Continue;
    }

    private void SetAddress(Request request, string? address)
    {
        if (address is not null)
        {
            request.SetHeader(Config.Header, address);
        }
    }
}
