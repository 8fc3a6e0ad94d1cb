"""Shared fixtures live in tests/support/: the loopback origin, the SeaweedFS S3 server, the example site."""

pytest_plugins = ["tests.support.origin", "tests.support.hostile", "tests.support.proxy", "tests.support.seaweed",
                  "tests.support.site", "tests.support.postgres"]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _cache_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's cache folder (where a PostgreSQL manifest's near-duplicate index lives) is a temp folder per test,
    inherited by the commands tests start: no test writes into the home of whoever runs them."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
