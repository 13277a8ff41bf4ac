module Apisix.Runner.Tests.RunnerTests
