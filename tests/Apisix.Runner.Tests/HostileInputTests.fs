module Apisix.Runner.Tests.HostileInputTests
