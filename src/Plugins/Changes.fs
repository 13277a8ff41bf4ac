namespace Apisix.Runner

open System
open System.Collections.Generic
open System.Runtime.InteropServices

/// A value a chain may replace: kept as APISIX sent it, or replaced.
[<Struct>]
type Change<'T> =
    | Kept
    | Replaced of 'T

/// A value asked of APISIX at most once per call (ExtraInfo): not asked yet, asked and absent, or there.
[<Struct>]
type Fetched<'T> =
    | NotAsked
    | Absent
    | Present of 'T

/// Changes to a multi-valued set of names (headers, arguments), in the order first made, names
/// compared by EntryName's rule. An entry without a value deletes its name. One per request or
/// response, cleared between calls.
[<Sealed>]
type internal Changes() =
    let items = List<TextEntry>()

    member _.Clear() = items.Clear()
    member _.Count = items.Count
    member _.Entries: ReadOnlySpan<TextEntry> = Span.op_Implicit (CollectionsMarshal.AsSpan items)

    member _.Contains(name: string) =
        let mutable found = false
        let mutable i = 0

        while not found && i < items.Count do
            found <- EntryName.equals items[i].Name name
            i <- i + 1

        found

    /// Removes the changes to `name`; only deletions when `onlyDeletions`.
    member private _.RemoveWhere(name: string, onlyDeletions: bool) =
        let mutable i = items.Count - 1

        while i >= 0 do
            let e = items[i]

            if (not onlyDeletions || not e.HasValue) && EntryName.equals e.Name name then
                items.RemoveAt i

            i <- i - 1

    member c.Remove(name: string) = c.RemoveWhere(name, false)

    /// Replaces every value of `name` with one.
    member c.Set(name: string, value: string) =
        c.Remove name
        items.Add(TextEntry.Set(name, value))

    /// Adds a value to `name` (a deletion of it is undone); original values are kept only when already copied in.
    member c.Add(name: string, value: string) =
        c.RemoveWhere(name, true)
        items.Add(TextEntry.Set(name, value))

    member c.Delete(name: string) =
        c.Remove name
        items.Add(TextEntry.Delete name)

    /// The values now given to `name`, deletions giving none.
    member _.Values(name: string) : string[] =
        let values = List<string>()

        for e in items do
            if e.HasValue && EntryName.equals e.Name name then values.Add e.Value

        values.ToArray()

    /// The first value now given to `name`: null when it is deleted.
    member _.First(name: string) : string =
        let mutable result = null
        let mutable found = false
        let mutable i = 0

        while not found && i < items.Count do
            let e = items[i]

            if EntryName.equals e.Name name then
                result <- e.Value
                found <- true

            i <- i + 1

        result
