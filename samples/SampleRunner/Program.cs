// The sample runner APISIX starts: `ext-plugin.cmd` in production, or by hand with
// APISIX_LISTEN_ADDRESS=unix:/tmp/runner.sock for `ext-plugin.path_for_test`. Its plugins have the
// names and configurations of the Go runner's samples, so routes written for that runner work
// unchanged, but for the differences docs/comparison.md lists (limit-req's waiting above all).
using Apisix.Runner;
using Apisix.Runner.Samples;

var builder = RunnerHost.CreateBuilder(args);
builder.Services.AddSamplePlugins();
return await RunnerHost.RunAsync(builder);

namespace Apisix.Runner.Samples
{
    using Apisix.Runner.CSharp;
    using Apisix.Runner.Samples.Plugins;
    using Microsoft.Extensions.DependencyInjection;

    /// <summary>The sample runner's plugins.</summary>
    public static class SamplePlugins
    {
        /// <summary>
        /// Registers every sample plugin, one by one (no assembly scanning, so the runner stays
        /// ready for trimming and Native AOT). Each registers under its class name without
        /// <c>Plugin</c>, in kebab case: <c>FaultInjectionPlugin</c> is <c>fault-injection</c>.
        /// </summary>
        /// <param name="services">The runner's services.</param>
        /// <returns>The same services.</returns>
        public static IServiceCollection AddSamplePlugins(this IServiceCollection services) =>
            services
                .AddPlugin<SayPlugin>()
                .AddPlugin<FaultInjectionPlugin>()
                .AddPlugin<LimitReqPlugin>()
                .AddPlugin<RequestBodyRewritePlugin>()
                .AddPlugin<ResponseRewritePlugin>()
                .AddPlugin<StopPlugin>()
                .AddPlugin<RewritePlugin>()
                .AddPlugin<ClientIpPlugin>();
    }
}
