using System.Diagnostics;
using Apisix.Runner.Samples.Plugins;

namespace Apisix.Runner.Samples.Tests.Samples;

public class LimitReqPluginTests
{
    [Fact]
    public async Task Over_the_burst_answers_503()
    {
        // One request per 10 s: the first goes at once, the next two wait their turn, the fourth is turned away.
        var tester = PluginTester.Create<LimitReqPlugin>("""{"rate": 0.1, "burst": 2}""");

        var first = tester.RunAsync(new TestRequest());
        var second = tester.RunAsync(new TestRequest());
        var third = tester.RunAsync(new TestRequest());
        var fourth = tester.RunAsync(new TestRequest());

        Assert.True(first.IsCompletedSuccessfully && (await first).IsNoAction);
        Assert.False(second.IsCompleted, "the second request should be waiting for its turn");
        Assert.False(third.IsCompleted, "the third request should be waiting for its turn");
        Assert.True(fourth.IsCompletedSuccessfully, "over the burst the answer is immediate");
        Assert.Equal(503, (await fourth).Stop.Status);
    }

    [Fact]
    public async Task With_no_burst_a_request_over_the_rate_answers_503()
    {
        var tester = PluginTester.Create<LimitReqPlugin>("""{"rate": 1, "burst": 0}""");

        Assert.True((await tester.RunAsync(new TestRequest())).IsNoAction);
        Assert.Equal(503, (await tester.RunAsync(new TestRequest())).Stop.Status);
    }

    [Fact]
    public async Task Within_the_burst_a_request_waits_for_its_turn_then_goes_on()
    {
        // 2 per second: the second request's turn is 500 ms after the first's.
        var tester = PluginTester.Create<LimitReqPlugin>("""{"rate": 2, "burst": 1}""");
        var clock = Stopwatch.StartNew();

        var first = await tester.RunAsync(new TestRequest());
        var second = tester.RunAsync(new TestRequest());
        Assert.False(second.IsCompleted, "the second request should wait, asynchronously");

        var result = await second.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.True(first.IsNoAction);
        Assert.True(result.IsNoAction);
        Assert.InRange(clock.ElapsedMilliseconds, 400, 5000);
    }

    [Fact]
    public async Task Each_route_configuration_has_its_own_bucket()
    {
        var routeA = PluginTester.Create<LimitReqPlugin>("""{"rate": 1, "burst": 0}""");
        var routeB = PluginTester.Create<LimitReqPlugin>("""{"rate": 1, "burst": 0}""");

        Assert.True((await routeA.RunAsync(new TestRequest())).IsNoAction);
        Assert.True((await routeB.RunAsync(new TestRequest())).IsNoAction);
        Assert.True((await routeA.RunAsync(new TestRequest())).IsStop);
    }

    [Fact]
    public async Task Many_concurrent_requests_get_exactly_burst_plus_one_turns()
    {
        var tester = PluginTester.Create<LimitReqPlugin>("""{"rate": 0.01, "burst": 5}""");

        // One turn per 100 s: one request goes, five wait their turn, the other 58 are turned away at once.
        var calls = Enumerable.Range(0, 64).Select(_ => Task.Run(() => tester.RunAsync(new TestRequest()))).ToArray();
        var clock = Stopwatch.StartNew();

        while (calls.Count(c => c.IsCompleted) < 59 && clock.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(20);
        }

        await Task.Delay(50);
        var answered = calls.Where(c => c.IsCompletedSuccessfully).Select(c => c.Result).ToList();
        Assert.Equal(64 - 5, answered.Count);
        Assert.Single(answered, r => r.IsNoAction);
        Assert.Equal(58, answered.Count(r => r.IsStop && r.Stop.Status == 503));
    }

    [Theory]
    [InlineData("""{"burst": 1}""", "rate must be a number of requests per second above 0, got 0")]
    [InlineData("""{"rate": -2, "burst": 1}""", "rate must be a number of requests per second above 0, got -2")]
    [InlineData("""{"rate": 1, "burst": -1}""", "burst must be 0 or more, got -1")]
    public void Rejects_an_invalid_configuration_with_the_reason(string config, string reason)
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<LimitReqPlugin>(config));

        Assert.Equal($"plugin 'limit-req' rejected its configuration: {reason}", Assert.Single(rejected.Problems));
    }
}
