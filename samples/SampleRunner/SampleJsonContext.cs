using System.Text.Json.Serialization;
using Apisix.Runner.Samples.Plugins;

namespace Apisix.Runner.Samples;

/// <summary>
/// Source-generated JSON binding of every sample configuration: no reflection at run time, so the
/// runner can be trimmed or compiled ahead of time. Names are snake_case (<c>HttpStatus</c> reads
/// <c>"http_status"</c>) and matched without case, as the facade's reflection default does.
/// </summary>
/// <remarks>
/// The configuration types use <c>{ get; set; }</c> properties: the generated code sets init-only
/// properties through an object initializer, which gives a property missing from the JSON its
/// type's default (0, null) instead of the value it is initialized with in the class.
/// </remarks>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, PropertyNameCaseInsensitive = true)]
[JsonSerializable(typeof(SayConfig))]
[JsonSerializable(typeof(FaultInjectionConfig))]
[JsonSerializable(typeof(LimitReqConfig))]
[JsonSerializable(typeof(RequestBodyRewriteConfig))]
[JsonSerializable(typeof(ResponseRewriteConfig))]
[JsonSerializable(typeof(StopConfig))]
[JsonSerializable(typeof(RewriteConfig))]
[JsonSerializable(typeof(ClientIpConfig))]
internal sealed partial class SampleJsonContext : JsonSerializerContext;
