module Apisix.Runner.Tests.FilterTests
