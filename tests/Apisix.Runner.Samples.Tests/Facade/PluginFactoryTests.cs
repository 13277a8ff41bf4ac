namespace Apisix.Runner.Samples.Tests.Facade;

public class PluginFactoryTests
{
    [Theory]
    [InlineData(typeof(RateLimitingPlugin), "rate-limiting")]
    [InlineData(typeof(HTTPSRedirectPlugin), "https-redirect")]
    [InlineData(typeof(Echo), "echo")]
    [InlineData(typeof(AttributedPlugin), "custom-name")]
    [InlineData(typeof(Odd.Plugin), "plugin")]
    [InlineData(typeof(GenericPlugin<int>), "generic")]
    [InlineData(typeof(Apisix.Runner.Samples.Plugins.FaultInjectionPlugin), "fault-injection")]
    public void Names_come_from_the_attribute_else_the_class_in_kebab_case(Type type, string expected)
    {
        Assert.Equal(expected, PluginType.NameOf(type));
    }

    [Fact]
    public void The_plugin_carries_the_derived_or_given_name()
    {
        Assert.Equal("echo", PluginFactory.Create<Echo>().Name);
        Assert.Equal("other", PluginFactory.Create<Echo>(name: "other").Name);
    }

    [Fact]
    public void An_abstract_class_is_refused()
    {
        Assert.Throws<ArgumentException>(() => PluginFactory.Create(typeof(AbstractPlugin)));
    }

    [Fact]
    public void Each_preparation_makes_a_new_instance_with_the_phases_it_overrides()
    {
        var plugin = PluginFactory.Create<BothPhasesPlugin>();

        var first = plugin.Prepare.Invoke("{}").ResultValue;
        var second = plugin.Prepare.Invoke("{}").ResultValue;

        Assert.True(first.Request.IsSome);
        Assert.True(first.Response.IsSome);
        Assert.NotSame(first.Request.Value, second.Request.Value);
        Assert.True(PluginFactory.Create<ShoutPlugin>().Prepare.Invoke("{}").ResultValue.Request.IsNone);
        Assert.True(PluginFactory.Create<ClientIpPlugin>().Prepare.Invoke("{}").ResultValue.Response.IsNone);
    }

    [Fact]
    public void A_rejected_configuration_is_an_error_result_with_every_message()
    {
        var prepared = PluginFactory.Create<QuotaPlugin>().Prepare.Invoke("""{"max_requests": 0}""");

        Assert.True(prepared.IsError);
        Assert.Equal("name is required; max_requests must be above 0, got 0", prepared.ErrorValue);
    }
}
