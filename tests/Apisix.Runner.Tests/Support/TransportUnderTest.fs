/// The transport the tests run on: RUNNER_TEST_TRANSPORT (epoll or socket; `build.fsx test` runs
/// the suite once with each), else the runner's default. In-process servers and every runner
/// process a test starts use it.
module Apisix.Runner.Tests.Support.TransportUnderTest

open System

/// The transport named for this run; null for the runner's default.
let name =
    match Environment.GetEnvironmentVariable "RUNNER_TEST_TRANSPORT" with
    | null
    | "" -> null
    | t -> t

/// The setting for a runner process; none for the default.
let env = if isNull name then [] else [ "Runner__Transport", name ]

/// The transport a runner uses in this run, as its Listening line names it.
let effective (options: Apisix.Runner.RunnerOptions) = if isNull name then options.Transport else name
