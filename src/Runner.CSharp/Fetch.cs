namespace Apisix.Runner.CSharp;

/// <summary>
/// What a plugin can ask APISIX for during a call (ExtraInfo), for
/// <see cref="PluginBase.Prefetch"/>: declared values are fetched for the whole chain up front.
/// </summary>
public static class Fetch
{
    /// <summary>An nginx variable, such as <c>remote_addr</c> or <c>request_time</c>.</summary>
    /// <param name="name">The variable's name, without the <c>$</c>.</param>
    /// <returns>The ExtraInfo request for that variable.</returns>
    public static ExtraInfo.Info Var(string name) => ExtraInfo.Info.NewVar(name);

    /// <summary>The request body (request phase).</summary>
    public static ExtraInfo.Info RequestBody => ExtraInfo.Info.ReqBody;

    /// <summary>The upstream's response body (response phase).</summary>
    public static ExtraInfo.Info ResponseBody => ExtraInfo.Info.RespBody;
}
