namespace Apisix.Runner.CSharp;

/// <summary>
/// The name routes use for this plugin (the <c>name</c> of an entry in <c>ext-plugin-*.conf</c>).
/// Without it the name comes from the class: its name without a <c>Plugin</c> suffix, in
/// lower-case kebab case (<c>FaultInjectionPlugin</c> is <c>fault-injection</c>).
/// </summary>
/// <param name="name">The plugin name, exactly as routes spell it.</param>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class PluginNameAttribute(string name) : Attribute
{
    /// <summary>The plugin name, exactly as routes spell it.</summary>
    public string Name { get; } = name;
}
