namespace Apisix.Runner

open System
open System.Collections
open System.Collections.Generic
open System.Text

/// How header and argument names compare, everywhere: ASCII letters without case (as HTTP names
/// do), every other character exactly. One rule for names as strings and as UTF-8 bytes, so a
/// name found among the changes is found among APISIX's entries too.
module EntryName =
    let inline private foldAscii (c: int) =
        if c >= int 'A' && c <= int 'Z' then c ||| 0x20 else c

    /// Whether two names are equal under the rule.
    let equals (a: string) (b: string) : bool =
        if Object.ReferenceEquals(a, b) then
            true
        elif isNull a || isNull b || a.Length <> b.Length then
            false
        else
            let mutable same = true
            let mutable i = 0

            while same && i < a.Length do
                same <- foldAscii (int a[i]) = foldAscii (int b[i])
                i <- i + 1

            same

    /// Whether a name in UTF-8 equals `name` under the rule.
    let equalsUtf8 (utf8: ReadOnlySpan<byte>) (name: string) : bool =
        ArgumentNullException.ThrowIfNull name

        if Ascii.IsValid utf8 then
            // The rule on ASCII is .NET's ASCII case-insensitive comparison; a name with other
            // characters cannot equal ASCII bytes, and that comparison says so too.
            Ascii.EqualsIgnoreCase(utf8, name.AsSpan())
        else
            // Rare (HTTP names are ASCII): compare as text.
            equals (Encoding.UTF8.GetString utf8) name

