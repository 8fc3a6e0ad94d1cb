"""Run the archiver on the example site, offline.

It copies examples/site/ to examples/.work/site/ (the committed examples stay as they are), starts a
small HTTP origin on 127.0.0.1 that serves examples/origin/, and points the example articles' hosts
at it with `[fetch] connect_to` (like curl --connect-to), allowing only 127.0.0.1 through the
private-address guard. Then it runs `archiver run` and shows what changed. Run it twice: the second
run fetches nothing, uploads nothing and changes no byte.

    python examples/demo.py            # archive into examples/.work/archive/
    python examples/demo.py --reset    # start again from the committed examples
"""

from __future__ import annotations

import difflib
import shutil
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
HOSTS = ("img.news-cdn.example", "photos.example", "blog.example")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    sys.path.insert(0, str(HERE.parent))  # works from a checkout even before `pip install -e .`
    from archiver.cli import main as archiver_main

    if "--reset" in sys.argv and WORK.exists():
        shutil.rmtree(WORK)
    if not (WORK / "site").exists():
        shutil.copytree(HERE / "site", WORK / "site")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(HERE / "origin")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    connect_to = ", ".join(f'"{h}" = "127.0.0.1:{port}"' for h in HOSTS)
    config = WORK / "archiver.toml"
    config.write_text(
        f"""# written by examples/demo.py: the example hosts are served by a loopback origin on port {port}
[articles]
root = "site"
base_url = "http://blog.example/"

[fetch]
allow_networks = ["127.0.0.1/32"]
connect_to = {{ {connect_to} }}
retries = 1
backoff = 0.2

[storage]
backend = "local"
path = "archive"
public_base_url = "/archive/"

[manifest]
path = ".archiver/manifest.sqlite3"
""",
        encoding="utf-8",
    )
    before = {p: p.read_bytes() for p in sorted((WORK / "site").rglob("*")) if p.is_file()}
    print(f"origin: http://127.0.0.1:{port}/ serving {HERE / 'origin'}")
    print(f"$ archiver run --config {config.relative_to(Path.cwd()) if config.is_relative_to(Path.cwd()) else config}\n")
    code = archiver_main(["run", "--config", str(config)])
    server.shutdown()
    changed = [p for p, data in before.items() if p.read_bytes() != data]
    print(f"\n{len(changed)} of {len(before)} files changed; archived objects are in {WORK / 'archive'}")
    for path in changed:
        old = before[path].decode("utf-8").splitlines(keepends=True)
        new = path.read_text(encoding="utf-8").splitlines(keepends=True)
        rel = path.relative_to(WORK)
        for line in difflib.unified_diff(old, new, f"a/{rel}", f"b/{rel}", n=0):
            sys.stdout.write(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
