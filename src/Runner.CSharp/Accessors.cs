using Microsoft.FSharp.Core;

namespace Apisix.Runner.CSharp;

/// <summary>
/// C# accessors over the F# <see cref="Request"/>: the same reads, with <c>null</c> for "none"
/// instead of <see cref="FSharpValueOption{T}"/>. Changes go through the request's own methods
/// (<c>SetPath</c>, <c>SetHeader</c>, <c>DeleteHeader</c>, <c>SetArg</c>, <c>AddArg</c>,
/// <c>DeleteArg</c>, <c>SetBody</c>); <c>HeaderValues</c>, <c>ArgValues</c> (every value, changes
/// included), <c>Path</c>, <c>Method</c>, <c>SrcIp</c>, <c>OriginalHeaders</c> and
/// <c>OriginalArgs</c> are read directly.
/// </summary>
public static class RequestExtensions
{
    /// <summary>The first value of a request header (case ignored), changes made in the chain included.</summary>
    /// <param name="request">The request.</param>
    /// <param name="name">The header name.</param>
    /// <returns>The value, or <c>null</c> when the header is absent or deleted.</returns>
    public static string? GetHeader(this Request request, string name) => request.Header(name).OrNull();

    /// <summary>The first value of a query argument, changes made in the chain included.</summary>
    /// <param name="request">The request.</param>
    /// <param name="name">The argument name.</param>
    /// <returns>The value, or <c>null</c> when the argument is absent, deleted or given without <c>=</c>.</returns>
    public static string? GetArg(this Request request, string name) => request.Arg(name).OrNull();

    /// <summary>
    /// An nginx variable (such as <c>remote_addr</c>), asked of APISIX on first read and kept for
    /// the rest of the call. Declare it in <see cref="PluginBase.Prefetch"/> to have it fetched up front.
    /// </summary>
    /// <param name="request">The request.</param>
    /// <param name="name">The variable's name, without the <c>$</c>.</param>
    /// <returns>The value, or <c>null</c> when the variable is unset.</returns>
    public static ValueTask<string?> GetVarAsync(this Request request, string name) => request.Var(name).OrNull();

    /// <summary>
    /// The request body: the one set earlier in the chain, else APISIX's, asked on first read and
    /// kept for the rest of the call. Declare <see cref="Fetch.RequestBody"/> in
    /// <see cref="PluginBase.Prefetch"/> to have it fetched up front.
    /// </summary>
    /// <param name="request">The request.</param>
    /// <returns>The body, or <c>null</c> when the request has none.</returns>
    public static ValueTask<byte[]?> GetBodyAsync(this Request request) => request.Body().OrNull();

    internal static T? OrNull<T>(this FSharpValueOption<T> value) where T : class =>
        value.IsSome ? value.Value : null;

    internal static ValueTask<T?> OrNull<T>(this ValueTask<FSharpValueOption<T>> pending) where T : class
    {
        if (pending.IsCompletedSuccessfully)
        {
            return new ValueTask<T?>(pending.Result.OrNull());
        }

        return Await(pending);

        static async ValueTask<T?> Await(ValueTask<FSharpValueOption<T>> pending) => (await pending.ConfigureAwait(false)).OrNull();
    }
}

/// <summary>
/// C# accessors over the F# <see cref="Response"/>, with <c>null</c> for "none". In the request
/// phase the response is what a Stop answers with; in the response phase it starts as the
/// upstream's answer (<c>UpstreamStatus</c>, <c>UpstreamHeaders</c>). Set it with <c>Status</c>,
/// <c>SetHeader</c>, <c>AddHeader</c>, <c>DeleteHeader</c> and <c>SetBody</c>; read every value of
/// a header, changes included, with <c>HeaderValues</c> directly.
/// </summary>
public static class ResponseExtensions
{
    /// <summary>The first value of a response header: as set in the chain, else the upstream's.</summary>
    /// <param name="response">The response.</param>
    /// <param name="name">The header name (case ignored).</param>
    /// <returns>The value, or <c>null</c> when the header is absent or deleted.</returns>
    public static string? GetHeader(this Response response, string name) => response.Header(name).OrNull();

    /// <summary>The body set earlier in the chain.</summary>
    /// <param name="response">The response.</param>
    /// <returns>The body, or <c>null</c> when no filter set one.</returns>
    public static ReadOnlyMemory<byte>? GetBody(this Response response)
    {
        var body = response.Body;
        return body.IsSome ? body.Value : null;
    }

    /// <summary>
    /// The upstream's body (response phase), asked of APISIX on first read and kept for the rest of
    /// the call. Declare <see cref="Fetch.ResponseBody"/> in <see cref="PluginBase.Prefetch"/> to
    /// have it fetched up front.
    /// </summary>
    /// <param name="response">The response.</param>
    /// <returns>The body, or <c>null</c> when there is none (always in the request phase).</returns>
    public static ValueTask<byte[]?> GetUpstreamBodyAsync(this Response response) => response.UpstreamBody().OrNull();
}

/// <summary>C# accessors over <see cref="TextEntries"/>, the headers or arguments as APISIX sent them.</summary>
public static class TextEntriesExtensions
{
    /// <summary>The first value of a name (ASCII case ignored).</summary>
    /// <param name="entries">The entries.</param>
    /// <param name="name">The name.</param>
    /// <returns>The value, or <c>null</c> when the name is absent or has no value.</returns>
    public static string? GetValue(this TextEntries entries, string name) => entries.TryFind(name).OrNull();

    /// <summary>The value of entry <paramref name="index"/>.</summary>
    /// <param name="entries">The entries.</param>
    /// <param name="index">From 0 to <c>Count - 1</c>.</param>
    /// <returns>The value, or <c>null</c> for an argument given without <c>=</c>.</returns>
    public static string? GetValue(this TextEntries entries, int index) => entries.Value(index).OrNull();
}