/// Reads the schema's shapes out of a FlatBufferReader: the helpers every view and decoder shares.
module internal Read =
    let text (r: byref<FlatBufferReader>, s: ByteRange) =
        if s.IsPresent then
            Encoding.UTF8.GetString(r.Buffer.Slice(s.Start, s.Length))
        else
            ""

    /// A string that may be absent: null then.
    let optText (r: byref<FlatBufferReader>, s: ByteRange) =
        if s.IsPresent then
            Encoding.UTF8.GetString(r.Buffer.Slice(s.Start, s.Length))
        else
            null

    let bytes (r: byref<FlatBufferReader>, s: ByteRange) =
        if s.IsPresent then r.Buffer.Slice(s.Start, s.Length).ToArray() else [||]

    /// Checks entry i of a [TextEntry] vector; its name and value ranges.
    let entry (r: byref<FlatBufferReader>, v: ByteRange, i: int, what: string) =
        let t = r.TableAt(v, i, what)
        struct (r.String(t, Schema.TextEntry.Name, what), r.String(t, Schema.TextEntry.Value, what))

    /// The name and value ranges of an entry already validated: no second UTF-8 check.
    let validatedEntry (r: byref<FlatBufferReader>, v: ByteRange, i: int) =
        let t = r.TableAt(v, i, "entry")
        struct (r.Bytes(t, Schema.TextEntry.Name, "entry"), r.Bytes(t, Schema.TextEntry.Value, "entry"))

    /// The name range of an entry already validated: what a lookup by name compares.
    let validatedName (r: byref<FlatBufferReader>, v: ByteRange, i: int) =
        r.Bytes(r.TableAt(v, i, "entry"), Schema.TextEntry.Name, "entry")

    /// Every entry of the [TextEntry] vector in `slot`, as values.
    let entries (r: byref<FlatBufferReader>, t: Table, slot: int, what: string) : TextEntry[] =
        let v = r.Tables(t, slot, what)

        if v.Length = 0 then
            [||]
        else
            let out = Array.zeroCreate v.Length
            let mutable i = 0

            while i < v.Length && r.Failure.IsNone do
                let struct (n, value) = entry (&r, v, i, what)
                out[i] <- { Name = text (&r, n); Value = optText (&r, value) }
                i <- i + 1

            out

    let finish (r: byref<FlatBufferReader>, value: 'T) : Result<'T, DecodeError> =
        match r.Failure with
        | ValueNone -> Ok value
        | ValueSome e -> Error e

/// A [TextEntry] vector read in place: nothing is copied or decoded until an entry is asked for.
/// Valid only while the frame it was read from is alive (for the duration of one call).
[<Struct; NoEquality; NoComparison>]
type TextEntries =
    val private buffer: ReadOnlyMemory<byte>
    val private elements: ByteRange

    internal new(buffer, elements) = { buffer = buffer; elements = elements }

    /// No entries.
    static member Empty = TextEntries(ReadOnlyMemory.Empty, ByteRange.Absent)

    /// How many entries (a repeated name counts once per value).
    member e.Count = e.elements.Length

    member private e.Check(i: int) =
        if uint i >= uint e.elements.Length then
            raise (ArgumentOutOfRangeException(nameof i))

    member private e.Ranges(i: int) =
        e.Check i
        let mutable r = FlatBufferReader e.buffer.Span
        Read.validatedEntry (&r, e.elements, i)

    /// The UTF-8 bytes of entry i's name.
    member e.NameUtf8(i: int) : ReadOnlySpan<byte> =
        e.Check i
        let mutable r = FlatBufferReader e.buffer.Span
        let n = Read.validatedName (&r, e.elements, i)
        e.buffer.Span.Slice(n.Start, n.Length)

    /// The UTF-8 bytes of entry i's value (empty when it has none).
    member e.ValueUtf8(i: int) : ReadOnlySpan<byte> =
        let struct (_, v) = e.Ranges i
        e.buffer.Span.Slice(v.Start, v.Length)

    /// Entry i's name.
    member e.Name(i: int) : string = Encoding.UTF8.GetString(e.NameUtf8 i)

    member private e.Text(v: ByteRange) : string =
        if v.IsPresent then
            Encoding.UTF8.GetString(e.buffer.Span.Slice(v.Start, v.Length))
        else
            null

    /// Entry i's value; null for an argument given without `=`.
    member e.Value(i: int) : string =
        let struct (_, v) = e.Ranges i
        e.Text v

    /// Entry i, its strings made now (the entry read once).
    member e.Item
        with get (i: int): TextEntry =
            let struct (n, v) = e.Ranges i
            { Name = Encoding.UTF8.GetString(e.buffer.Span.Slice(n.Start, n.Length)); Value = e.Text v }

    /// Index of the first entry at or after `start` named `name` (EntryName's rule); -1 when none.
    member e.IndexOf(name: string, start: int) : int =
        let mutable found = -1
        let mutable i = max 0 start

        while found < 0 && i < e.elements.Length do
            if EntryName.equalsUtf8 (e.NameUtf8 i) name then found <- i
            i <- i + 1

        found

    member e.IndexOf(name: string) = e.IndexOf(name, 0)

    /// The first value of `name`; null when absent or without a value.
    member e.Find(name: string) : string =
        match e.IndexOf name with
        | -1 -> null
        | i -> e.Value i

    /// Every value of `name`, in order; entries without a value give none.
    member e.Values(name: string) : string[] =
        let values = List<string>()
        let mutable i = e.IndexOf name

        while i >= 0 do
            match e.Value i with
            | null -> ()
            | v -> values.Add v

            i <- e.IndexOf(name, i + 1)

        values.ToArray()

    member e.ToArray() : TextEntry[] =
        let out = Array.zeroCreate e.Count

        for i in 0 .. out.Length - 1 do
            out[i] <- e[i]

        out

    /// Enumerates the entries without boxing (`foreach` in C#, `for ... in` in F#).
    member e.GetEnumerator() = new TextEntriesEnumerator(e)

    interface IReadOnlyList<TextEntry> with
        member e.Count = e.Count
        member e.Item with get i = e[i]
        member e.GetEnumerator() : IEnumerator<TextEntry> = new TextEntriesEnumerator(e)
        member e.GetEnumerator() : IEnumerator = new TextEntriesEnumerator(e)

    /// Checks every entry of the vector in `slot` of table `t`.
    static member internal Read(r: byref<FlatBufferReader>, buffer: ReadOnlyMemory<byte>, t: Table, slot: int, what: string) =
        let v = r.Tables(t, slot, what)
        let mutable i = 0

        while i < v.Length && r.Failure.IsNone do
            Read.entry (&r, v, i, what) |> ignore
            i <- i + 1

        TextEntries(buffer, v)

/// Walks a TextEntries, making each entry's strings as it goes.
and [<Struct; NoEquality; NoComparison>] TextEntriesEnumerator =
    val private entries: TextEntries
    val mutable private index: int
    new(entries) = { entries = entries; index = -1 }

    member e.Current: TextEntry = e.entries[e.index]

    member e.MoveNext() =
        e.index <- e.index + 1
        e.index < e.entries.Count

    interface IEnumerator<TextEntry> with
        member e.Current = e.Current
        member e.Current = box e.Current
        member e.MoveNext() = e.MoveNext()
        member e.Reset() = e.index <- -1
        member _.Dispose() = ()

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

    /// Reads and validates the body of an HTTPReqCall frame.
    static member Read(body: ReadOnlyMemory<byte>) : Result<HttpReqCallView, DecodeError> =
        let mutable r = FlatBufferReader body.Span
        let t = r.Root "HTTPReqCall.Req"

        let view =
            { Buffer = body
              Id = r.U32(t, Schema.HttpReqCallReq.Id, 0u)
              ConfToken = r.U32(t, Schema.HttpReqCallReq.ConfToken, 0u)
              Method = LanguagePrimitives.EnumOfValue(r.U8(t, Schema.HttpReqCallReq.Method, 0uy))
              SrcIpRange = r.Bytes(t, Schema.HttpReqCallReq.SrcIp, "HTTPReqCall.Req.src_ip")
              PathRange = r.String(t, Schema.HttpReqCallReq.Path, "HTTPReqCall.Req.path")
              Args = TextEntries.Read(&r, body, t, Schema.HttpReqCallReq.Args, "HTTPReqCall.Req.args")
              Headers = TextEntries.Read(&r, body, t, Schema.HttpReqCallReq.Headers, "HTTPReqCall.Req.headers") }

        Read.finish (&r, view)

/// An HTTPRespCall.Req read in place and fully validated, without allocating.
[<Struct; NoEquality; NoComparison>]
type HttpRespCallView =
    { Buffer: ReadOnlyMemory<byte>
      Id: uint32
      ConfToken: uint32
      Status: uint16
      Headers: TextEntries }

    /// Reads and validates the body of an HTTPRespCall frame.
    static member Read(body: ReadOnlyMemory<byte>) : Result<HttpRespCallView, DecodeError> =
        let mutable r = FlatBufferReader body.Span
        let t = r.Root "HTTPRespCall.Req"

        let view =
            { Buffer = body
              Id = r.U32(t, Schema.HttpRespCallReq.Id, 0u)
              ConfToken = r.U32(t, Schema.HttpRespCallReq.ConfToken, 0u)
              Status = r.U16(t, Schema.HttpRespCallReq.Status, 0us)
              Headers = TextEntries.Read(&r, body, t, Schema.HttpRespCallReq.Headers, "HTTPRespCall.Req.headers") }

        Read.finish (&r, view)
