namespace Apisix.Runner.CSharp.Testing;

/// <summary>The answer to a request-phase call, as APISIX reads it: no action, a Stop or a Rewrite.</summary>
public sealed class RequestResult
{
    internal RequestResult(TestResult<HttpReqCall.Resp> result)
    {
        Answer = result.Answer;
        ExtraInfo = result.ExtraInfo;
    }

    /// <summary>The decoded answer, as the F# core's test kit gives it.</summary>
    public HttpReqCall.Resp Answer { get; }

    /// <summary>The ExtraInfo the call asked APISIX for, in order (prefetched values first).</summary>
    public IReadOnlyList<ExtraInfo.Info> ExtraInfo { get; }

    /// <summary>Whether the request goes on unchanged.</summary>
    public bool IsNoAction => Answer.Action.IsNoAction;

    /// <summary>Whether APISIX answers the client without the upstream.</summary>
    public bool IsStop => Answer.Action.IsStop;

    /// <summary>Whether the request goes on, changed.</summary>
    public bool IsRewrite => Answer.Action.IsRewrite;

    /// <summary>The Stop.</summary>
    /// <exception cref="InvalidOperationException">The answer is not a Stop.</exception>
    public StopAnswer Stop => Answer.Action is HttpReqCall.Action.Stop stop
        ? new StopAnswer(stop.Item)
        : throw new InvalidOperationException($"expected a Stop, the answer is {Describe()}");

    /// <summary>The Rewrite.</summary>
    /// <exception cref="InvalidOperationException">The answer is not a Rewrite.</exception>
    public RewriteAnswer Rewrite => Answer.Action is HttpReqCall.Action.Rewrite rewrite
        ? new RewriteAnswer(rewrite.Item)
        : throw new InvalidOperationException($"expected a Rewrite, the answer is {Describe()}");

    /// <summary>The kind of answer, for assertion messages.</summary>
    /// <returns><c>no action</c>, <c>Stop</c> or <c>Rewrite</c>.</returns>
    public override string ToString() => Describe();

    private string Describe() => TestAnswer.describe(Answer.Action);
}

/// <summary>A Stop: the answer APISIX sends the client itself.</summary>
public sealed class StopAnswer
{
    internal StopAnswer(HttpReqCall.Stop stop) => Value = stop;

    /// <summary>The decoded Stop.</summary>
    public HttpReqCall.Stop Value { get; }

    /// <summary>The status (the runner sends 200 when no filter set one).</summary>
    public int Status => Value.Status;

    /// <summary>The headers, in order: the first value of a name sets it, later ones add.</summary>
    public IReadOnlyList<TextEntry> Headers => Value.Headers;

    /// <summary>The body; empty when none.</summary>
    public byte[] Body => Value.Body;

    /// <summary>The body as UTF-8 text; empty when none.</summary>
    public string BodyText => TestAnswer.text(Value.Body);

    /// <summary>The first value of a header (case ignored).</summary>
    /// <param name="name">The header name.</param>
    /// <returns>The value, or <c>null</c> when absent.</returns>
    public string? Header(string name) => TestAnswer.first(name, Value.Headers);

    /// <summary>Every value of a header (case ignored), in order.</summary>
    /// <param name="name">The header name.</param>
    /// <returns>The values; empty when absent.</returns>
    public IReadOnlyList<string> HeaderValues(string name) => TestAnswer.values(name, Value.Headers);
}

/// <summary>A Rewrite: only what the chain changed, as APISIX applies it before going upstream.</summary>
public sealed class RewriteAnswer
{
    internal RewriteAnswer(HttpReqCall.Rewrite rewrite) => Value = rewrite;

    /// <summary>The decoded Rewrite.</summary>
    public HttpReqCall.Rewrite Value { get; }

    /// <summary>The new upstream path; <c>null</c> when unchanged.</summary>
    public string? Path => Value.Path;

    /// <summary>The request headers set (with a value) or deleted (without).</summary>
    public IReadOnlyList<TextEntry> Headers => Value.Headers;

