namespace Apisix.Runner

open System
open System.Buffers

/// Bytes received on one connection, in one pooled buffer that grows to the largest frame seen
/// (never past the frame limit) and shrinks back when idle. Whole frames are taken from its
/// front; the caller receives into `Free` and reports the count with `Received`, so that the
/// wait for data happens in the caller's own long-lived loop and costs no allocation.
[<Sealed>]
type internal FrameReader(maxBody: int) =
    let small = 8192
    let mutable buf = ArrayPool<byte>.Shared.Rent small
    let mutable head = 0
    let mutable tail = 0

    /// Bytes received and not yet taken.
    member _.Buffered = tail - head

    /// Takes one whole frame from the front, if one has arrived. The body stays valid until the
    /// next call to `Free`.
    member _.TryTake() : FrameRead =
        match Frame.tryRead maxBody (ReadOnlySequence<byte>(buf, head, tail - head)) with
        | Frame(_, _, rest) as frame ->
            head <- tail - int rest.Length
            frame
        | other -> other

    /// Room to receive into: what has arrived moves to the front, and the buffer grows when a
    /// frame larger than it is on its way.
    member _.Free() : Memory<byte> =
        if head = tail then
            head <- 0
            tail <- 0

            if buf.Length > 8 * small then
                ArrayPool<byte>.Shared.Return buf
                buf <- ArrayPool<byte>.Shared.Rent small
        elif tail = buf.Length then
            let pending = tail - head

            let target =
                if head > 0 then buf
                else ArrayPool<byte>.Shared.Rent(min (2 * buf.Length) (maxBody + Frame.HeaderLength))

            Buffer.BlockCopy(buf, head, target, 0, pending)

            if not (obj.ReferenceEquals(target, buf)) then
                ArrayPool<byte>.Shared.Return buf
                buf <- target

            head <- 0
            tail <- pending

        Memory(buf, tail, buf.Length - tail)

    /// Records that `count` bytes were received into `Free`.
    member _.Received(count: int) = tail <- tail + count

    member _.Dispose() =
        if not (isNull buf) then
            ArrayPool<byte>.Shared.Return buf
            buf <- null
