module Apisix.Runner.Tests.ConfCacheTests
