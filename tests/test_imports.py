"""What the CLI loads: `import archiver.cli` and a run with nothing new stay small, whatever the package layout.

Each check runs in a fresh interpreter and compares the modules loaded with the closure of what that path needs
(the same interpreter importing just those dependencies), so a newer library version that loads more modules
of its own does not fail the test, but an import that drags another stage in does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.origin import Server
from tests.support.paths import ROOT_DIR
from tests.support.seaweed import SeaweedS3
from tests.support.site import write_config

ROOT = ROOT_DIR
# The CLI's own needs: argument parsing, config, logging, the manifest (status), the error tree.
CLI_NEEDS = ("argparse", "asyncio", "contextlib", "logging", "signal", "sqlite3", "tomllib", "fcntl", "idna",
             "dataclasses", "typing", "hashlib", "ipaddress", "urllib.parse", "json",
             "html", "html.entities")  # the redaction every printed error goes through
# What a run with nothing to fetch needs on top: walking and decoding articles, finding references, the proxy
# settings' check, the local store, and the process pool.
RUN_NEEDS = CLI_NEEDS + ("yarl", "tenacity", "yaml", "markdown_it", "charset_normalizer", "difflib",
                         "concurrent.futures.process", "concurrent.futures.thread", "multiprocessing.spawn",
                         "multiprocessing.synchronize", "multiprocessing.queues", "multiprocessing.connection",
                         "multiprocessing.resource_tracker", "runpy", "queue", "secrets", "shutil", "tempfile", "html",
                         "html.entities", "socket", "email.utils", "urllib.request", "bisect", "codecs", "stat",
                         "threading", "random", "time", "uuid")
# Nothing to fetch: no HTTP client, no S3 client (the store is made at its first use), no image or dedupe stack.
NEVER_ON_A_NOOP_RUN = ("numba", "scipy", "numpy", "PIL", "imagehash", "boto3", "botocore", "aiohttp", "psycopg",
                       "archiver.dedupe", "archiver.image.similarity", "archiver.image.process",
                       "archiver.fetch.client", "archiver.storage.s3")


def _loaded(code: str, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _closure(needs: tuple[str, ...]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(needs)!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    return set(_loaded(code))


def _extra(loaded: list[str], allowed: set[str]) -> list[str]:
    return sorted(m for m in loaded if m not in allowed and m.split(".")[0] != "archiver" and m != "__mp_main__")


def test_importing_the_cli_loads_no_stage() -> None:
    loaded = _loaded("import json, sys; import archiver.cli; print(json.dumps(sorted(sys.modules)))")
    assert _extra(loaded, _closure(CLI_NEEDS)) == []
    archiver_modules = [m for m in loaded if m.split(".")[0] == "archiver"]
    assert len(archiver_modules) <= 8, archiver_modules  # cli, config, errors, the command registry: no stage


def test_a_run_with_nothing_new_loads_only_what_it_needs(tmp_path: Path, origin: Server) -> None:
    cfg = write_config(tmp_path, origin)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "post.md").write_text("no images here\n", encoding="utf-8")
    code = (
        "import json, sys; from archiver.cli import main; code = main(sys.argv[1:]); "
        "print(json.dumps(sorted(sys.modules))); raise SystemExit(code)"
    )
    loaded = _loaded(code, "run", "--config", str(cfg), "-q")
    assert _extra(loaded, _closure(RUN_NEEDS)) == []
    assert [m for m in loaded if m.split(".")[0] in NEVER_ON_A_NOOP_RUN or m in NEVER_ON_A_NOOP_RUN] == []


def test_a_run_with_nothing_new_on_s3_loads_neither_boto3_nor_the_http_client(
    tmp_path: Path, origin: Server, s3_env: SeaweedS3
) -> None:
    """The usual second run over an S3 archive: every article already points at the archive, so it neither loads
    boto3 and aiohttp nor contacts the store (the store is checked before the first fetch of a run that has one)."""
    from archiver.cli import main
    from tests.support.images import make_jpeg

    bucket = s3_env.make_bucket("noop")
    cfg = write_config(tmp_path, origin, storage=f'[storage]\nbackend = "s3"\nbucket = "{bucket}"\n'
                                                 f'endpoint_url = "{s3_env.endpoint_url}"')
    origin.add("/news/a.jpg", make_jpeg(seed=5), "image/jpeg")
    url = "http://img.news.test/news/a.jpg"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "post.md").write_text(f"---\nheadimg: {url}\n---\n![a]({url})\n", encoding="utf-8")
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    assert "img.news.test" not in (tmp_path / "site" / "post.md").read_text(encoding="utf-8")
    code = (
        "import json, sys; from archiver.cli import main; code = main(sys.argv[1:]); "
        "print(json.dumps(sorted(sys.modules))); raise SystemExit(code)"
    )
    loaded = _loaded(code, "run", "--config", str(cfg), "-q")
    assert [m for m in loaded if m.split(".")[0] in NEVER_ON_A_NOOP_RUN or m in NEVER_ON_A_NOOP_RUN] == []
