/// Time under the test's control, for expiry without waiting.
module Apisix.Runner.Tests.Support.ManualClock

open System
open System.Threading

/// A clock that moves only when told: expiry is tested without waiting. Timestamps are ticks.
type ManualClock() =
    inherit TimeProvider()
    let epoch = DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero)
    let mutable ticks = 0L

    member _.Advance(by: TimeSpan) = Interlocked.Add(&ticks, by.Ticks) |> ignore
    override _.TimestampFrequency = TimeSpan.TicksPerSecond
    override _.GetTimestamp() = Interlocked.Read &ticks
    override _.GetUtcNow() = epoch.AddTicks(Interlocked.Read &ticks)
