namespace Apisix.Runner

open System.Runtime.CompilerServices

// The tests check the per-call request/response objects and the cache directly.
[<assembly: InternalsVisibleTo("Apisix.Runner.Tests")>]
// The transport's own tests and its bench host drive IConnectionIo and ITransport directly.
[<assembly: InternalsVisibleTo("Apisix.Runner.Transport.Tests")>]
[<assembly: InternalsVisibleTo("Apisix.Runner.Transport.Host")>]
do ()
