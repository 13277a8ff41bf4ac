module Apisix.Runner.Tests.FrameTests
