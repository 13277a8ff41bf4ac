namespace Apisix.Runner

open System.Runtime.CompilerServices

// The tests check the per-call request/response objects and the cache directly.
[<assembly: InternalsVisibleTo("Apisix.Runner.Tests")>]
do ()
