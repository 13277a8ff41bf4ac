namespace Apisix.Runner

open System.Runtime.CompilerServices

// The test kit runs calls on the runtime's own path (Call, IExtraInfoSource); the tests check the
// per-call objects, the cache and the sessions directly.
[<assembly: InternalsVisibleTo("Apisix.Runner.Testing")>]
[<assembly: InternalsVisibleTo("Apisix.Runner.Tests")>]
// The transport's own tests and its bench host drive IConnectionIo and ITransport directly.
[<assembly: InternalsVisibleTo("Apisix.Runner.Transport.Tests")>]
[<assembly: InternalsVisibleTo("Apisix.Runner.Transport.Host")>]
do ()
