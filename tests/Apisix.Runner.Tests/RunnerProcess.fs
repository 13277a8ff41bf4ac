module Apisix.Runner.Tests.RunnerProcess
