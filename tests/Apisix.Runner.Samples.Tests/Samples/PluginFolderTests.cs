using System.Reflection;
using System.Text;
using Apisix.Runner.Samples.Tests.Support;
using Apisix.Runner.Samples.Tests.Tools;

namespace Apisix.Runner.Samples.Tests.Samples;

/// <summary>
/// <c>Runner:PluginFolders</c> with runner processes that were built without the plugin: the
/// external plugin (tests/Apisix.Runner.ExternalPlugin, built with the solution into its own
/// folder, referenced by no runner, with a dependency no runner has) is served over the socket; a
/// folder that cannot be used stops the start with exit code 1 and one line on stderr.
/// </summary>
public class PluginFolderTests
{
    private const string PluginFile = "Apisix.Runner.ExternalPlugin.dll";

    /// <summary>The external plugin's build output, in this test assembly's configuration.</summary>
    private static readonly Lazy<string> s_pluginFolder = new(() =>
    {
        var root = new DirectoryInfo(AppContext.BaseDirectory);

        while (root is not null && !File.Exists(Path.Combine(root.FullName, "Runner.sln")))
        {
            root = root.Parent;
        }

        Assert.NotNull(root);
        var configuration = typeof(PluginFolderTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()!.Configuration;
        var folder = Path.Combine(root.FullName, "tests", "Apisix.Runner.ExternalPlugin", "bin", configuration, "net10.0");
        Assert.True(File.Exists(Path.Combine(folder, PluginFile)), $"{folder} holds no {PluginFile}: build the solution first");
        return folder;
    });

    private static string PluginFolder => s_pluginFolder.Value;

    [Fact]
    public void The_plugin_and_its_dependency_are_not_in_the_runners_output()
    {
        Assert.False(File.Exists(Path.Combine(AppContext.BaseDirectory, PluginFile)));
        Assert.False(File.Exists(Path.Combine(AppContext.BaseDirectory, "Apisix.Runner.ExternalPlugin.Dependency.dll")));
        Assert.True(File.Exists(Path.Combine(PluginFolder, "Apisix.Runner.ExternalPlugin.Dependency.dll")));
    }

    [Fact]
    public async Task The_sample_runner_serves_a_plugin_from_a_folder_with_its_own_dependency_in_its_own_load_context()
    {
        var runner = new SampleRunnerProcess { Arguments = [$"--Runner:PluginFolders:0={PluginFolder}"] };
        await runner.InitializeAsync();

        try
        {
            using (var apisix = new ApisixConnection(runner.SocketPath))
            {
                var stop = await StopOfAsync(apisix, "external-greeting");
                Assert.Equal("hello APISIX, from a plugin folder", Encoding.UTF8.GetString(stop.Body));
                var plugin = Path.Combine(PluginFolder, PluginFile);
                Assert.Contains(TextEntry.Set("x-plugin-context", plugin), stop.Headers);
                Assert.Contains(TextEntry.Set("x-dependency-context", plugin), stop.Headers);
                Assert.Contains(TextEntry.Set("x-facade-context", "Default"), stop.Headers);

                // A plugin value (a public static Plugin), in a route with one of the runner's own.
                var prepared = Assert.IsType<RunnerMessage.PrepareConfResp>(await apisix.PrepareAsync(("external-tag", "{}"), ("say", """{"body":"hi"}""")));
                var answer = Assert.IsType<RunnerMessage.HttpReqCallResp>(await apisix.CallAsync(prepared.Item.ConfToken, "/get"));
                Assert.Equal("hi", Encoding.UTF8.GetString(Assert.IsType<HttpReqCall.Action.Stop>(answer.Item.Action).Item.Body));
            }

            Assert.Equal(0, await runner.TerminateAsync());
            // At the default level, under the lifecycle category, with its event id.
            Assert.Contains($"info: Apisix.Runner.Lifetime[16] Loaded plugin folder {PluginFolder}: external-greeting, external-tag ({PluginFile})", runner.Output);
            Assert.Contains("with plugins say, fault-injection, limit-req, request-body-rewrite, response-rewrite, stop, rewrite, client-ip, external-greeting, external-tag", runner.Output);
        }
        finally
        {
            await runner.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_F_sharp_runner_without_the_facade_serves_it_too_with_the_facade_from_the_folder()
    {
        // The environment's form: one value, paths separated as in PATH.
        var runner = new FSharpRunnerProcess { MoreEnvironment = new Dictionary<string, string> { ["Runner__PluginFolders"] = PluginFolder } };
        await runner.InitializeAsync();

        try
        {
            using var apisix = new ApisixConnection(runner.SocketPath);
            var stop = await StopOfAsync(apisix, "external-greeting");
            Assert.Equal("hello APISIX, from a plugin folder", Encoding.UTF8.GetString(stop.Body));
            Assert.Contains(TextEntry.Set("x-facade-context", Path.Combine(PluginFolder, PluginFile)), stop.Headers);
        }
        finally
        {
            await runner.DisposeAsync();
        }
    }

    [Fact]
    public async Task Two_folders_with_a_plugin_of_the_same_name_stop_the_start_naming_both_assemblies()
    {
        using var copy = new TempFolder();
        CopyFolder(PluginFolder, copy.Path);

        var (code, stderr) = await StartAsync($"--Runner:PluginFolders:0={PluginFolder}", $"--Runner:PluginFolders:1={copy.Path}");

        Assert.Equal(1, code);
        Assert.Equal(
            $"apisix runner: two plugins are named 'external-greeting': one in {Path.Combine(PluginFolder, PluginFile)}, one in {Path.Combine(copy.Path, PluginFile)}",
            Assert.Single(stderr));
    }

    [Fact]
    public async Task A_folder_plugin_named_as_one_of_the_runners_own_stops_the_start_naming_both()
    {
        // The sample runner's own assembly as a plugin folder: its plugins are the runner's.
        using var folder = new TempFolder();

        foreach (var file in new[] { "SampleRunner.dll", "SampleRunner.deps.json" })
        {
            File.Copy(Path.Combine(AppContext.BaseDirectory, file), Path.Combine(folder.Path, file));
        }

        var (code, stderr) = await StartAsync($"--Runner:PluginFolders:0={folder.Path}");

        Assert.Equal(1, code);
        var line = Assert.Single(stderr);
        Assert.Matches(
            $"^apisix runner: two plugins are named '[a-z-]+': one registered by the runner itself \\(SampleRunner\\), one in {Path.Combine(folder.Path, "SampleRunner.dll")}$",
            line);
    }

    [Fact]
    public async Task A_missing_folder_stops_the_start_naming_it()
    {
        var missing = Path.Combine(Path.GetTempPath(), "a6-no-such-plugin-folder");
        var (code, stderr) = await StartAsync($"--Runner:PluginFolders:0={missing}");

        Assert.Equal(1, code);
        Assert.Equal($"apisix runner: plugin folder {missing} does not exist (Runner:PluginFolders)", Assert.Single(stderr));
    }

    [Fact]
    public async Task A_plugin_whose_dependency_is_missing_stops_the_start_naming_both()
    {
        using var copy = new TempFolder();
        CopyFolder(PluginFolder, copy.Path);
        File.Delete(Path.Combine(copy.Path, "Apisix.Runner.ExternalPlugin.Dependency.dll"));

        var (code, stderr) = await StartAsync($"--Runner:PluginFolders:0={copy.Path}");

        Assert.Equal(1, code);
        var line = Assert.Single(stderr);
        Assert.StartsWith($"apisix runner: cannot load plugin assembly {Path.Combine(copy.Path, PluginFile)}: ", line);
        Assert.Contains("'Apisix.Runner.ExternalPlugin.Dependency, Version=", line);
    }

    private static async Task<HttpReqCall.Stop> StopOfAsync(ApisixConnection apisix, string plugin)
    {
        var prepared = Assert.IsType<RunnerMessage.PrepareConfResp>(await apisix.PrepareAsync((plugin, "{}")));
        var answer = Assert.IsType<RunnerMessage.HttpReqCallResp>(await apisix.CallAsync(prepared.Item.ConfToken, "/get"));
        return Assert.IsType<HttpReqCall.Action.Stop>(answer.Item.Action).Item;
    }

    /// <summary>Starts the sample runner with these arguments, which must stop it: its exit code and the lines it wrote to stderr.</summary>
    private static async Task<(int Code, string[] Stderr)> StartAsync(params string[] arguments)
    {
        using var sockets = new TempFolder();
        var environment = new Dictionary<string, string> { ["APISIX_LISTEN_ADDRESS"] = "unix:" + Path.Combine(sockets.Path, "runner.sock") };
        var (code, stdout, stderr) = await DotnetProcess.RunAsync("SampleRunner.dll", arguments, environment, TimeSpan.FromSeconds(30));

        // Refused before it listened. The socket cannot tell (a runner that listened removes it when
        // it stops); the line it logs on stdout when it listens can (Log.listening).
        Assert.DoesNotContain("Listening on unix:", stdout);
        return (code, stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    private static void CopyFolder(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    private sealed class TempFolder : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("a6-plugins-").FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
