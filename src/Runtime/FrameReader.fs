namespace Apisix.Runner

open System
open System.Buffers

/// Bytes received on one connection. Frames up to 64 KiB (`Buffers.MaxPooled`, header included)
/// are read into one pooled standing buffer, which grows to that size at most and shrinks back
/// when idle. A larger frame is read into an array of its own, of exactly its size, once the
/// caller has claimed that size from the memory budget (`Wanted`, then `Enlarge`); taking the frame
/// hands that array to the caller (`TakenLarge`), and nothing past the frame is read into it.
/// Whole frames are taken from the front; the caller receives into `Free` and reports the count
/// with `Received`, so that the wait for data happens in the caller's own long-lived loop and costs
/// no allocation.
[<Sealed>]
type internal FrameReader(maxBody: int) =
    let small = 8192
    let mutable buf = Buffers.rent small
    let mutable head = 0
    let mutable tail = 0
    // The frame being received into an array of its own, and how much of it has arrived.
    let mutable large: byte[] = null
    let mutable largeTail = 0
    let mutable takenLarge = 0

    /// Bytes received and not yet taken.
    member _.Buffered = if isNull large then tail - head else largeTail

    /// The size (header included) of the frame begun at the front when it is too large for the
    /// standing buffer and has no array of its own yet: what to claim before `Enlarge`. 0 otherwise.
    member _.Wanted =
        if isNull large && not (isNull buf) && tail - head >= Frame.HeaderLength then
            let length = (int buf[head + 1] <<< 16) ||| (int buf[head + 2] <<< 8) ||| int buf[head + 3]
            let size = Frame.HeaderLength + length
            if size > Buffers.MaxPooled && length <= maxBody then size else 0
        else
            0

    /// Gives the frame begun at the front (see `Wanted`) an array of its own, of exactly its size.
    member r.Enlarge() =
        let size = r.Wanted

        if size = 0 then
            invalidOp "no frame too large for the standing buffer is begun"

        large <- Buffers.rent size
        let pending = tail - head
        Buffer.BlockCopy(buf, head, large, 0, pending)
        largeTail <- pending
        head <- 0
        tail <- 0

    /// Takes one whole frame from the front, if one has arrived. The body of a frame from the
    /// standing buffer stays valid until the next call to `Free`; that of a large frame is in an
    /// array now the caller's (`TakenLarge`).
    member _.TryTake() : FrameRead =
        if isNull large then
            takenLarge <- 0

            match Frame.tryRead maxBody (ReadOnlySequence<byte>(buf, head, tail - head)) with
            | Frame(_, _, rest) as frame ->
                head <- tail - int rest.Length
                frame
            | other -> other
        elif largeTail < large.Length then
            Incomplete
        else
            let frame = Frame.tryRead maxBody (ReadOnlySequence<byte>(large, 0, largeTail))
            takenLarge <- large.Length
            large <- null
            largeTail <- 0
            frame

    /// The size of the array that the frame last taken came in, which the caller now owns and whose
    /// claim it must give back; 0 when the frame came from the standing buffer.
    member _.TakenLarge = takenLarge

    /// Room to receive into: what has arrived moves to the front, the standing buffer grows (to
    /// 64 KiB at most) when a frame larger than it is on its way, and a large frame's array offers
    /// only the rest of that frame.
    member r.Free() : Memory<byte> =
        if not (isNull large) then
            Memory(large, largeTail, large.Length - largeTail)
        else
            if head = tail then
                head <- 0
                tail <- 0

                if buf.Length > 2 * small then
                    Buffers.giveBack buf
                    buf <- Buffers.rent small
            elif tail = buf.Length then
                let pending = tail - head

                if head = 0 && buf.Length >= Buffers.MaxPooled then
                    // Only a frame of `Wanted` can fill the standing buffer: it needs `Enlarge` first.
                    invalidOp $"a frame of {r.Wanted} bytes needs an array of its own (Enlarge)"

                let target =
                    if head > 0 then buf
                    else Buffers.rent (min (2 * buf.Length) Buffers.MaxPooled)

                Buffer.BlockCopy(buf, head, target, 0, pending)

                if not (obj.ReferenceEquals(target, buf)) then
                    Buffers.giveBack buf
                    buf <- target

                head <- 0
                tail <- pending

            Memory(buf, tail, buf.Length - tail)

    /// Records that `count` bytes were received into `Free`.
    member _.Received(count: int) =
        if isNull large then tail <- tail + count else largeTail <- largeTail + count

    member _.Dispose() =
        large <- null

        if not (isNull buf) then
            Buffers.giveBack buf
            buf <- null
