using Apisix.Runner;
using Apisix.Runner.CSharp.Testing;

namespace MyRunner.Tests;

// The test kit runs the plugin in-process on the runner's own call path and gives back the
// answer as APISIX reads it: no socket, no APISIX.
public class HelloPluginTests
{
    [Fact]
    public async Task Answers_a_request_that_says_hello()
    {
        var tester = PluginTester.Create<HelloPlugin>("""{"greeting": "hi"}""");

        var result = await tester.RunAsync(new TestRequest().WithHeader("x-hello", "ops"));

        Assert.True(result.IsStop, result.ToString());
        Assert.Equal(200, result.Stop.Status);
        Assert.Equal("hi, ops", result.Stop.BodyText);
        Assert.Equal("text/plain", result.Stop.Header("content-type"));
    }

    [Fact]
    public async Task Sends_other_requests_upstream_marked()
    {
        var tester = PluginTester.Create<HelloPlugin>("{}");

        var result = await tester.RunAsync(new TestRequest().WithPath("/get"));

        Assert.True(result.IsRewrite, result.ToString());
        Assert.Equal("no", result.Rewrite.Header("x-greeted"));
    }

    [Fact]
    public void Rejects_an_empty_greeting()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<HelloPlugin>("""{"greeting": ""}"""));

        Assert.Equal("plugin 'hello' rejected its configuration: greeting must not be empty", Assert.Single(rejected.Problems));
    }
}
