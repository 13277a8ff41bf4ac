using System.Collections.Concurrent;
using Apisix.Runner.Samples.Tests.Samples;
using Apisix.Runner.Samples.Tests.Support;

namespace Apisix.Runner.Samples.Tests.Tools;

/// <summary>The F# sample runner's process, whose <c>client-ip</c> plugin asks APISIX for <c>remote_addr</c>.</summary>
public sealed class FSharpRunnerProcess() : SampleRunnerProcess("FSharpRunner.dll");

/// <summary>apisix-runner-try, the tool of tools/Apisix.Runner.Cli, run as a user runs it, with its output and exit code.</summary>
public static class TryTool
{
    public sealed record Run(int ExitCode, string Out, string Err)
    {
        public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Out}\n--- stderr\n{Err}";
    }

    public static async Task<Run> RunAsync(params string[] args)
    {
        var (code, output, error) = await DotnetProcess.RunAsync("apisix-runner-try.dll", args, null, TimeSpan.FromSeconds(60));
        return new Run(code, output.ReplaceLineEndings("\n"), error.ReplaceLineEndings("\n"));
    }
}

public sealed class TryToolTests(SampleRunnerProcess runner) : IClassFixture<SampleRunnerProcess>
{
    [Fact]
    public async Task A_Stop_prints_the_response_the_client_gets()
    {
        var run = await TryTool.RunAsync("--socket", runner.SocketPath, "--plugin", """say={"body":"hello"}""", "--path", "/get");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Matches(@"^PrepareConf \[say\] -> conf token \d+\nHTTPReqCall GET /get\nanswer: Stop\n", run.Out);
        Assert.Contains("The client gets this response from APISIX; the upstream is not called:\n\nHTTP/1.1 200\nx-resp-a6-runner: DotNet\n\nhello\n", run.Out);
        Assert.Equal("", run.Err);
    }

    [Fact]
    public async Task A_Rewrite_prints_the_request_the_upstream_gets_with_the_changes_applied_as_APISIX_does()
    {
        var run = await TryTool.RunAsync(
            "-s", $"unix:{runner.SocketPath}",
            "-p", """rewrite={"path":"/new","headers":{"X-Api":"v2","x-gone":null},"args":{"a":"2","b":null}}""",
            "-X", "POST", "--path", "/old?a=1&b=x", "--arg", "keep=y z", "-H", "Host: example.com", "-H", "X-Gone: 1", "-d", "the body");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("HTTPReqCall POST /old?a=1&b=x&keep=y%20z\nanswer: Rewrite\n", run.Out);
        Assert.Contains("The upstream gets this request:\n\nPOST /new?keep=y%20z&a=2 HTTP/1.1\nHost: example.com\nX-Api: v2\n\nthe body\n", run.Out);
        Assert.DoesNotContain("X-Gone", run.Out);
        Assert.Contains("note: path rewritten to /new", run.Out);
    }

    [Fact]
    public async Task No_action_says_the_request_passes_unchanged()
    {
        var run = await TryTool.RunAsync("-s", runner.SocketPath, "-p", "say");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.EndsWith("answer: no action\n\nThe request passes unchanged: the upstream gets it as the client sent it.\n", run.Out);
    }

    [Fact]
    public async Task The_response_phase_prints_the_response_the_client_gets_and_the_upstream_body_it_served()
    {
        var run = await TryTool.RunAsync(
            "-s", runner.SocketPath,
            "-p", """response-rewrite={"headers":{"X-Server":"A6"},"filters":[{"regex":"world","replace":"APISIX"}]}""",
            "--upstream-status", "201", "--upstream-header", "Content-Type: text/plain", "--upstream-body", "hello world");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("HTTPRespCall: the upstream answered 201 with 1 header\n", run.Out);
        Assert.Contains("  ExtraInfo upstream body -> \"hello world\" (from --upstream-body)\n", run.Out);
        Assert.Contains("\nHTTP/1.1 201\n", run.Out);
        Assert.Contains("\nx-server: A6\n", run.Out);
        Assert.Contains("\ncontent-type: text/plain\n", run.Out);
        Assert.Contains("\n\nhello APISIX\n", run.Out);
        Assert.Contains("note: status: the upstream's", run.Out);
    }

