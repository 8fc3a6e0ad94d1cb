"""Shared fixtures: the loopback origin server and the SeaweedFS S3 server live in tests/support/."""

pytest_plugins = ["tests.support.origin", "tests.support.seaweed"]
