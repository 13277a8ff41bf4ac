using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Apisix.Runner.Samples.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Apisix.Runner.Samples.Tests.Samples;

/// <summary>
/// The sample runner process, started as APISIX starts it: the two environment variables, nothing
/// else. It is the build's SampleRunner.dll, or the executable named by APISIX_SAMPLE_RUNNER (to
/// check a published runner, such as a trimmed or single-file one); or another runner of the
/// build, such as FSharpRunner.dll.
/// </summary>
public class SampleRunnerProcess : IAsyncLifetime
{
    private readonly string _assembly;

    public SampleRunnerProcess()
        : this("SampleRunner.dll")
    {
    }

    /// <summary>Another runner of the build (one public constructor only: xunit makes fixtures with it).</summary>
    protected SampleRunnerProcess(string assembly) => _assembly = assembly;

    private readonly string _directory = Directory.CreateTempSubdirectory("a6-sample-").FullName;
    private readonly ConcurrentQueue<string> _output = new();
    private Process? _process;

    public string SocketPath => Path.Combine(_directory, "runner.sock");

    /// <summary>Arguments after the runner's path, such as <c>--Runner:PluginFolders:0=/opt/plugins</c>.</summary>
    public IReadOnlyList<string> Arguments { get; init; } = [];

    /// <summary>Environment variables besides APISIX's two, such as <c>Runner__PluginFolders</c>.</summary>
    public IReadOnlyDictionary<string, string> MoreEnvironment { get; init; } = new Dictionary<string, string>();

    public string Output => string.Join('\n', _output);

    public Process Process => _process ?? throw new InvalidOperationException("not started");

    public async Task InitializeAsync()
    {
        var published = _assembly == "SampleRunner.dll" ? Environment.GetEnvironmentVariable("APISIX_SAMPLE_RUNNER") : null;
        var start = new ProcessStartInfo(string.IsNullOrEmpty(published) ? Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet" : published)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            Environment = { ["APISIX_LISTEN_ADDRESS"] = "unix:" + SocketPath, ["APISIX_CONF_EXPIRE_TIME"] = "3600" },
        };

        if (string.IsNullOrEmpty(published))
        {
            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, _assembly));
        }

        foreach (var argument in Arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in MoreEnvironment)
        {
            start.Environment[name] = value;
        }

        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) => _output.Enqueue(e.Data ?? "");
        _process.ErrorDataReceived += (_, e) => _output.Enqueue(e.Data ?? "");
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var clock = Stopwatch.StartNew();

        while (!File.Exists(SocketPath))
        {
            if (_process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new InvalidOperationException($"{_assembly} did not listen on {SocketPath}:\n{Output}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>Asks the runner to stop as APISIX does, with SIGTERM.</summary>
    public async Task<int> TerminateAsync()
    {
        using (var kill = Process.Start("kill", ["-TERM", Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await Process.WaitForExitAsync(timeout.Token);
        return Process.ExitCode;
    }

    public Task DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
        }

        _process?.Dispose();
        Directory.Delete(_directory, recursive: true);
        return Task.CompletedTask;
    }
}

public class SampleRunnerTests
{
    [Fact]
    public void The_runner_registers_every_sample_under_its_route_name()
    {
        var plugins = new ServiceCollection().AddSamplePlugins().BuildServiceProvider().GetServices<Plugin>();

        Assert.Equal(
            ["say", "fault-injection", "limit-req", "request-body-rewrite", "response-rewrite", "stop", "rewrite", "client-ip"],
            plugins.Select(p => p.Name));
    }

    [Fact]
    public async Task The_runner_process_serves_APISIX_over_its_socket_and_stops_on_SIGTERM()
    {
        var runner = new SampleRunnerProcess();
        await runner.InitializeAsync();

        try
        {
            using (var apisix = new ApisixConnection(runner.SocketPath))
            {
                // Request phase: a route with `say`.
                var prepared = Assert.IsType<RunnerMessage.PrepareConfResp>(await apisix.PrepareAsync(("say", """{"body":"hello"}""")));
                var answer = Assert.IsType<RunnerMessage.HttpReqCallResp>(await apisix.CallAsync(prepared.Item.ConfToken, "/get"));
                var stop = Assert.IsType<HttpReqCall.Action.Stop>(answer.Item.Action).Item;
                Assert.Equal(200, stop.Status);
                Assert.Equal("hello", Encoding.UTF8.GetString(stop.Body));
                Assert.Contains(TextEntry.Set("X-Resp-A6-Runner", "DotNet"), stop.Headers);

                // Response phase: the runner asks for the upstream body, then answers with it rewritten.
                prepared = Assert.IsType<RunnerMessage.PrepareConfResp>(
                    await apisix.PrepareAsync(("response-rewrite", """{"filters":[{"regex":"world","replace":"APISIX"}]}""")));
                var ask = Assert.IsType<RunnerMessage.ExtraInfoReq>(await apisix.RespondAsync(prepared.Item.ConfToken, 200));
                Assert.Equal(ExtraInfo.Info.RespBody, ask.Item);
                var rewritten = Assert.IsType<RunnerMessage.HttpRespCallResp>(await apisix.ReplyAsync("hello world"u8.ToArray()));
                Assert.Equal("hello APISIX", Encoding.UTF8.GetString(rewritten.Item.Body));
                Assert.Contains(TextEntry.Set("X-Resp-A6-Runner", "DotNet"), rewritten.Item.Headers);

                // A rejected configuration: an error for the PrepareConf, and a log naming the plugin and why.
                var rejected = Assert.IsType<RunnerMessage.ErrResp>(await apisix.PrepareAsync(("fault-injection", """{"percentage": 50}""")));
                Assert.Equal(Err.Code.SERVICE_UNAVAILABLE, rejected.Item);
            }

            Assert.Equal(0, await runner.TerminateAsync());
            Assert.False(File.Exists(runner.SocketPath), "the runner removes its socket on exit");
            Assert.Contains("plugin 'fault-injection' rejected its configuration: http_status is required", runner.Output);
        }
        finally
        {
            await runner.DisposeAsync();
        }
    }
}
