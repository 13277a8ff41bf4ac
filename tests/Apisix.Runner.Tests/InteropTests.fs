module Apisix.Runner.Tests.InteropTests
