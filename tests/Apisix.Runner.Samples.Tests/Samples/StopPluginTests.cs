using Apisix.Runner.Samples.Plugins;

namespace Apisix.Runner.Samples.Tests.Samples;

public class StopPluginTests
{
    [Fact]
    public async Task Stops_with_the_status_headers_and_body()
    {
        var tester = PluginTester.Create<StopPlugin>(
            """{"status": 403, "headers": {"X-Reason": "closed", "Content-Type": "text/plain"}, "body": "closed for now"}""");

        var result = await tester.RunAsync(new TestRequest().WithPath("/anything"));

        Assert.Equal(403, result.Stop.Status);
        Assert.Equal("closed", result.Stop.Header("x-reason"));
        Assert.Equal("text/plain", result.Stop.Header("content-type"));
        Assert.Equal("closed for now", result.Stop.BodyText);
    }

    [Fact]
    public async Task Status_defaults_to_200()
    {
        var tester = PluginTester.Create<StopPlugin>("{}");

        var result = await tester.RunAsync(new TestRequest());

        Assert.Equal(200, result.Stop.Status);
        Assert.Empty(result.Stop.Headers);
        Assert.Empty(result.Stop.Body);
    }

    [Fact]
    public void Rejects_a_status_out_of_range()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<StopPlugin>("""{"status": 99}"""));

        Assert.Equal("plugin 'stop' rejected its configuration: status must be between 100 and 599, got 99", Assert.Single(rejected.Problems));
    }
}
