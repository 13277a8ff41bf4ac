namespace Apisix.Runner

open System
open System.Buffers
open System.Buffers.Binary
open System.Text
open System.Text.Unicode
open System.Runtime.CompilerServices

/// Why a buffer could not be read. Every malformed input maps to one of these; the codec never throws.
type DecodeError =
    /// The buffer ends before the named item does.
    | Truncated of what: string
    /// An offset or length of the named item points outside the buffer.
    | OutOfBounds of what: string * position: int64
    /// A vtable or table header is inconsistent (odd or too small size, field beyond the table).
    | Malformed of what: string * position: int
    /// A string is not valid UTF-8.
    | InvalidUtf8 of what: string
    /// A union type tag that the schema does not define.
    | UnknownUnionTag of what: string * tag: byte
    /// A union whose type tag is set but whose value is absent.
    | MissingUnionValue of what: string
    /// A frame type byte that is not valid in this direction.
    | UnexpectedFrameType of frameType: byte

    /// One line for logs and error messages.
    member e.Describe() =
        match e with
        | Truncated what -> $"buffer too short for {what}"
        | OutOfBounds(what, pos) -> $"{what} points outside the buffer (at {pos})"
        | Malformed(what, pos) -> $"malformed {what} at {pos}"
        | InvalidUtf8 what -> $"{what} is not valid UTF-8"
        | UnknownUnionTag(what, tag) -> $"{what} has unknown type tag {tag}"
        | MissingUnionValue what -> $"{what} has a type tag but no value"
        | UnexpectedFrameType t -> $"unexpected frame type {t}"

/// A run of bytes inside a buffer: a string's UTF-8 bytes, a byte vector, or a vector's elements.
[<Struct>]
type ByteRange =
    { Start: int
      /// Bytes for strings and byte vectors; elements for vectors of tables.
      Length: int }

    /// An absent string or vector: no data can start at position 0.
    static member Absent = { Start = 0; Length = 0 }
    member r.IsPresent = r.Start <> 0

/// A table whose header and vtable were checked to lie inside the buffer.
[<Struct; NoComparison>]
type Table =
    { Pos: int
      VTable: int
      VTableSize: int
      Size: int }

    /// A table with no fields: what an absent or unreadable table reads as.
    static member Absent =
        { Pos = 0
          VTable = 0
          VTableSize = 0
          Size = 0 }

