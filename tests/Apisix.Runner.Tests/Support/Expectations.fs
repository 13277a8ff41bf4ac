/// Small helpers every kind of test uses: the value of a result that must be Ok or Error, and
/// notes for the run's output (what a test measured: the figures docs/reliability.md quotes).
module Apisix.Runner.Tests.Support.Expectations

open System

/// The value of an Ok; fails the test on an Error.
let okValue (result: Result<'T, 'E>) =
    match result with
    | Ok v -> v
    | Error e -> failwith $"expected Ok, got Error {e}"

/// The error of an Error; fails the test on an Ok.
let errorValue (result: Result<'T, 'E>) =
    match result with
    | Ok v -> failwith $"expected Error, got Ok {v}"
    | Error e -> e

/// Writes a line to the run's output. Expecto captures no output per test, so a note says
/// which test it comes from where that is not plain from the text.
let note (text: string) = Console.Out.WriteLine text

/// Whether a character should never reach a log line raw: controls, line and paragraph
/// separators, bidirectional overrides.
let unsafeInLog (c: char) =
    Char.IsControl c
    || c = '\u2028'
    || c = '\u2029'
    || (c >= '\u202A' && c <= '\u202E')
    || (c >= '\u2066' && c <= '\u2069')
