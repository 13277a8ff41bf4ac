using Apisix.Runner.Samples.Plugins;

namespace Apisix.Runner.Samples.Tests.Samples;

public class RequestBodyRewritePluginTests
{
    [Fact]
    public async Task Replaces_the_body_sent_upstream()
    {
        var tester = PluginTester.Create<RequestBodyRewritePlugin>("""{"new_body": "{\"rewritten\": true}"}""");

        var result = await tester.RunAsync(new TestRequest().WithMethod(Method.POST).WithBody("original"));

        Assert.True(result.IsRewrite, $"expected a Rewrite, got {result}");
        Assert.Equal("""{"rewritten": true}""", result.Rewrite.BodyText);
        Assert.Null(result.Rewrite.Path);
        Assert.Empty(result.Rewrite.Headers);
        Assert.Empty(result.ExtraInfo);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"new_body": ""}""")]
    public void Rejects_a_missing_or_empty_body(string config)
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<RequestBodyRewritePlugin>(config));

        Assert.Equal(
            "plugin 'request-body-rewrite' rejected its configuration: new_body is required and must not be empty",
            Assert.Single(rejected.Problems));
    }
}