/// Bounds-checked reading of FlatBuffers (little-endian, uoffsets forward, soffset to the vtable).
/// The first failure sticks: after it every read answers a default without touching the buffer,
/// so a decoder reads straight through and checks `Failure` once at the end. An absent string or
/// vector is a range starting at 0, where no data can sit (the root offset is there); a failed or
/// absent table has an empty vtable, so all its fields read as absent.
/// Offsets may legally share data, so a hostile buffer could make one string be read a million
/// times over; a budget of bytes read through vectors and strings, a small multiple of the buffer,
/// bounds the work and the memory any buffer can cost.
[<Struct; IsByRefLike; NoEquality; NoComparison>]
type FlatBufferReader =
    val Buffer: ReadOnlySpan<byte>
    val mutable Failure: DecodeError voption
    val mutable private budget: int64

    new(buffer: ReadOnlySpan<byte>) =
        { Buffer = buffer
          Failure = ValueNone
          budget = 4L * int64 buffer.Length + 4096L }

    member r.Fail(e: DecodeError) =
        if r.Failure.IsNone then
            r.Failure <- ValueSome e

    member private r.U16At(i: int) =
        BinaryPrimitives.ReadUInt16LittleEndian(r.Buffer.Slice(i, 2))

    member private r.U32At(i: int) =
        BinaryPrimitives.ReadUInt32LittleEndian(r.Buffer.Slice(i, 4))

    /// The table whose soffset is at `pos`.
    member r.Table(pos: int, what: string) : Table =
        let b = r.Buffer

        if r.Failure.IsSome then
            Table.Absent
        elif pos < 0 || pos > b.Length - 4 then
            r.Fail(OutOfBounds(what, int64 pos))
            Table.Absent
        else
            let vt = int64 pos - int64 (BinaryPrimitives.ReadInt32LittleEndian(b.Slice(pos, 4)))

            if vt < 0L || vt > int64 (b.Length - 4) then
                r.Fail(OutOfBounds(what + " vtable", vt))
                Table.Absent
            else
                let vt = int vt
                let vsize = int (r.U16At vt)
                let tsize = int (r.U16At(vt + 2))

                if vsize < 4 || vsize &&& 1 <> 0 || vt + vsize > b.Length then
                    r.Fail(Malformed(what + " vtable", vt))
                    Table.Absent
                elif tsize < 4 || pos + tsize > b.Length then
                    r.Fail(Malformed(what + " size", pos))
                    Table.Absent
                else
                    { Pos = pos; VTable = vt; VTableSize = vsize; Size = tsize }

    /// The root table of the buffer.
    member r.Root(what: string) : Table =
        if r.Buffer.Length < 8 then
            r.Fail(Truncated what)
            Table.Absent
        else
            let off = r.U32At 0

            if off > uint32 (r.Buffer.Length - 4) then
                r.Fail(OutOfBounds(what, int64 off))
                Table.Absent
            else
                r.Table(int off, what)

    /// Position of a slot's inline field of `width` bytes, 0 when absent.
    member r.Field(t: Table, slot: int, width: int) : int =
        let entry = 4 + 2 * slot

        if entry + 2 > t.VTableSize || r.Failure.IsSome then
            0
        else
            let off = int (r.U16At(t.VTable + entry))

            if off = 0 then
                0
            elif off < 4 || off + width > t.Size then
                r.Fail(Malformed("field", t.Pos))
                0
            else
                t.Pos + off

    member r.U8(t: Table, slot: int, fallback: byte) : byte =
        match r.Field(t, slot, 1) with
        | 0 -> fallback
        | p -> r.Buffer[p]

    member r.U16(t: Table, slot: int, fallback: uint16) : uint16 =
        match r.Field(t, slot, 2) with
        | 0 -> fallback
        | p -> r.U16At p

    member r.U32(t: Table, slot: int, fallback: uint32) : uint32 =
        match r.Field(t, slot, 4) with
        | 0 -> fallback
        | p -> r.U32At p

    /// Follows the uoffset stored at `at`; the target must leave room for a 4-byte header.
    member r.Follow(at: int, what: string) : int =
        let off = r.U32At at
        let target = int64 at + int64 off

        // An offset of 0 would point at itself: FlatBuffers never writes one.
        if off = 0u then
            r.Fail(Malformed(what + " offset", at))
            0
        elif target > int64 (r.Buffer.Length - 4) then
            r.Fail(OutOfBounds(what, target))
            0
        else
            int target

    /// The vector at `pos` of `elementSize`-byte elements (0: absent).
    member r.VectorAt(pos: int, elementSize: int, what: string) : ByteRange =
        if pos = 0 || r.Failure.IsSome then
            ByteRange.Absent
        else
            let count = int64 (r.U32At pos)
            let size = count * int64 elementSize

            if int64 pos + 4L + size > int64 r.Buffer.Length then
                r.Fail(OutOfBounds(what, count))
                ByteRange.Absent
            elif size + 4L > r.budget then
                r.Fail(Malformed(what + " (data shared beyond the read budget)", pos))
                ByteRange.Absent
            else
                r.budget <- r.budget - size - 4L
                { Start = pos + 4; Length = int count }

    /// The string at `pos` (0: absent), checked to be valid UTF-8.
    member r.StringAt(pos: int, what: string) : ByteRange =
        let s = r.VectorAt(pos, 1, what)

        if s.Start <> 0 && not (Utf8.IsValid(r.Buffer.Slice(s.Start, s.Length))) then
            r.Fail(InvalidUtf8 what)
            ByteRange.Absent
        else
            s

    /// Target position of a slot's offset field (string, vector or table), 0 when absent.
    member r.Offset(t: Table, slot: int, what: string) : int =
        match r.Field(t, slot, 4) with
        | 0 -> 0
        | p -> r.Follow(p, what)

    member r.String(t: Table, slot: int, what: string) : ByteRange =
        r.StringAt(r.Offset(t, slot, what), what)

    member r.Bytes(t: Table, slot: int, what: string) : ByteRange =
        r.VectorAt(r.Offset(t, slot, what), 1, what)

    /// A vector of tables: the range counts elements, each a 4-byte uoffset.
    member r.Tables(t: Table, slot: int, what: string) : ByteRange =
        r.VectorAt(r.Offset(t, slot, what), 4, what)

    /// A table field (0 slot absent gives Table.Absent).
    member r.TableField(t: Table, slot: int, what: string) : Table =
        match r.Offset(t, slot, what) with
        | 0 -> Table.Absent
        | p -> r.Table(p, what)

    /// The table that element `i` of a vector of tables points to.
    member r.TableAt(elements: ByteRange, i: int, what: string) : Table =
        if r.Failure.IsSome then
            Table.Absent
        else
            r.Table(r.Follow(elements.Start + 4 * i, what), what)

