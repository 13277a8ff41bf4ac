using Apisix.Runner.Samples.Plugins;

namespace Apisix.Runner.Samples.Tests.Samples;

public class ClientIpPluginTests
{
    [Fact]
    public async Task Passes_remote_addr_upstream_in_the_configured_header_asked_up_front()
    {
        var tester = PluginTester.Create<ClientIpPlugin>("""{"header": "X-Client"}""");

        var result = await tester.RunAsync(new TestRequest().WithVar("remote_addr", "10.1.2.3"));

        Assert.True(result.IsRewrite, $"expected a Rewrite, got {result}");
        Assert.Equal("10.1.2.3", result.Rewrite.Header("x-client"));
        Assert.Equal([Fetch.Var("remote_addr")], result.ExtraInfo);
    }

    [Fact]
    public async Task Uses_X_Real_IP_by_default_and_changes_nothing_when_APISIX_has_no_address()
    {
        var tester = PluginTester.Create<ClientIpPlugin>("{}");

        Assert.Equal("10.1.2.3", (await tester.RunAsync(new TestRequest().WithVar("remote_addr", "10.1.2.3"))).Rewrite.Header("x-real-ip"));
        Assert.True((await tester.RunAsync(new TestRequest())).IsNoAction);
    }

    [Fact]
    public void Rejects_an_empty_header_name()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<ClientIpPlugin>("""{"header": " "}"""));
        Assert.Contains("header must name a request header", rejected.Message);
    }
}
