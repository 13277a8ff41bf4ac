module Apisix.Runner.Tests.ApisixClient
