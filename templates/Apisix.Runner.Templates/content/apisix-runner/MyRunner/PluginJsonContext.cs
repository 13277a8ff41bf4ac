using System.Text.Json.Serialization;

namespace MyRunner;

/// <summary>
/// Source-generated JSON binding of the plugins' configurations: no reflection at run time, so the
/// runner can be published with Native AOT. Names read in snake_case, without case, as the other
/// APISIX runners' plugins write them. Add a <c>[JsonSerializable]</c> line for each new configuration type.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, PropertyNameCaseInsensitive = true)]
[JsonSerializable(typeof(HelloConfig))]
internal sealed partial class PluginJsonContext : JsonSerializerContext;
