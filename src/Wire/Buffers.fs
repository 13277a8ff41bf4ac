namespace Apisix.Runner

open System
open System.Buffers

/// Byte arrays for frames: from the shared pool up to 64 KiB, arrays of their own above. The
/// shared pool keeps what it is given back (arrays up to 1 GiB, several per size and core), so
/// large arrays pooled during a burst of large frames would pin that memory for good; an array of
/// its own goes back to the system with the collection after its frame is done.
module internal Buffers =
    /// The largest array taken from the shared pool: a frame up to this size (header included) costs
    /// nothing beyond a connection's standing buffers, and is never counted against the memory budget.
    [<Literal>]
    let MaxPooled = 65536

    /// An array of at least `size` bytes, not cleared: pooled up to MaxPooled, of exactly `size` above.
    let rent (size: int) : byte[] =
        if size <= MaxPooled then
            ArrayPool<byte>.Shared.Rent size
        else
            GC.AllocateUninitializedArray<byte> size

    /// Gives back an array of `rent`: to the pool when it came from there; above MaxPooled it is
    /// only dropped, for the collector.
    let giveBack (array: byte[]) =
        if array.Length <= MaxPooled then
            ArrayPool<byte>.Shared.Return array
