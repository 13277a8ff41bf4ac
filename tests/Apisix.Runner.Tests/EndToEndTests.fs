module Apisix.Runner.Tests.EndToEndTests
