using System.Diagnostics;

namespace Apisix.Runner.Samples.Tests.Support;

/// <summary>A DLL of this test assembly's output folder, run to its end under <c>dotnet</c>, with its output.</summary>
internal static class DotnetProcess
{
    /// <summary>
    /// Runs <paramref name="dll"/> with these arguments and environment variables besides the inherited
    /// ones: its exit code, stdout and stderr. When it has not exited within <paramref name="timeout"/>,
    /// it is killed with its children and the run fails with what it wrote.
    /// </summary>
    public static async Task<(int ExitCode, string Out, string Err)> RunAsync(
        string dll, IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, dll));

        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout);

        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            // Killed, it closes its pipes and the reads end: its output says where it hung.
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{dll} did not exit within {timeout.TotalSeconds} s:\n--- stdout\n{await stdout}\n--- stderr\n{await stderr}");
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}
