namespace Apisix.Runner

open System
open System.Threading
open System.Threading.Tasks
open System.Threading.Tasks.Sources

/// Hands the result of a ValueTask on, converted, through a ValueTask of its own that one reusable
/// source completes: awaiting through a relay allocates nothing. One await at a time; a second
/// while the first is pending (two reads of one call awaited together) goes through a task.
/// The continuation of the awaiting code runs on the thread that completes the inner ValueTask.
[<Sealed>]
type internal Relay<'Source, 'State, 'Result>(convert: 'State -> 'Source -> 'Result) as this =
    let mutable core = ManualResetValueTaskSourceCore<'Result>()
    let mutable inner = ValueTask<'Source>()
    let mutable state = Unchecked.defaultof<'State>
    let mutable busy = 0
    let mutable onInner: Action = null

    do onInner <- Action(fun () -> this.Complete())

    member private _.Complete() =
        let result =
            try
                Ok(convert state (inner.GetAwaiter().GetResult()))
            with e ->
                Error e

        inner <- ValueTask<'Source>()
        state <- Unchecked.defaultof<'State>

        match result with
        | Ok value -> core.SetResult value
        | Error e -> core.SetException e

    /// `convert state` of what `pending` gives.
    member r.Await(pending: ValueTask<'Source>, with': 'State) : ValueTask<'Result> =
        if pending.IsCompleted then
            try
                ValueTask<'Result>(convert with' (pending.GetAwaiter().GetResult()))
            with e ->
                ValueTask<'Result>(Task.FromException<'Result> e)
        elif Interlocked.CompareExchange(&busy, 1, 0) = 0 then
            core.Reset()
            inner <- pending
            state <- with'
            pending.GetAwaiter().UnsafeOnCompleted onInner
            ValueTask<'Result>(r, core.Version)
        else
            ValueTask<'Result>(
                task {
                    let! source = pending
                    return convert with' source
                }
            )

    interface IValueTaskSource<'Result> with
        // The awaiting code takes the result once; only then may the relay serve another await.
        member _.GetResult token =
            try
                core.GetResult token
            finally
                Volatile.Write(&busy, 0)

        member _.GetStatus token = core.GetStatus token
        member _.OnCompleted(continuation, s, token, flags) = core.OnCompleted(continuation, s, token, flags)
