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
    [InlineData("")]
    public async Task Without_a_new_body_lets_the_request_go_on_untouched(string config)
    {
        var tester = PluginTester.Create<RequestBodyRewritePlugin>(config);

        var result = await tester.RunAsync(new TestRequest().WithMethod(Method.POST).WithBody("original"));

        Assert.True(result.IsNoAction, $"expected no action, got {result}");
    }
}
