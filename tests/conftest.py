"""Shared fixtures live in tests/support/: the loopback origin, the SeaweedFS S3 server, the example site."""

pytest_plugins = ["tests.support.origin", "tests.support.hostile", "tests.support.proxy", "tests.support.seaweed",
                  "tests.support.site", "tests.support.postgres"]
