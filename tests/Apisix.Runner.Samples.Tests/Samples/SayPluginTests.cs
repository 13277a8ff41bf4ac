using Apisix.Runner.Samples.Plugins;

namespace Apisix.Runner.Samples.Tests.Samples;

public class SayPluginTests
{
    [Fact]
    public async Task Stops_with_the_body_and_the_runner_header()
    {
        var tester = PluginTester.Create<SayPlugin>("""{"body": "hello"}""");

        var result = await tester.RunAsync(new TestRequest().WithPath("/get"));

        Assert.True(result.IsStop, $"expected a Stop, got {result}");
        Assert.Equal(200, result.Stop.Status);
        Assert.Equal("hello", result.Stop.BodyText);
        Assert.Equal("DotNet", result.Stop.Header("X-Resp-A6-Runner"));
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"body": ""}""")]
    [InlineData("")]
    public async Task Without_a_body_lets_the_request_go_on_untouched(string config)
    {
        var tester = PluginTester.Create<SayPlugin>(config);

        var result = await tester.RunAsync(new TestRequest());

        Assert.True(result.IsNoAction, $"expected no action, got {result}");
    }

    [Fact]
    public void Rejects_a_configuration_that_is_not_json()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<SayPlugin>("""{"body": """));

        var problem = Assert.Single(rejected.Problems);
        Assert.StartsWith("plugin 'say' rejected its configuration: invalid JSON configuration", problem);
    }
}
