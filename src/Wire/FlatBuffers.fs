namespace Apisix.Runner

#nowarn "9" // NativePtr: Google.FlatBuffers 25.2.10 (built without ENABLE_SPAN_T) takes spans only as pointers

// The FlatBuffers runtime under the codec. Reading is ours (FlatBufferReader): bounds-checked,
// UTF-8-checked, with a read budget, never throwing. Building is Google.FlatBuffers' builder under
// FrameBuilder (docs/performance.md, "Google.FlatBuffers under the codec", says why each side).

open System
open System.Buffers
open System.Buffers.Binary
open System.Text.Unicode
open System.Runtime.CompilerServices
open Microsoft.FSharp.NativeInterop

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

/// Raised inside an encoder when the frame would outgrow what a builder may hold, and caught by
/// every encoder of module `Write`, which answers `FrameTooLarge` instead: it never leaves the
/// codec. `atLeast` is a lower bound of the body length (always above Frame.MaxBodyLength).
exception internal FrameOverflow of atLeast: int

/// The memory under Google's FlatBufferBuilder: one array of `Buffers.rent`, pooled up to 64 KiB.
/// The builder writes back to front and asks for twice the length when it runs out (`GrowFront`),
/// so the data written so far moves to the END of the bigger array. Growth stops at `MaxCapacity`.
[<Sealed; AllowNullLiteral>]
type internal PooledAllocator() =
    inherit Google.FlatBuffers.ByteBufferAllocator()

    /// 32 MiB: the smallest power of two that holds the largest frame (4 + 16,777,215 bytes).
    static member MaxCapacity = 1 <<< 25

    member a.Array: byte[] = a.Buffer

    /// Starts again from a freshly rented array of at least `size` bytes, giving back the one held.
    member a.Reset(size: int) =
        if not (isNull a.Buffer) then
            Buffers.giveBack a.Buffer

        let array = Buffers.rent size
        a.Buffer <- array
        a.Length <- array.Length

    override a.GrowFront(newSize: int) =
        // The builder needed more than the Length bytes held, so the body is longer than Length - 8
        // (alignment padding is below 8 bytes); newSize is non-positive once Length reaches 1 GiB.
        if newSize <= a.Length || newSize > PooledAllocator.MaxCapacity then
            raise (FrameOverflow(max (Frame.MaxBodyLength + 1) (a.Length - 8)))

        let old = a.Buffer
        let bigger = Buffers.rent newSize
        Buffer.BlockCopy(old, 0, bigger, bigger.Length - a.Length, a.Length)
        Buffers.giveBack old
        a.Buffer <- bigger
        a.Length <- bigger.Length

    member a.Release() =
        if not (isNull a.Buffer) then
            Buffers.giveBack a.Buffer
            a.Buffer <- null
            a.Length <- 0

