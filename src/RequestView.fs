namespace Apisix.Runner

open System
open System.Text

/// A [TextEntry] vector read in place: nothing is copied or decoded until an entry is asked for.
/// Valid only while the frame it was read from is alive (for the duration of one call).
[<Struct; NoEquality; NoComparison>]
type TextEntries =
    val private buffer: ReadOnlyMemory<byte>
    val private elements: ByteRange

    internal new(buffer, elements) = { buffer = buffer; elements = elements }

    /// How many entries (a repeated name counts once per value).
    member e.Count = e.elements.Length

    member private e.Ranges(i: int) =
        if uint i >= uint e.elements.Length then
            raise (ArgumentOutOfRangeException(nameof i))

        let mutable r = FlatBufferReader e.buffer.Span
        Read.validatedEntry (&r, e.elements, i)

    /// The UTF-8 bytes of entry i's name.
    member e.NameUtf8(i: int) : ReadOnlySpan<byte> =
        let struct (n, _) = e.Ranges i
        e.buffer.Span.Slice(n.Start, n.Length)

    /// The UTF-8 bytes of entry i's value (empty when it has none).
    member e.ValueUtf8(i: int) : ReadOnlySpan<byte> =
        let struct (_, v) = e.Ranges i
        e.buffer.Span.Slice(v.Start, v.Length)

    member e.Name(i: int) : string = Encoding.UTF8.GetString(e.NameUtf8 i)

    /// Entry i's value; none for an argument given without `=`.
    member e.Value(i: int) : string voption =
        let struct (_, v) = e.Ranges i

        if v.IsPresent then
            ValueSome(Encoding.UTF8.GetString(e.buffer.Span.Slice(v.Start, v.Length)))
        else
            ValueNone

    /// Index of the first entry at or after `start` whose name equals `name`, ignoring ASCII case; -1 when none.
    member e.IndexOf(name: string, start: int) : int =
        let mutable found = -1
        let mutable i = max 0 start

        while found < 0 && i < e.elements.Length do
            let candidate = e.NameUtf8 i
            // Header and argument names are ASCII: equal names have equal byte lengths.
            if candidate.Length = name.Length && Ascii.EqualsIgnoreCase(candidate, name.AsSpan()) then
                found <- i

            i <- i + 1

        found

    member e.IndexOf(name: string) = e.IndexOf(name, 0)

    /// The first value of `name` (ASCII case ignored); none when absent or without a value.
    member e.TryFind(name: string) : string voption =
        match e.IndexOf name with
        | -1 -> ValueNone
        | i -> e.Value i

    member e.ToArray() : TextEntry[] =
        let out = Array.zeroCreate e.Count

        for i in 0 .. out.Length - 1 do
            out[i] <- { Name = e.Name i; Value = e.Value i }

        out

    /// Checks every entry of the vector in `slot` of table `t`.
    static member internal Read(r: byref<FlatBufferReader>, buffer: ReadOnlyMemory<byte>, t: Table, slot: int, what: string) =
        let v = r.Tables(t, slot, what)
        let mutable i = 0

        while i < v.Length && r.Failure.IsNone do
            Read.entry (&r, v, i, what) |> ignore
            i <- i + 1

        TextEntries(buffer, v)

/// An HTTPReqCall.Req read in place and fully validated, without allocating. Strings are made
/// only when asked for. Valid only while the frame it was read from is alive.
[<Struct; NoEquality; NoComparison>]
type HttpReqCallView =
    { Buffer: ReadOnlyMemory<byte>
      Id: uint32
      ConfToken: uint32
      Method: Method
      SrcIpRange: ByteRange
      PathRange: ByteRange
      Args: TextEntries
      Headers: TextEntries }

    /// The client address: 4 bytes of IPv4 or 16 of IPv6.
    member v.SrcIp: ReadOnlySpan<byte> = v.Buffer.Span.Slice(v.SrcIpRange.Start, v.SrcIpRange.Length)

    member v.PathUtf8: ReadOnlySpan<byte> = v.Buffer.Span.Slice(v.PathRange.Start, v.PathRange.Length)

    member v.Path = Encoding.UTF8.GetString v.PathUtf8

    /// A copy that outlives the frame.
    member v.ToMessage() : HttpReqCall.Req =
        { Id = v.Id
          SrcIp = v.SrcIp.ToArray()
          Method = v.Method
          Path = v.Path
          Args = v.Args.ToArray()
          Headers = v.Headers.ToArray()
          ConfToken = v.ConfToken }

    /// Reads and validates the body of an HTTPReqCall frame.
    static member Read(body: ReadOnlyMemory<byte>) : Result<HttpReqCallView, DecodeError> =
        let mutable r = FlatBufferReader body.Span
        let t = r.Root "HTTPReqCall.Req"
        let id = r.U32(t, 0, 0u)
        let srcIp = r.Bytes(t, 1, "HTTPReqCall.Req.src_ip")
        let methd: Method = LanguagePrimitives.EnumOfValue(r.U8(t, 2, 0uy))
        let path = r.String(t, 3, "HTTPReqCall.Req.path")
        let args = TextEntries.Read(&r, body, t, 4, "HTTPReqCall.Req.args")
        let headers = TextEntries.Read(&r, body, t, 5, "HTTPReqCall.Req.headers")
        let token = r.U32(t, 6, 0u)

        Read.finish (
            &r,
            { Buffer = body
              Id = id
              ConfToken = token
              Method = methd
              SrcIpRange = srcIp
              PathRange = path
              Args = args
              Headers = headers }
        )

/// An HTTPRespCall.Req read in place and fully validated, without allocating.
[<Struct; NoEquality; NoComparison>]
type HttpRespCallView =
    { Buffer: ReadOnlyMemory<byte>
      Id: uint32
      ConfToken: uint32
      Status: uint16
      Headers: TextEntries }

    member v.ToMessage() : HttpRespCall.Req =
        { Id = v.Id
          Status = v.Status
          Headers = v.Headers.ToArray()
          ConfToken = v.ConfToken }

    /// Reads and validates the body of an HTTPRespCall frame.
    static member Read(body: ReadOnlyMemory<byte>) : Result<HttpRespCallView, DecodeError> =
        let mutable r = FlatBufferReader body.Span
        let t = r.Root "HTTPRespCall.Req"
        let id = r.U32(t, 0, 0u)
        let status = r.U16(t, 1, 0us)
        let headers = TextEntries.Read(&r, body, t, 2, "HTTPRespCall.Req.headers")
        let token = r.U32(t, 3, 0u)

        Read.finish (
            &r,
            { Buffer = body
              Id = id
              ConfToken = token
              Status = status
              Headers = headers }
        )
