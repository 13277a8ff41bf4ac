module Apisix.Runner.Tests.ProcessTests
