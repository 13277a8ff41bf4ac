using Apisix.Runner.Samples.Plugins;

namespace Apisix.Runner.Samples.Tests.Samples;

public class RewritePluginTests
{
    [Fact]
    public async Task Rewrites_the_path_a_header_and_an_arg()
    {
        var tester = PluginTester.Create<RewritePlugin>(
            """{"path": "/a6/dotnet/runner", "headers": {"X-Runner": "DotNet"}, "args": {"a6_runner": "DotNet"}}""");

        var result = await tester.RunAsync(new TestRequest().WithPath("/get").WithArg("a6_runner", "Go").WithArg("keep", "1"));

        Assert.True(result.IsRewrite, $"expected a Rewrite, got {result}");
        Assert.Equal("/a6/dotnet/runner", result.Rewrite.Path);
        Assert.Equal("DotNet", result.Rewrite.Header("x-runner"));
        Assert.Equal(["DotNet"], result.Rewrite.ArgValues("a6_runner"));
        Assert.Null(result.Rewrite.Arg("keep")); // only what changed is sent back
        Assert.Empty(result.Rewrite.Body);
    }

    [Fact]
    public async Task A_null_value_deletes_a_header_or_an_arg()
    {
        var tester = PluginTester.Create<RewritePlugin>("""{"headers": {"X-Debug": null}, "args": {"token": null}}""");

        var result = await tester.RunAsync(new TestRequest().WithHeader("X-Debug", "1").WithArg("token", "secret"));

        Assert.True(result.Rewrite.DeletesHeader("x-debug"));
        Assert.True(result.Rewrite.DeletesArg("token"));
        Assert.Null(result.Rewrite.Path);
    }

    [Fact]
    public async Task An_empty_configuration_changes_nothing()
    {
        var tester = PluginTester.Create<RewritePlugin>("{}");

        Assert.True((await tester.RunAsync(new TestRequest())).IsNoAction);
    }

    [Fact]
    public void Rejects_a_relative_path()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<RewritePlugin>("""{"path": "relative"}"""));

        Assert.Equal("plugin 'rewrite' rejected its configuration: path must start with '/', got 'relative'", Assert.Single(rejected.Problems));
    }
}