    [Fact]
    public async Task A_rejected_configuration_is_an_error_with_exit_code_1()
    {
        var run = await TryTool.RunAsync("-s", runner.SocketPath, "-p", """fault-injection={"percentage": 50}""");

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("error: the runner rejected the route's configuration (SERVICE_UNAVAILABLE).", run.Err);
        Assert.Contains("APISIX answers 503 on this route", run.Err);
    }

    [Fact]
    public async Task An_unknown_conf_token_is_an_error_with_exit_code_1()
    {
        var run = await TryTool.RunAsync("-s", runner.SocketPath, "--token", "12345");

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("PrepareConf skipped: conf token 12345 (--token)\n", run.Out);
        Assert.Contains("error: the runner does not know the conf token (CONF_TOKEN_NOT_FOUND, in answer to HTTPReqCall).", run.Err);
    }

    [Fact]
    public async Task A_runner_that_is_not_listening_is_an_error_with_exit_code_3()
    {
        var socket = Path.Combine(Path.GetTempPath(), $"a6-none-{Guid.NewGuid():N}.sock");

        var run = await TryTool.RunAsync("-s", socket, "-p", "say");

        Assert.Equal(3, run.ExitCode);
        Assert.Contains($"error: no runner listens on {socket}: the socket file does not exist.", run.Err);
        Assert.Equal("", run.Out);
    }

    [Theory]
    [InlineData("--bogus")]
    [InlineData("--method", "FETCH", "-p", "say")]
    [InlineData("-p", "say", "--token", "1")]
    [InlineData("--upstream-body", "x", "-p", "say")]
    public async Task A_bad_command_line_is_an_error_with_exit_code_2(params string[] args)
    {
        var run = await TryTool.RunAsync(["-s", runner.SocketPath, .. args]);

        Assert.Equal(2, run.ExitCode);
        Assert.StartsWith("error: ", run.Err);
    }
}

public class TryToolErrorTests
{
    // Errors a well-behaved runner gives only to a broken APISIX or on a plugin's failure: the
    // tool's sentences for them, in-process.
    [Theory]
    [InlineData(Err.Code.BAD_REQUEST, "error: the runner could not read the HTTPReqCall (BAD_REQUEST).\n")]
    [InlineData(Err.Code.SERVICE_UNAVAILABLE, "error: the runner could not serve the HTTPReqCall (SERVICE_UNAVAILABLE): a plugin failed")]
    public void A_runner_error_in_a_call_says_what_APISIX_would_do(Err.Code code, string first)
    {
        var err = new StringWriter { NewLine = "\n" };

        Cli.Report.failure(err, Cli.Conversation.Failure.NewRunnerError("HTTPReqCall", code));

        Assert.StartsWith(first, err.ToString());
        Assert.Contains("APISIX answers 503 on this request (or lets it through when the route sets allow_degradation).", err.ToString());
    }
}

public sealed class TryToolExtraInfoTests(FSharpRunnerProcess runner) : IClassFixture<FSharpRunnerProcess>
{
    [Fact]
    public async Task A_variable_is_answered_from_the_request_and_printed()
    {
        var run = await TryTool.RunAsync("-s", runner.SocketPath, "-p", "client-ip", "--client", "10.1.2.3");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("\n  ExtraInfo var remote_addr -> \"10.1.2.3\" (from --client)\nanswer: Rewrite\n", run.Out);
        Assert.Contains("\nGET / HTTP/1.1\nx-client-ip: 10.1.2.3\n", run.Out);
    }

    [Fact]
    public async Task A_variable_given_with_var_wins()
    {
        var run = await TryTool.RunAsync("-s", runner.SocketPath, "-p", "client-ip", "--var", "remote_addr=192.0.2.7");

        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Contains("  ExtraInfo var remote_addr -> \"192.0.2.7\" (from --var)\n", run.Out);
        Assert.Contains("\nx-client-ip: 192.0.2.7\n", run.Out);
    }
}
