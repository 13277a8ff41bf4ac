using Apisix.Runner.Samples.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Apisix.Runner.Samples.Tests.Facade;

public class PluginBaseTests
{
    [Fact]
    public async Task Constructors_get_services_from_dependency_injection()
    {
        var log = new LogCapture();
        var services = log.Services(s => s.AddSingleton<IGreeter>(new Greeter("bonjour")));
        var tester = PluginTester.Create<GreetingPlugin>("{}", services);

        var result = await tester.RunAsync(new TestRequest().WithHeader("X-Who", "APISIX"));

        Assert.Equal("bonjour, APISIX", result.Stop.BodyText);
        Assert.Contains(log.Entries, e => e.Category.EndsWith(nameof(GreetingPlugin), StringComparison.Ordinal) && e.Message == "greeting APISIX");
    }

    [Fact]
    public void A_missing_service_rejects_the_configuration_naming_the_plugin()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<GreetingPlugin>("{}"));

        Assert.StartsWith("plugin 'greeting' rejected its configuration: InvalidOperationException: ", Assert.Single(rejected.Problems));
        Assert.Contains(nameof(IGreeter), rejected.Problems[0]);
    }

    [Fact]
    public void A_constructor_that_throws_rejects_the_configuration()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<ThrowingConstructorPlugin>("{}"));

        Assert.Equal(
            "plugin 'throwing-constructor' rejected its configuration: InvalidOperationException: no database",
            Assert.Single(rejected.Problems));
    }

    [Fact]
    public async Task The_name_and_raw_configuration_are_available_to_the_filters()
    {
        var tester = PluginTester.Create<RawConfigPlugin>("""{"any": ["json", 1]}""");

        var result = await tester.RunAsync(new TestRequest());

        Assert.Equal("raw-config", result.Stop.Header("x-name"));
        Assert.Equal("""{"any": ["json", 1]}""", result.Stop.BodyText);
    }

    [Fact]
    public async Task A_typed_configuration_binds_snake_case_names_without_case()
    {
        var tester = PluginTester.Create<QuotaPlugin>("""{"Name": "gold", "max_requests": 10, "TAGS": ["a", "b"], "unknown": true}""");

        var result = await tester.RunAsync(new TestRequest());

        Assert.Equal("gold:10:a,b", result.Rewrite.Header("x-quota"));
    }

    [Fact]
    public void Validation_messages_reject_the_configuration_all_at_once()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<QuotaPlugin>("""{"max_requests": -5}"""));

        Assert.Equal(
            "plugin 'quota' rejected its configuration: name is required; max_requests must be above 0, got -5",
            Assert.Single(rejected.Problems));
        Assert.Contains("max_requests must be above 0", rejected.Message);
    }

    [Theory]
    [InlineData("""{"max_requests": "ten"}""", "invalid JSON configuration: ")]
    [InlineData("[1, 2]", "invalid JSON configuration: ")]
    [InlineData("not json", "invalid JSON configuration: ")]
    [InlineData("null", "the configuration is null: expected a JSON object")]
    public void Json_that_does_not_bind_rejects_the_configuration(string config, string reason)
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<QuotaPlugin>(config));

        Assert.StartsWith($"plugin 'quota' rejected its configuration: {reason}", Assert.Single(rejected.Problems));
    }

    [Fact]
    public void Reading_the_configuration_in_the_constructor_is_an_error_that_says_where_to_read_it()
    {
        var rejected = Assert.Throws<ConfigurationRejectedException>(() => PluginTester.Create<EagerConfigPlugin>("{}"));

        Assert.Contains("read Config in Validate or the filters", Assert.Single(rejected.Problems));
    }

    [Fact]
    public async Task A_response_phase_plugin_does_not_run_in_the_request_phase()
    {
        var tester = PluginTester.Create<ShoutPlugin>("{}");

        var request = await tester.RunAsync(new TestRequest().WithBody("quiet"));
        var response = await tester.RunResponseAsync(new TestUpstream().WithBody("quiet"));

        Assert.Empty(tester.Chain.Request.Plugins);
        Assert.Single(tester.Chain.Response.Plugins);
        Assert.True(request.IsNoAction);
        Assert.Empty(request.ExtraInfo);
        Assert.Equal("QUIET", response.BodyText);
        Assert.Equal([Fetch.ResponseBody], response.ExtraInfo);
    }

    [Fact]
    public async Task A_request_phase_plugin_does_not_run_in_the_response_phase()
    {
        var tester = PluginTester.Create<ClientIpPlugin>("{}");

        var response = await tester.RunResponseAsync(new TestUpstream().WithBody("body"));

        Assert.Empty(tester.Chain.Response.Plugins);
        Assert.True(response.IsUnchanged);
    }

    [Fact]
    public async Task A_plugin_overriding_both_phases_runs_in_both()
    {
        var tester = PluginTester.Create<BothPhasesPlugin>("{}");

        Assert.Equal("request", (await tester.RunAsync(new TestRequest())).Rewrite.Header("x-phase"));
        Assert.Equal("response", (await tester.RunResponseAsync(new TestUpstream())).Header("x-phase"));
    }

    [Fact]
    public async Task Declared_prefetch_reaches_the_chain_and_is_asked_before_the_filters_run()
    {
        var tester = PluginTester.CreateChain(
            (PluginFactory.Create<ClientIpPlugin>(), "{}"),
            (PluginFactory.Create<LazyReaderPlugin>(), "{}"));

        var result = await tester.RunAsync(new TestRequest().WithVar("remote_addr", "10.0.0.7").WithVar("request_time", "0.001"));

        Assert.Equal([Fetch.Var("remote_addr")], tester.Chain.Request.Prefetch);
        Assert.Empty(tester.Chain.Response.Prefetch);
        Assert.Equal("10.0.0.7", result.Rewrite.Header("x-client-ip"));
        Assert.Equal(Fetch.Var("remote_addr"), result.ExtraInfo[0]);
    }

    [Fact]
    public async Task Accessors_give_null_for_none_and_read_each_value_once_per_call()
    {
        var tester = PluginTester.Create<LazyReaderPlugin>("{}");

        var result = await tester.RunAsync(
            new TestRequest().WithHeader("Host", "example.com").WithArg("a", "1").WithArg("flag", null).WithVar("request_time", "0.5").WithBody("payload"));

        Assert.Equal("0.5|0.5|(null)|payload", result.Rewrite.Header("x-seen"));
        Assert.Equal("example.com", result.Rewrite.Header("x-host"));
        Assert.Equal("1", result.Rewrite.Header("x-arg"));
        Assert.Equal("(null)", result.Rewrite.Header("x-flag"));
        Assert.Equal([Fetch.Var("request_time"), Fetch.Var("unset_var"), Fetch.RequestBody], result.ExtraInfo);
    }

    [Fact]
    public async Task A_request_without_a_body_reads_null()
    {
        var tester = PluginTester.Create<LazyReaderPlugin>("{}");

        var result = await tester.RunAsync(new TestRequest());

        Assert.Equal("(null)|(null)|(null)|(null)", result.Rewrite.Header("x-seen"));
    }

    [Fact]
    public async Task A_chain_stops_at_the_first_stop_and_later_plugins_see_earlier_changes()
    {
        var tester = PluginTester.CreateChain(
            (PluginFactory.Create<ClientIpPlugin>(), "{}"),
            (PluginFactory.Create<RawConfigPlugin>(), "stopped"),
            (PluginFactory.Create<BothPhasesPlugin>(), "{}"));

        var result = await tester.RunAsync(new TestRequest().WithVar("remote_addr", "10.0.0.7"));

        Assert.Equal("stopped", result.Stop.BodyText);
        Assert.Null(result.Stop.Header("x-phase"));
    }

    [Fact]
    public async Task Result_helpers_say_what_the_answer_was_when_it_is_not_the_one_expected()
    {
        var tester = PluginTester.Create<Echo>("{}");

        var result = await tester.RunAsync(new TestRequest());

        var error = Assert.Throws<InvalidOperationException>(() => result.Stop);
        Assert.Equal("expected a Stop, the answer is no action", error.Message);
    }
}
