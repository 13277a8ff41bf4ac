using Apisix.Runner.Samples.Plugins;
using Microsoft.Extensions.DependencyInjection;

namespace Apisix.Runner.Samples.Tests.Samples;

public class FaultInjectionPluginTests
{
    private static IServiceProvider Seeded(int seed) =>
        new ServiceCollection().AddSingleton(new Random(seed)).BuildServiceProvider();

    [Fact]
    public async Task At_100_percent_every_request_gets_the_fault()
    {
        var tester = PluginTester.Create<FaultInjectionPlugin>("""{"http_status": 503, "body": "down", "percentage": 100}""");

        for (var i = 0; i < 50; i++)
        {
            var result = await tester.RunAsync(new TestRequest());
            Assert.Equal(503, result.Stop.Status);
            Assert.Equal("down", result.Stop.BodyText);
        }
    }

    [Fact]
    public async Task Percentage_defaults_to_100()
    {
        var tester = PluginTester.Create<FaultInjectionPlugin>("""{"http_status": 500}""");

        var result = await tester.RunAsync(new TestRequest());

        Assert.Equal(500, result.Stop.Status);
        Assert.Empty(result.Stop.Body);
    }

    [Fact]
    public async Task At_0_percent_no_request_gets_the_fault()
    {
        var tester = PluginTester.Create<FaultInjectionPlugin>("""{"http_status": 503, "percentage": 0}""");

        for (var i = 0; i < 50; i++)
        {
            Assert.True((await tester.RunAsync(new TestRequest())).IsNoAction);
        }
    }

    [Fact]
    public async Task At_30_percent_about_30_percent_get_the_fault()
    {
        var tester = PluginTester.Create<FaultInjectionPlugin>("""{"http_status": 503, "percentage": 30}""", Seeded(20240601));
        const int runs = 2000;
        var faults = 0;

        for (var i = 0; i < runs; i++)
        {
            if ((await tester.RunAsync(new TestRequest())).IsStop)
            {
                faults++;
            }
        }

        // Binomial(2000, 0.3): standard deviation about 20; the seed makes the run repeatable.
        Assert.InRange(faults, 500, 700);
    }

    [Theory]
    [InlineData("{}", "http_status is required and must be between 200 and 599, got 0")]
    [InlineData("""{"http_status": 199}""", "http_status is required and must be between 200 and 599, got 199")]
    [InlineData("""{"http_status": 600}""", "http_status is required and must be between 200 and 599, got 600")]
    [InlineData("""{"http_status": 503, "percentage": 101}""", "percentage must be between 0 and 100, got 101")]
    [InlineData("""{"http_status": 503, "percentage": -1}""", "percentage must be between 0 and 100, got -1")]
    public void Rejects_an_invalid_configuration_with_the_reason(string config, string reason)
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<FaultInjectionPlugin>(config));

        Assert.Equal($"plugin 'fault-injection' rejected its configuration: {reason}", Assert.Single(rejected.Problems));
    }

    [Fact]
    public void Rejects_a_status_of_the_wrong_type()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(
            () => PluginTester.Create<FaultInjectionPlugin>("""{"http_status": "503"}"""));

        Assert.Contains("invalid JSON configuration", Assert.Single(rejected.Problems));
        Assert.Contains("http_status", rejected.Problems[0]);
    }
}
