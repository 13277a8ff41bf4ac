namespace Apisix.Runner

open System
open System.Threading

/// Runs `tick` every `period` on a thread of its own. Deadlines are enforced by the tick, and the
/// calls they end may hold every thread of the pool (a plugin that blocks, once per connection): a
/// Timer, which runs on the pool, would wait for the pool to grow, a thread every half second.
[<Sealed>]
type internal Ticker(period: TimeSpan, tick: unit -> unit) =
    let stop = new ManualResetEventSlim(false)

    let thread =
        Thread((fun () -> while not (stop.Wait period) do tick ()), IsBackground = true, Name = "apisix-runner tick")

    do thread.Start()

    interface IDisposable with
        member _.Dispose() =
            stop.Set()

            if thread.Join(TimeSpan.FromSeconds 5.0) then
                stop.Dispose()