/// Builds frames with Google.FlatBuffers' FlatBufferBuilder over pooled memory, one frame at a
/// time, and writes the 4-byte frame header in front of each finished body, so that a frame is
/// one contiguous slice of the builder's array, ready for the socket without a copy. Google's
/// builder writes back to front: children (strings, vectors, tables) are finished before the
/// table that points to them, so module `Write` builds every message children first.
/// Reused frame after frame, it allocates nothing once its array has grown to the frame's size;
/// after a frame larger than it keeps (64 KiB, or the initial capacity when larger) it gives the
/// array back at the next frame or `Trim`, so a burst of large answers does not pin memory.
/// A frame stays valid until the builder's next frame. Not thread-safe: one per connection.
[<Sealed; AllowNullLiteral>]
type FrameBuilder(initialCapacity: int) =
    let initial = min (max 64 initialCapacity) PooledAllocator.MaxCapacity
    let retained = max initial 65536

    let memory =
        let m = PooledAllocator()
        m.Reset initial
        m

    let builder =
        Google.FlatBuffers.FlatBufferBuilder(Google.FlatBuffers.ByteBuffer(memory, 0))

    // The offsets of a vector's elements, collected while the elements are written (a vector is
    // written after them); one vector at a time.
    let mutable elements: int[] = ArrayPool<int>.Shared.Rent 16

    /// Raises the overflow for `extra` more bytes on top of what is written.
    let overflow (extra: int64) =
        let atLeast = max (int64 Frame.MaxBodyLength + 1L) (int64 builder.Offset + extra)
        raise (FrameOverflow(int (min atLeast (int64 Int32.MaxValue))))

    /// Copies a span in front of what is written (25.2.10 takes spans only through a pointer).
    let put (value: ReadOnlySpan<byte>) =
        if not value.IsEmpty then
            use p = fixed value
            builder.Put<byte>(NativePtr.toNativeInt p, value.Length)

    new() = new FrameBuilder(1024)

    /// Bytes of the array held now.
    member internal _.Capacity = memory.Length

    /// Gives back an array grown past what the builder keeps; the last frame becomes invalid.
    member internal _.Trim() =
        if memory.Length > retained then
            memory.Reset initial
            builder.Clear()

        if elements.Length > 1024 then
            ArrayPool<int>.Shared.Return elements
            elements <- ArrayPool<int>.Shared.Rent 16

    /// Starts a frame; the previous frame becomes invalid.
    member internal b.Begin() =
        b.Trim()
        builder.Clear()

    /// A string: length, UTF-8 bytes, NUL. Not null.
    member internal _.String(value: string) : int =
        // Beyond this even one byte per char outgrows the builder; it also keeps the UTF-8 length
        // the builder computes within an int.
        if value.Length > PooledAllocator.MaxCapacity then
            overflow (int64 value.Length)

        builder.CreateString(value).Value

    /// A [ubyte] vector.
    member internal _.Bytes(value: ReadOnlySpan<byte>) : int =
        if value.Length > PooledAllocator.MaxCapacity then
            overflow (int64 value.Length)

        builder.StartVector(1, value.Length, 1)
        put value
        builder.EndVector().Value

    /// Room for the offsets of `count` elements of a vector of tables.
    member internal _.Elements(count: int) : int[] =
        if count > PooledAllocator.MaxCapacity / 4 then
            overflow (4L * int64 count)

        if elements.Length < count then
            ArrayPool<int>.Shared.Return elements
            elements <- ArrayPool<int>.Shared.Rent count

        elements

    /// The vector of the first `count` offsets of `Elements`, in that order.
    member internal _.Vector(count: int) : int =
        builder.StartVector(4, count, 4)

        for i = count - 1 downto 0 do
            builder.AddOffset elements[i]

        builder.EndVector().Value

    member internal _.StartTable(fields: int) = builder.StartTable fields

    member internal _.EndTable() : int = builder.EndTable()

    /// An offset field; left out when `target` is 0 (absent). FlatBuffers never writes a 0 uoffset.
    member internal _.Offset(slot: int, target: int) =
        if target <> 0 then
            builder.AddOffset target
            builder.Slot slot

    /// Scalar fields are always written, whatever their value: what the caller writes is what is
    /// on the wire (Google's builder would leave out a value equal to the schema default).
    member internal _.U8(slot: int, value: byte) =
        builder.AddByte value
        builder.Slot slot

    member internal _.U16(slot: int, value: uint16) =
        builder.AddUshort value
        builder.Slot slot

    member internal _.U32(slot: int, value: uint32) =
        builder.AddUint value
        builder.Slot slot

    /// Finishes the body with `root` as its root table and writes the frame header in front of
    /// it; the error is the body length when it exceeds the 24-bit limit.
    member internal _.Finish(frameType: FrameType, root: int) : Result<ReadOnlyMemory<byte>, int> =
        builder.Finish root
        let body = builder.Offset

        if body > Frame.MaxBodyLength then
            Error body
        else
            builder.Prep(1, Frame.HeaderLength - 1)
            builder.Pad Frame.HeaderLength
            let start = memory.Length - builder.Offset

            match Frame.writeHeader frameType body (Span(memory.Array, start, Frame.HeaderLength)) with
            | Ok() -> Ok(ReadOnlyMemory(memory.Array, start, Frame.HeaderLength + body))
            | Error n -> Error n

    /// Gives the memory back to the pool; the builder must not be used afterwards.
    member _.Dispose() =
        memory.Release()

        if not (isNull elements) then
            ArrayPool<int>.Shared.Return elements
            elements <- null

    interface IDisposable with
        member b.Dispose() = b.Dispose()
