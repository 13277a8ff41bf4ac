namespace Apisix.Runner

open System
open System.Diagnostics.CodeAnalysis
open System.Reflection
open System.Text.Json

/// The name routes use for a plugin class (the `name` of an entry in `ext-plugin-*.conf`). Without
/// it the name comes from the class name (see PluginType.nameOf).
[<Sealed; AllowNullLiteral; AttributeUsage(AttributeTargets.Class, Inherited = false)>]
type PluginNameAttribute(name: string) =
    inherit Attribute()

    /// The plugin name, exactly as routes spell it.
    member _.Name = name

/// The rules that turn a plugin class into a plugin, the same for F# and C#: its route name and
/// the phases it runs in.
module PluginType =
    /// The route name of a class name: without a `Plugin` suffix (and generic arity), in lower-case
    /// kebab case: `FaultInjectionPlugin` is `fault-injection`, `Say` is `say`.
    [<CompiledName("NameOfClass")>]
    let nameOfClass (className: string) : string =
        let name =
            match className.IndexOf '`' with
            | -1 -> className
            | tick -> className.Substring(0, tick)

        let name =
            if name.Length > 6 && name.EndsWith("Plugin", StringComparison.Ordinal) then
                name.Substring(0, name.Length - 6)
            else
                name

        JsonNamingPolicy.KebabCaseLower.ConvertName name

    /// The route name of a plugin class: its PluginNameAttribute, else `nameOfClass` of its name.
    [<CompiledName("NameOf")>]
    let nameOf (pluginType: Type) : string =
        ArgumentNullException.ThrowIfNull pluginType

        match pluginType.GetCustomAttribute<PluginNameAttribute>(false) with
        | null -> nameOfClass pluginType.Name
        | attribute -> attribute.Name

    /// Whether a class overrides the virtual method `name` with these parameters, that is, whether
    /// it runs in the phase that method serves.
    [<CompiledName("Overrides")>]
    let overrides
        ([<DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicMethods)>] pluginType: Type)
        (name: string)
        (parameters: Type[])
        : bool =
        match pluginType.GetMethod(name, BindingFlags.Public ||| BindingFlags.Instance, parameters) with
        | null -> false
        | m -> m.DeclaringType <> m.GetBaseDefinition().DeclaringType
