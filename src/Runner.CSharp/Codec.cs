using Microsoft.FSharp.Core;

namespace Apisix.Runner.CSharp;

/// <summary>
/// Frame-level access to the APISIX protocol for C# callers: decode a frame body sent by APISIX.
/// The plugin API proper arrives with the runner.
/// </summary>
public static class Codec
{
    /// <summary>Decodes the body of a frame that APISIX sent.</summary>
    /// <param name="frameType">The frame's type byte.</param>
    /// <param name="body">The frame's body, without the 4-byte header.</param>
    /// <param name="message">The message when the body is valid.</param>
    /// <param name="error">Why the body is invalid, otherwise.</param>
    /// <returns><c>true</c> when the body decoded.</returns>
    public static bool TryDecode(FrameType frameType, ReadOnlySpan<byte> body,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ApisixMessage? message,
        [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        FSharpResult<ApisixMessage, DecodeError> result = Decode.apisixMessage(frameType, body);
        if (result.IsOk)
        {
            message = result.ResultValue;
            error = null;
            return true;
        }
        message = null;
        error = result.ErrorValue.Describe();
        return false;
    }
}
