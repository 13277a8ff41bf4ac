namespace Apisix.Runner

open System
open System.Collections.Generic
open System.Diagnostics.CodeAnalysis
open System.Reflection

/// Makes the plugin of a class deriving from a plugin base class that the core does not know, such
/// as the C# facade's `PluginBase`. The base class names its factory with PluginBaseClassAttribute;
/// the core asks it for each concrete subclass in an assembly loaded from a plugin folder
/// (`Runner:PluginFolders`). The naming and phase rules stay the core's (PluginType).
type IPluginClassFactory =
    /// The plugin of `pluginType`, a concrete subclass of the base class, named by PluginType.nameOf,
    /// whose instances are made with `services` (the runner's). Throws when the class cannot be a
    /// plugin (no usable constructor, an empty name): the runner then does not start, and says why.
    abstract Create:
        [<DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors ||| DynamicallyAccessedMemberTypes.PublicMethods)>] pluginType:
            Type *
        services: IServiceProvider ->
            Plugin

/// On a plugin base class: its concrete subclasses in an assembly loaded from a plugin folder are
/// plugins, made by `factory`, an IPluginClassFactory with a public parameterless constructor.
[<Sealed; AllowNullLiteral; AttributeUsage(AttributeTargets.Class, Inherited = false)>]
type PluginBaseClassAttribute
    ([<DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)>] factory: Type) =
    inherit Attribute()

    /// The IPluginClassFactory that makes the plugins of the subclasses.
    [<DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicParameterlessConstructor)>]
    member _.Factory = factory

/// What counts as a plugin in an assembly loaded from a plugin folder, for C# and F# alike:
/// - every concrete class (public or not, not generic) deriving from a base class marked with
///   PluginBaseClassAttribute (the C# facade's `PluginBase`), made by that base class's factory;
/// - every public static property or field of type Plugin on a public type: an F# module's public
///   `let` of type Plugin is one. Values meant as building blocks only belong in private modules
///   or `let private`.
/// Found by reflection, so not for trimmed or Native AOT builds.
module internal PluginDiscovery =
    [<Literal>]
    let private Reflection =
        "Finds plugins by reflection over the types of an assembly loaded at start; a trimmed or Native AOT runner registers its plugins one by one."

    let private describe (e: exn) =
        match e with
        | :? TargetInvocationException as t when not (isNull t.InnerException) -> $"{t.InnerException.GetType().Name}: {t.InnerException.Message}"
        | e -> $"{e.GetType().Name}: {e.Message}"

    /// The factory type named by the first marked base class of `t`; null when none is marked.
    [<RequiresUnreferencedCode(Reflection)>]
    let private factoryOf (t: Type) : Type =
        let mutable baseType = t.BaseType
        let mutable factory: Type = null

        while isNull factory && not (isNull baseType) do
            match baseType.GetCustomAttribute<PluginBaseClassAttribute>(false) with
            | null -> baseType <- baseType.BaseType
            | marked -> factory <- marked.Factory

        factory

    /// The factory of a marked base class, made once per discovery.
    [<RequiresUnreferencedCode(Reflection)>]
    let private factory (made: Dictionary<Type, IPluginClassFactory>) (factoryType: Type) : Result<IPluginClassFactory, string> =
        match made.TryGetValue factoryType with
        | true, f -> Ok f
        | _ ->
            try
                match Activator.CreateInstance factoryType with
                | :? IPluginClassFactory as f ->
                    made[factoryType] <- f
                    Ok f
                | _ -> Error $"{factoryType.FullName}, named by PluginBaseClassAttribute, is not an {nameof IPluginClassFactory}"
            with e ->
                Error $"cannot make {factoryType.FullName}, named by PluginBaseClassAttribute: {describe e}"

    /// The plugin of a concrete class deriving from a marked base class.
    [<RequiresUnreferencedCode(Reflection)>]
    let private ofClass made (services: IServiceProvider) (t: Type) (factoryType: Type) : Result<Plugin, string> =
        match factory made factoryType with
        | Error e -> Error e
        | Ok f ->
            try
                match f.Create(t, services) with
                | p when isNull (box p) -> Error $"cannot make plugin class {t.FullName}: its factory gave no plugin"
                | p -> Ok p
            with e ->
                Error $"cannot make plugin class {t.FullName}: {describe e}"

    /// The plugin a public static property or field holds.
    let private ofValue (owner: Type) (value: MemberInfo) : Result<Plugin, string> =
        try
            let held =
                match value with
                | :? PropertyInfo as p -> p.GetValue null
                | :? FieldInfo as f -> f.GetValue null
                | _ -> null

            match held with
            | :? Plugin as p -> Ok p
            | _ -> Error $"plugin value {owner.FullName}.{value.Name} is null"
        with e ->
            Error $"plugin value {owner.FullName}.{value.Name} threw {describe e}"

    /// Whether a public static member holds a plugin: a readable, unindexed property or a field of type Plugin.
    let private holdsPlugin (m: MemberInfo) =
        match m with
        | :? PropertyInfo as p -> p.PropertyType = typeof<Plugin> && p.CanRead && p.GetIndexParameters().Length = 0
        | :? FieldInfo as f -> f.FieldType = typeof<Plugin>
        | _ -> false

    /// The plugins among `types`, in their order, a type's class plugin before its values; the
    /// first problem instead when a plugin cannot be made.
    [<RequiresUnreferencedCode(Reflection)>]
    let ofTypes (types: Type seq) (services: IServiceProvider) : Result<Plugin list, string> =
        let made = Dictionary<Type, IPluginClassFactory>()
        let found = ResizeArray<Plugin>()
        let problems = ResizeArray<string>()

        let add (result: Result<Plugin, string>) =
            match result with
            | Ok p -> found.Add p
            | Error why -> problems.Add why

        use e = types.GetEnumerator()

        while problems.Count = 0 && e.MoveNext() do
            let t = e.Current

            if t.IsClass && not t.IsAbstract && not t.ContainsGenericParameters then
                match factoryOf t with
                | null -> ()
                | factoryType -> add (ofClass made services t factoryType)

            if t.IsVisible && not t.ContainsGenericParameters then
                let members =
                    t.GetMembers(BindingFlags.Public ||| BindingFlags.Static ||| BindingFlags.DeclaredOnly)

                for m in members do
                    if problems.Count = 0 && holdsPlugin m then
                        add (ofValue t m)

        if problems.Count = 0 then Ok(List.ofSeq found) else Error problems[0]

    /// The plugins of an assembly (see the module's rules); the first problem instead when its
    /// types do not load or a plugin cannot be made.
    [<RequiresUnreferencedCode(Reflection)>]
    let ofAssembly (assembly: Assembly) (services: IServiceProvider) : Result<Plugin list, string> =
        let types =
            try
                Ok(assembly.GetTypes())
            with :? ReflectionTypeLoadException as e ->
                let first =
                    match e.LoaderExceptions |> Array.tryFind (isNull >> not) with
                    | Some x -> x.Message
                    | None -> e.Message

                Error $"its types do not load: {first}"

        match types with
        | Ok types -> ofTypes types services
        | Error why -> Error why
