"""Adversarial review of the `archiver dedupe` speed-up (after cd483cd): where the report differs from what the
per-key code made."""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path

from archiver.cli import main
from tests.support.library import build_library, key
from tests.support.origin import Server


def test_page_paths_from_a_report_folder_that_is_a_symlink_into_the_store_reach_the_objects(
    tmp_path: Path, origin: Server
) -> None:
    """The report is opened from the folder as the user named it; its page resolves a relative src lexically (a
    browser's URL resolution: ``..`` is not followed through a symlink). Before the change, the page path was
    ``relpath(store/key, realpath(report folder))``: with the report folder a symlink to a shard folder of the store
    (``archive/50``), the objects of that shard were ``56/<sha>.png``, which the page reaches through the link. Now the
    store's folder is related to the report's once and the key appended: ``../50/56/<sha>.png``, which from
    ``link/`` resolves to ``<tmp>/50/56/...``, outside the store: the canonical's image and thumbnail no longer load.
    """
    lib = build_library(tmp_path, origin)
    original = lib.bodies["/a/original.png"]
    canonical_key = key(original, "png")
    shard = lib.root / "archive" / canonical_key.split("/")[0]
    link = lib.root / "link"
    os.symlink(shard, link)
    report = link / "r.html"
    assert main(["dedupe", "--config", str(lib.config), "--report", str(report)]) == 0
    pages = "".join(p.read_text(encoding="utf-8") for p in sorted((link / "r.data").glob("*.js")))
    payload = json.loads(pages[pages.index(",") + 1 : pages.rindex(")")])
    canonical = next(m for g in payload for m in g["members"] if m["canonical"] and m["url_src"].endswith(".png"))
    as_opened = posixpath.normpath(posixpath.join(str(link), canonical["url_src"]))  # how the page resolves it
    assert Path(as_opened).is_file(), (canonical["url_src"], as_opened)
