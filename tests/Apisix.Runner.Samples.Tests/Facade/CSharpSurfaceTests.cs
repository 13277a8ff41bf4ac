namespace Apisix.Runner.Samples.Tests.Facade;

/// <summary>The core's request and response as C# sees them: no F# types to unwrap.</summary>
public sealed class CSharpSurfaceTests
{
    [Fact]
    public async Task Entries_enumerate_with_foreach_missing_values_are_null_and_the_status_is_an_int()
    {
        var tester = PluginTester.Create<InventoryPlugin>("{}");

        var result = await tester.RunAsync(
            new TestRequest().WithHeader("X-A", "1").WithHeader("x-b", "2").WithArg("q", "apisix").WithArg("flag", null!));

        Assert.Equal(299, result.Stop.Status);
        Assert.Equal("x-a=1 x-b=2 ?q=apisix ?flag (2 headers, flag has no value)", result.Stop.BodyText);
    }

    [Theory]
    [InlineData(42)]
    [InlineData(1000)]
    [InlineData(-1)]
    public async Task A_status_that_is_not_three_digits_is_refused_where_it_is_set(int status)
    {
        var tester = PluginTester.Create<StatusPlugin>($$"""{"status": {{status}}}""");

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => tester.RunAsync(new TestRequest()));
    }
}
