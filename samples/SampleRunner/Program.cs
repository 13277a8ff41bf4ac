// Placeholder until the runner lands (issue 3): it reports the socket APISIX would have it serve
// and exits with a non-zero status, so that nobody mistakes it for a working runner.
var address = Environment.GetEnvironmentVariable("APISIX_LISTEN_ADDRESS") ?? "(APISIX_LISTEN_ADDRESS not set)";
Console.Error.WriteLine($"Apisix.Runner sample: the socket server is not built yet; would listen on {address}.");
return 2;
