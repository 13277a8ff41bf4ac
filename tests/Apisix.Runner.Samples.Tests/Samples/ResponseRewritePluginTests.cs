using System.Diagnostics;
using Apisix.Runner.Samples.Plugins;
using Apisix.Runner.Samples.Tests.Support;
using Microsoft.Extensions.Logging;

namespace Apisix.Runner.Samples.Tests.Samples;

public class ResponseRewritePluginTests
{
    private static TestUpstream Upstream(string body) =>
        new TestUpstream().WithStatus(200).WithHeader("Content-Type", "text/plain").WithBody(body);

    [Fact]
    public async Task Sets_the_status_and_headers()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"status": 201, "headers": {"X-Server": "A6", "X-Powered-By": null}}""");

        var result = await tester.RunResponseAsync(Upstream("hello").WithHeader("X-Powered-By", "php"));

        // APISIX takes the answer's headers as the whole set: the upstream's others stay, the deleted one goes.
        Assert.Equal(201, result.Status);
        Assert.Equal("A6", result.Header("x-server"));
        Assert.Equal("text/plain", result.Header("content-type"));
        Assert.Null(result.Header("x-powered-by"));
        Assert.Empty(result.Body);
    }

    [Theory]
    [InlineData("""{"body": "replaced"}""")]
    [InlineData("""{"body": "replaced", "filters": []}""")]
    public async Task Without_filters_the_body_replaces_the_upstreams_without_reading_it(string config)
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>(config);

        var result = await tester.RunResponseAsync(Upstream("hello world"));

        Assert.Equal("replaced", result.BodyText);
        Assert.Equal(0, result.Status);
        Assert.Empty(result.ExtraInfo);
    }

    [Theory]
    [InlineData("hello", "bye world")]
    [InlineData("absent", "")]
    public async Task With_filters_the_body_is_not_used(string regex, string body)
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>(
            $$"""{"body": "replaced", "filters": [{"regex": "{{regex}}", "replace": "bye"}]}""");

        var result = await tester.RunResponseAsync(Upstream("hello world"));

        Assert.Equal(body, result.BodyText);
        Assert.Equal([Fetch.ResponseBody], result.ExtraInfo);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"status": 201}""")]
    [InlineData("""{"body": "replaced"}""")]
    [InlineData("""{"filters": [{"regex": "hello", "replace": "bye"}]}""")]
    [InlineData("""{"filters": [{"regex": "absent", "replace": "x"}]}""")]
    public async Task Every_answer_carries_the_runner_header(string config)
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>(config);

        var result = await tester.RunResponseAsync(Upstream("hello world"));

        Assert.Equal(["DotNet"], result.HeaderValues("X-Resp-A6-Runner"));
        Assert.Equal("text/plain", result.Header("content-type"));
    }

    [Fact]
    public async Task The_configured_headers_may_change_the_runner_header()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"headers": {"X-Resp-A6-Runner": "edge"}}""");

        var result = await tester.RunResponseAsync(Upstream("hello"));

        Assert.Equal(["edge"], result.HeaderValues("X-Resp-A6-Runner"));
    }

    [Fact]
    public async Task A_once_filter_rewrites_the_first_match()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"filters": [{"regex": "o", "scope": "once", "replace": "0"}]}""");

        var result = await tester.RunResponseAsync(Upstream("hello world"));

        Assert.Equal("hell0 world", result.BodyText);
    }

    [Fact]
    public async Task Scope_defaults_to_once()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"filters": [{"regex": "o", "replace": "0"}]}""");

        Assert.Equal("hell0 world", (await tester.RunResponseAsync(Upstream("hello world"))).BodyText);
    }

    [Fact]
    public async Task A_global_filter_rewrites_every_match_and_filters_apply_in_order()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>(
            """{"filters": [{"regex": "o", "scope": "global", "replace": "0"}, {"regex": "(\\w+) (\\w+)", "replace": "$2 $1"}]}""");

        var result = await tester.RunResponseAsync(Upstream("hello world"));

        Assert.Equal("w0rld hell0", result.BodyText);
    }

    [Fact]
    public async Task A_global_filter_rewrites_each_match_not_only_the_first_matchs_text()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"filters": [{"regex": "\\d+", "scope": "global", "replace": "x"}]}""");

        Assert.Equal("ax bx cx", (await tester.RunResponseAsync(Upstream("a1 b22 c1"))).BodyText);
    }

    [Fact]
    public async Task The_upstream_body_is_read_through_ExtraInfo_asked_up_front()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"filters": [{"regex": "hello", "replace": "bye"}]}""");

        var result = await tester.RunResponseAsync(Upstream("hello"));

        Assert.Equal([Fetch.ResponseBody], result.ExtraInfo);
        Assert.Equal([Fetch.ResponseBody], tester.Chain.Response.Prefetch);
        Assert.Empty(tester.Chain.Request.Plugins);
    }

    [Fact]
    public async Task No_match_leaves_the_upstream_body_and_status()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"filters": [{"regex": "absent", "replace": "x"}]}""");

        var result = await tester.RunResponseAsync(Upstream("hello"));

        Assert.Empty(result.Body);
        Assert.Equal(0, result.Status);
    }

    [Fact]
    public async Task A_body_that_is_not_text_is_left_unchanged()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"filters": [{"regex": ".", "scope": "global", "replace": "x"}]}""");
        var upstream = new TestUpstream { Body = [0xff, 0xfe, 0x00, 0x41] };

        Assert.Empty((await tester.RunResponseAsync(upstream)).Body);
    }

    [Fact]
    public async Task A_catastrophic_pattern_times_out_leaves_the_body_and_logs()
    {
        var log = new LogCapture();
        var tester = PluginTester.Create<ResponseRewritePlugin>(
            """{"status": 202, "filters": [{"regex": "(a+)+$", "replace": "x"}]}""", log.Services());
        var clock = Stopwatch.StartNew();

        var result = await tester.RunResponseAsync(Upstream(new string('a', 64) + "!"));

        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
        Assert.Empty(result.Body);
        Assert.Equal(202, result.Status);
        var warning = Assert.Single(log.Entries, e => e.Level == LogLevel.Warning);
        Assert.Contains("response-rewrite", warning.Message);
        Assert.Contains("(a+)+$", warning.Message);
    }

    [Fact]
    public async Task Does_not_run_in_the_request_phase()
    {
        var tester = PluginTester.Create<ResponseRewritePlugin>("""{"status": 500, "body": "x"}""");

        Assert.True((await tester.RunAsync(new TestRequest())).IsNoAction);
    }

    [Theory]
    [InlineData("""{"filters": [{"regex": "(unclosed", "replace": "x"}]}""", "filters[0].regex is invalid: ")]
    [InlineData("""{"filters": [{"regex": "a", "scope": "all"}]}""", "filters[0].scope must be \"once\" or \"global\", got \"all\"")]
    [InlineData("""{"filters": [{"replace": "x"}]}""", "filters[0].regex is required")]
    [InlineData("""{"status": 700}""", "status must be between 100 and 599, got 700")]
    public void Rejects_an_invalid_configuration_with_the_reason(string config, string reason)
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<ResponseRewritePlugin>(config));

        Assert.StartsWith($"plugin 'response-rewrite' rejected its configuration: {reason}", Assert.Single(rejected.Problems));
    }
}