/// Writes FlatBuffers front to back into one pooled, reusable buffer, each frame prefixed by
/// the 4-byte frame header so that a finished frame is one contiguous span ready for the socket.
/// Parents come before children and are patched when a child is placed, so every uoffset points
/// forward as the format requires; every table gets its own vtable just before it.
/// Alignment is counted from the start of the FlatBuffers body. Not thread-safe: one per connection.
[<Sealed; AllowNullLiteral>]
type FlatBufferBuilder(initialCapacity: int) =
    let mutable buf: byte[] = ArrayPool<byte>.Shared.Rent(max 64 initialCapacity)
    let mutable pos = 0
    let mutable body = 0
    let mutable tableStart = 0
    let mutable vtableStart = 0

    let ensure (extra: int) =
        if pos + extra > buf.Length then
            let needed = int64 pos + int64 extra

            if needed > int64 Array.MaxLength then
                raise (OutOfMemoryException "FlatBufferBuilder: frame larger than an array can hold")

            let bigger = ArrayPool<byte>.Shared.Rent(int (min (int64 Array.MaxLength) (max needed (2L * int64 buf.Length))))
            Buffer.BlockCopy(buf, 0, bigger, 0, pos)
            ArrayPool<byte>.Shared.Return buf
            buf <- bigger

    let align (n: int) =
        let pad = (n - (pos - body) % n) % n
        ensure pad
        Array.Clear(buf, pos, pad)
        pos <- pos + pad

    new() = new FlatBufferBuilder(1024)

    /// Bytes written so far, frame header included.
    member _.Length = pos

    /// Starts a frame of the given type: reserves the frame header and the root offset.
    member _.BeginFrame(frameType: FrameType) =
        pos <- 0
        ensure 8
        buf[0] <- byte frameType
        body <- Frame.HeaderLength
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, 4, 4), 0u)
        pos <- 8

    /// Finishes the frame: fills in the 24-bit big-endian body length. Errors when the body is too large.
    member _.EndFrame() : Result<ReadOnlyMemory<byte>, int> =
        match Frame.writeHeader (LanguagePrimitives.EnumOfValue buf[0]) (pos - body) (Span buf) with
        | Ok() -> Ok(ReadOnlyMemory(buf, 0, pos))
        | Error len -> Error len

    /// Starts a table with room for `slots` fields and returns its position.
    member _.BeginTable(slots: int) : int =
        align 2
        let vsize = 4 + 2 * slots
        ensure (vsize + 8)
        vtableStart <- pos
        Array.Clear(buf, pos, vsize)
        BinaryPrimitives.WriteUInt16LittleEndian(Span(buf, pos, 2), uint16 vsize)
        pos <- pos + vsize
        align 4
        tableStart <- pos
        BinaryPrimitives.WriteInt32LittleEndian(Span(buf, pos, 4), tableStart - vtableStart)
        pos <- pos + 4
        tableStart

    member private _.Slot(slot: int) =
        BinaryPrimitives.WriteUInt16LittleEndian(Span(buf, vtableStart + 4 + 2 * slot, 2), uint16 (pos - tableStart))

    member b.AddU8(slot: int, value: byte) =
        ensure 1
        b.Slot slot
        buf[pos] <- value
        pos <- pos + 1

    member b.AddU16(slot: int, value: uint16) =
        align 2
        ensure 2
        b.Slot slot
        BinaryPrimitives.WriteUInt16LittleEndian(Span(buf, pos, 2), value)
        pos <- pos + 2

    member b.AddU32(slot: int, value: uint32) =
        align 4
        ensure 4
        b.Slot slot
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, pos, 4), value)
        pos <- pos + 4

    /// Adds an offset field to be filled by `Patch` once its target is written; returns the patch position.
    member b.AddOffset(slot: int) : int =
        align 4
        ensure 4
        b.Slot slot
        let at = pos
        pos <- pos + 4
        at

    /// Closes the current table: records its inline size in its vtable.
    member _.EndTable() =
        BinaryPrimitives.WriteUInt16LittleEndian(Span(buf, vtableStart + 2, 2), uint16 (pos - tableStart))

    /// Points the uoffset at `at` to `target` (which lies after it).
    member _.Patch(at: int, target: int) =
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, at, 4), uint32 (target - at))

    /// Makes `target` the root table of the frame.
    member b.SetRoot(target: int) = b.Patch(body, target)

    /// Writes a string (length, UTF-8 bytes, NUL) and returns its position.
    member _.String(value: string) : int =
        align 4
        ensure (8 + Encoding.UTF8.GetMaxByteCount value.Length)
        let at = pos
        let n = Encoding.UTF8.GetBytes(value.AsSpan(), Span(buf, at + 4, buf.Length - at - 4))
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, at, 4), uint32 n)
        buf[at + 4 + n] <- 0uy
        pos <- at + 5 + n
        at

    /// Writes a byte vector and returns its position.
    member _.Bytes(value: ReadOnlySpan<byte>) : int =
        align 4
        ensure (4 + value.Length)
        let at = pos
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, at, 4), uint32 value.Length)
        value.CopyTo(Span(buf, at + 4, value.Length))
        pos <- at + 4 + value.Length
        at

    /// Writes the header of a vector of `count` offsets; element i is patched at `position + 4 + 4 * i`.
    member _.OffsetVector(count: int) : int =
        align 4
        ensure (4 + 4 * count)
        let at = pos
        BinaryPrimitives.WriteUInt32LittleEndian(Span(buf, at, 4), uint32 count)
        Array.Clear(buf, at + 4, 4 * count)
        pos <- at + 4 + 4 * count
        at

    /// Gives the buffer back to the pool; the builder must not be used afterwards.
    member _.Dispose() =
        if not (isNull buf) then
            ArrayPool<byte>.Shared.Return buf
            buf <- null

    interface IDisposable with
        member b.Dispose() = b.Dispose()
