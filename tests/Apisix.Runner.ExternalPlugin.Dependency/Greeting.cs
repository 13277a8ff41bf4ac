namespace Apisix.Runner.ExternalPlugin.Dependency;

/// <summary>What the external plugin answers with: code only its own folder holds.</summary>
public static class Greeting
{
    /// <summary>A greeting for <paramref name="who"/>.</summary>
    public static string For(string who) => $"hello {who}, from a plugin folder";
}