    /// <summary>The query arguments set (with a value; a repeated name gives several values) or deleted (without).</summary>
    public IReadOnlyList<TextEntry> Args => Value.Args;

    /// <summary>The headers to set on the eventual response.</summary>
    public IReadOnlyList<TextEntry> ResponseHeaders => Value.RespHeaders;

    /// <summary>The new request body; empty when unchanged.</summary>
    public byte[] Body => Value.Body;

    /// <summary>The new request body as UTF-8 text; empty when unchanged.</summary>
    public string BodyText => TestAnswer.text(Value.Body);

    /// <summary>The value a request header is set to (case ignored).</summary>
    /// <param name="name">The header name.</param>
    /// <returns>The value, or <c>null</c> when the header is not set (unchanged or deleted).</returns>
    public string? Header(string name) => TestAnswer.first(name, Value.Headers);

    /// <summary>Whether the rewrite deletes a request header (case ignored).</summary>
    /// <param name="name">The header name.</param>
    /// <returns><c>true</c> when an entry without a value names it.</returns>
    public bool DeletesHeader(string name) => TestAnswer.deletes(name, Value.Headers);

    /// <summary>The first value a query argument is set to.</summary>
    /// <param name="name">The argument name.</param>
    /// <returns>The value, or <c>null</c> when the argument is not set (unchanged or deleted).</returns>
    public string? Arg(string name) => TestAnswer.first(name, Value.Args);

    /// <summary>Every value a query argument is set to, in order.</summary>
    /// <param name="name">The argument name.</param>
    /// <returns>The values; empty when not set.</returns>
    public IReadOnlyList<string> ArgValues(string name) => TestAnswer.values(name, Value.Args);

    /// <summary>Whether the rewrite deletes a query argument.</summary>
    /// <param name="name">The argument name.</param>
    /// <returns><c>true</c> when an entry without a value names it.</returns>
    public bool DeletesArg(string name) => TestAnswer.deletes(name, Value.Args);

    /// <summary>The value a response header is set to (case ignored).</summary>
    /// <param name="name">The header name.</param>
    /// <returns>The value, or <c>null</c> when not set.</returns>
    public string? ResponseHeader(string name) => TestAnswer.first(name, Value.RespHeaders);
}

/// <summary>The answer to a response-phase call, as APISIX reads it: what replaces the upstream's status, headers and body.</summary>
public sealed class ResponseResult
{
    internal ResponseResult(TestResult<HttpRespCall.Resp> result)
    {
        Answer = result.Answer;
        ExtraInfo = result.ExtraInfo;
    }

    /// <summary>The decoded answer, as the F# core's test kit gives it.</summary>
    public HttpRespCall.Resp Answer { get; }

    /// <summary>The ExtraInfo the call asked APISIX for, in order (prefetched values first).</summary>
    public IReadOnlyList<ExtraInfo.Info> ExtraInfo { get; }

    /// <summary>The new status; 0 keeps the upstream's.</summary>
    public int Status => Answer.Status;

    /// <summary>The headers sent back; empty keeps the upstream's (when present, APISIX uses only these).</summary>
    public IReadOnlyList<TextEntry> Headers => Answer.Headers;

    /// <summary>The new body; empty keeps the upstream's.</summary>
    public byte[] Body => Answer.Body;

    /// <summary>The new body as UTF-8 text; empty keeps the upstream's.</summary>
    public string BodyText => TestAnswer.text(Answer.Body);

    /// <summary>Whether the upstream's answer goes to the client as it is.</summary>
    public bool IsUnchanged => TestAnswer.isUnchanged(Answer);

    /// <summary>The first value of a header sent back (case ignored).</summary>
    /// <param name="name">The header name.</param>
    /// <returns>The value, or <c>null</c> when absent.</returns>
    public string? Header(string name) => TestAnswer.first(name, Answer.Headers);

    /// <summary>Every value of a header sent back (case ignored), in order.</summary>
    /// <param name="name">The header name.</param>
    /// <returns>The values; empty when absent.</returns>
    public IReadOnlyList<string> HeaderValues(string name) => TestAnswer.values(name, Answer.Headers);
}
