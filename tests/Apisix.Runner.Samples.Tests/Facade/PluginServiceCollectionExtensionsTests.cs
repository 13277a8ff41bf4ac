using Microsoft.Extensions.DependencyInjection;

namespace Apisix.Runner.Samples.Tests.Facade;

public class PluginServiceCollectionExtensionsTests
{
    private static string[] Names(IServiceCollection services) =>
        [.. services.BuildServiceProvider().GetServices<Plugin>().Select(p => p.Name)];

    [Fact]
    public void AddPlugin_registers_an_F_sharp_plugin_under_the_derived_or_given_name()
    {
        var services = new ServiceCollection().AddPlugin<Echo>().AddPlugin<Echo>("echo-again").AddPlugin<AttributedPlugin>();

        Assert.Equal(["echo", "echo-again", "custom-name"], Names(services));
    }

    [Fact]
    public async Task Registered_plugins_create_their_instances_from_the_container()
    {
        var provider = new ServiceCollection()
            .AddLogging()
            .AddSingleton<IGreeter>(new Greeter("hi"))
            .AddPlugin<GreetingPlugin>()
            .BuildServiceProvider();
        var plugin = Assert.Single(provider.GetServices<Plugin>());

        var result = await PluginTester.CreateChain((plugin, "{}")).RunAsync(new TestRequest());

        Assert.Equal("hi, world", result.Stop.BodyText);
    }

    [Fact]
    public void AddPlugin_refuses_an_abstract_class_or_an_empty_name_at_registration()
    {
        var services = new ServiceCollection();

        Assert.Throws<ArgumentException>(() => services.AddPlugin<AbstractPlugin>());
        Assert.Throws<ArgumentException>(() => services.AddPlugin<Echo>(" "));
    }

    [Fact]
    public void AddPluginsFromAssembly_registers_every_concrete_plugin_class()
    {
        var names = Names(new ServiceCollection().AddPluginsFromAssembly(typeof(SamplePlugins).Assembly));

        Assert.Equal(
            ["client-ip", "fault-injection", "limit-req", "request-body-rewrite", "response-rewrite", "rewrite", "say", "stop"],
            names.Order());
    }

    [Fact]
    public void AddPluginsFromAssembly_skips_abstract_and_open_generic_classes()
    {
        var names = Names(new ServiceCollection().AddPluginsFromAssembly(typeof(PluginServiceCollectionExtensionsTests).Assembly));

        Assert.Contains("greeting", names);
        Assert.Contains("custom-name", names);
        Assert.DoesNotContain("abstract", names);
        Assert.DoesNotContain("generic", names);
    }
}
