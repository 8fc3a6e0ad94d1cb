"""Configuration: the example file documents every key, bad files give one clear error naming file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from archiver import config
from archiver.cli import main
from archiver.errors import ConfigError
from tests.support.paths import ROOT_DIR

ROOT = ROOT_DIR


def test_example_config_lists_every_key_with_a_comment() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for section, keys in config.documented_keys().items():
        assert section in data, f"[{section}] missing from config.example.toml"
        for key in keys:
            assert key in data[section], f"[{section}] {key} missing from config.example.toml"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith(("#", "[")):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"


def test_example_config_values_are_the_defaults() -> None:
    cfg = config.load(ROOT / "config.example.toml")
    default = config.Config()
    for name in config.SECTIONS:
        assert getattr(cfg, name) == getattr(default, name), name


def test_issue_key_names_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        """
[articles]
root = "source/_posts"
base_url = "https://blog.example.com/"
front_matter_fields = ["headimg", "image.path", "cover.url"]
[fetch]
concurrency = 16
per_host = 4
timeout = 30
retries = 4
max_bytes = 52428800
user_agent = "x"
allow_networks = ["127.0.0.1/32"]
[images]
thumbnails = [320, 640]
thumbnail_format = "webp"
max_pixels = 50000000
[storage]
backend = "s3"
path = "archive"
bucket = "media-archive"
endpoint_url = ""
region = "us-east-1"
prefix = ""
public_base_url = "/archive/"
[manifest]
path = ".archiver/manifest.sqlite3"
""",
        encoding="utf-8",
    )
    cfg = config.load(path)
    assert cfg.fetch.timeout == 30.0 and cfg.images.thumbnails == (320, 640)
    assert cfg.resolve_path(cfg.manifest.path) == tmp_path.resolve() / ".archiver/manifest.sqlite3"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[fetch]\nconcurency = 3\n", "unknown key [fetch] concurency"),
        ("[fetch]\ntimeout = 'soon'\n", "[fetch] timeout: expected number"),
        ("[fetch]\nretries = true\n", "[fetch] retries: expected integer, got boolean"),
        ("[images]\nthumbnails = 320\n", "[images] thumbnails: expected list of integer"),
        ("[storage]\nbackend = 'ftp'\n", "[storage] backend"),
        ("[fetch]\nallow_networks = ['10.0.0.0/33']\n", "not a CIDR network"),
        ("[store]\npath = 'x'\n", "unknown section [store]"),
        ("[fetch\n", "invalid TOML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_cli_reports_config_error_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[fetch]\nconcurency = 3\n", encoding="utf-8")
    assert main(["run", str(tmp_path), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key [fetch] concurency" in err and "Traceback" not in err


def test_cli_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_max_distance_limit_is_the_hash_index_limit() -> None:
    from archiver.dedupe.index import plan
    from archiver.model import DISTANCE_LIMIT

    assert plan(DISTANCE_LIMIT)  # the largest distance the config accepts is one the index can search
    with pytest.raises(ValueError):
        plan(DISTANCE_LIMIT + 1)
    with pytest.raises(ConfigError, match="0-16"):
        config.from_mapping({"dedupe": {"max_distance": DISTANCE_LIMIT + 1}})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[fetch]\nconnect_to = { 'img.test' = '127.0.0.1:http' }\n",
         "[fetch] connect_to.img.test: '127.0.0.1:http': the port must be a number from 1 to 65535"),
        ("[fetch]\nconnect_to = { 'img.test' = '127.0.0.1:70000' }\n", "the port must be a number from 1 to 65535"),
        ("[fetch]\nconnect_to = { 'img.test' = '127.0.0.1:0' }\n", "the port must be a number from 1 to 65535"),
        ("[fetch]\nconnect_to = { 'img.test' = ':8080' }\n", "connect_to.img.test: ':8080' must be ADDRESS:PORT"),
        ("[fetch]\nconnect_to = { 'img.test' = '::1:8080' }\n", "must be ADDRESS:PORT"),
        ("[fetch]\nconnect_to = { 'img.test' = '[::1:8080' }\n", "must be ADDRESS:PORT"),
        ("[fetch]\nconnect_to = { 'http://img.test' = '127.0.0.1:80' }\n", "must be a host name alone"),
        ("[fetch]\nconnect_to = { 'img.test:8080' = '127.0.0.1:80' }\n", "must be a host name alone"),
        ("[fetch]\nheaders = { 'bücher.test' = { Referer = 'x' } }\n", "'xn--bcher-kva.test'"),
        ("[fetch]\nheaders = { 'cdn.test' = { X-A = \"a\\r\\nX-Injected: 1\" } }\n",
         "[fetch] headers.cdn.test.X-A: must not contain control characters"),
        ("[fetch]\nheaders = { 'cdn.test' = { X-A = \"a\\u0000\" } }\n", "must not contain control characters"),
        ("[fetch]\nheaders = { 'cdn.test' = { 'Bad Name' = 'v' } }\n", "'Bad Name' is not a valid header name"),
        ("[fetch]\nheaders = { 'cdn.test' = { 'X:Y' = 'v' } }\n", "'X:Y' is not a valid header name"),
        ("[fetch]\nheaders = { 'cdn.test' = { '' = 'v' } }\n", "'' is not a valid header name"),
        ("[fetch]\nheaders = { 'cdn.test' = { Content-Length = '5' } }\n", "Content-Length is set by the HTTP client"),
        ("[fetch]\nuser_agent = \"bot\\nX-Injected: 1\"\n", "[fetch] user_agent: must not contain control"),
        ("[fetch]\ntimeout = nan\n", "[fetch] timeout: must be a number of seconds, more than 0 (got nan)"),
        ("[fetch]\nconnect_timeout = inf\n", "[fetch] connect_timeout: must be a number of seconds"),
        ("[fetch]\nbackoff = -1\n", "[fetch] backoff: must be a number of seconds, 0 or more"),
        ("[fetch]\nmax_backoff = nan\n", "[fetch] max_backoff"),
        ("[fetch]\nmax_backoff = 1e308\n", "[fetch] max_backoff: must be at most 86400 seconds"),  # review: a hang
        ("[storage]\nretry_for = -5\n", "[storage] retry_for"),
        ("[storage]\ncache_control = \"public\\r\\nX: 1\"\n", "[storage] cache_control: must not contain control"),
        ("[storage]\npath = ''\n", "[storage] path: must name a folder"),
        ("[manifest]\npath = ' '\n", "[manifest] path: must name a file"),
        ("[dedupe]\nreport = ''\n", "[dedupe] report: must name a file"),
        ("[articles]\nextensions = ['.md', '']\n", "[articles] extensions: '' is not a file name ending"),
        ("[articles]\nbase_url = 'https://'\n", "[articles] base_url: 'https://' must be an http:// or https:// URL"),
        ("[articles]\nbase_url = 'https://blog example/'\n", "[articles] base_url"),
        ("[articles]\nbase_url = 'https://blog.example:port/'\n", "[articles] base_url"),
    ],
)
def test_values_that_cannot_work_are_refused_at_start_up_with_file_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    """Found when the file is read, not by the HTTP client on every URL after the articles were scanned."""
    path = tmp_path / "bad.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


@pytest.mark.parametrize("body", [
    "[fetch]\nconnect_to = { 'img.test' = '[::1]:8080', 'other.test' = 'origin.internal:8080' }\n",
    "[fetch]\nheaders = { 'cdn.test' = { Referer = 'https://blog.example/', 'X-Tab' = \"a\\tb\" }, '::1' = {} }\n",
    "[articles]\nextensions = ['md', '.markdown']\nbase_url = 'https://blog.example:8443/posts/'\n",
    "[fetch]\nbackoff = 0\nmax_backoff = 0\n[storage]\nretry_for = 0\n",
])
def test_values_that_work_are_accepted(tmp_path: Path, body: str) -> None:
    path = tmp_path / "good.toml"
    path.write_text(body, encoding="utf-8")
    config.load(path)


def test_a_bad_connect_to_port_or_header_stops_the_run_before_any_article_is_read_or_image_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.md").write_text("![x](http://img.test/a.jpg)\n", encoding="utf-8")
    for line in ("connect_to = { 'img.test' = '127.0.0.1:99999' }", "headers = { 'img.test' = { X = \"a\\nb\" } }"):
        path = tmp_path / "c.toml"
        path.write_text(f"[fetch]\nallow_networks = ['127.0.0.1/32']\n{line}\n", encoding="utf-8")
        assert main(["run", str(site), "--config", str(path), "-q"]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith(f"archiver: {path}: [fetch] ") and "Traceback" not in captured.err
        assert captured.out == ""  # no summary: nothing was scanned or fetched
        assert not (tmp_path / ".archiver").exists()
