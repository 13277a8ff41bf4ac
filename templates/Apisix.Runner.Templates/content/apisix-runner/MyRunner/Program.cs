// The runner process. APISIX starts it (ext-plugin.cmd) with APISIX_LISTEN_ADDRESS and
// APISIX_CONF_EXPIRE_TIME set; in development, start it by hand with
// APISIX_LISTEN_ADDRESS=unix:/tmp/runner.sock and point APISIX's ext-plugin.path_for_test there.
using Apisix.Runner;
using Apisix.Runner.CSharp;
using MyRunner;

var builder = RunnerHost.CreateBuilder(args);

// One line per plugin: explicit registration keeps the runner ready for Native AOT.
builder.Services.AddPlugin<HelloPlugin>();

return await RunnerHost.RunAsync(builder);
