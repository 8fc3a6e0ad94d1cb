"""`archiver dedupe` end to end: a real archive made by `archiver run` against the loopback origin."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.dedupe.report import write_report
from tests.support.library import (  # noqa: F401
    OTHER,
    PAGE,
    POST,
    Library,
    build_library,
    count_parses,
    encode,
    key,
    synthetic_groups,
)
from tests.support.origin import Server
from tests.support.postgres import manifest_db
from tests.support.site import snapshot


@pytest.fixture
def library(manifest_env: str | None, tmp_path: Path, origin: Server) -> Library:
    return build_library(tmp_path, origin)


def read_json(lib: Library) -> dict:  # type: ignore[type-arg]
    return json.loads((lib.root / "report" / "dedupe.json").read_text(encoding="utf-8"))


def test_dedupe_groups_picks_the_canonical_and_changes_nothing_without_apply(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(library.root / "site") | snapshot(library.root / "archive")
    assert main(["dedupe", "--config", str(library.config)]) == 0
    out = capsys.readouterr().out
    assert "1 near-duplicate group (3 images), 1 image archived from several URLs" in out
    assert "nothing rewritten" in out
    assert snapshot(library.root / "site") | snapshot(library.root / "archive") == before
    report = read_json(library)
    near, exact = report["groups"]  # sorted by articles touched: near touches 3, exact 2
    sha = {p: hashlib.sha256(b).hexdigest() for p, b in library.bodies.items()}
    assert near["kind"] == "near" and near["canonical"] == sha["/a/original.png"]
    members = {m["sha256"]: m for m in near["members"]}
    assert set(members) == {sha["/a/original.png"], sha["/b/small.jpg"], sha["/c/rot.jpg"]}
    assert members[sha["/c/rot.jpg"]]["transform"] == "rot90"
    assert members[sha["/b/small.jpg"]]["transform"] == "identity"
    canonical = members[sha["/a/original.png"]]
    assert canonical["canonical"] and canonical["width"] == 512 and canonical["format"] == "png"
    assert sorted(canonical["source_urls"]) == ["http://photos.test/a/original.png", "http://photos.test/e/same.png"]
    assert sorted(Path(a).name for a in members[sha["/b/small.jpg"]]["articles"]) == ["page.html", "post.md"]
    assert near["articles"] == 3
    assert exact["kind"] == "exact" and exact["canonical"] == sha["/d/rocket.jpg"] and exact["articles"] == 2
    db = manifest_db(os.environ.get("ARCHIVER_MANIFEST_URL") or library.root / ".archiver" / "manifest.sqlite3")
    assert ("rot90",) in db.execute("SELECT transform FROM near_duplicates").fetchall()


def test_apply_is_byte_faithful_idempotent_and_undone(library: Library, capsys: pytest.CaptureFixture[str]) -> None:
    archived = library.articles()
    archive_before = snapshot(library.root / "archive")
    canonical = library.archive_url("/a/original.png")
    small, rot = library.archive_url("/b/small.jpg"), library.archive_url("/c/rot.jpg")
    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0
    out = capsys.readouterr().out
    assert "apply: 2 articles rewritten to canonical copies (6 references)" in out
    after = library.articles()
    for name, raw in archived.items():  # every byte outside the replaced spans is the same
        assert after[name] == raw.replace(small.encode(), canonical.encode()).replace(rot.encode(), canonical.encode())
    assert after["post.md"].count(canonical.encode()) == 3 and b"![in code](http://photos.test/b/small.jpg)" in after[
        "post.md"]
    assert snapshot(library.root / "archive") == archive_before  # storage untouched

    state = snapshot(library.root / "site")
    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0
    assert "apply: 0 articles" in capsys.readouterr().out
    assert snapshot(library.root / "site") == state  # twice = once: no write at all

    applied = read_json(library)
    assert applied["applied"] is True
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 0
    out = capsys.readouterr().out
    assert "undo: 2 articles restored (6 references)" in out and '"applied": false' in out
    assert library.articles() == archived
    undone = read_json(library)  # the export no longer says the articles point at the canonicals; the rest as it was
    assert undone["applied"] is False and {**undone, "applied": True} == applied
    raw = (library.root / "report" / "dedupe.json").read_bytes()
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 0
    assert "undo: 0 articles" in capsys.readouterr().out
    assert library.articles() == archived and (library.root / "report" / "dedupe.json").read_bytes() == raw

    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0  # apply after undo works again
    assert library.articles() == after
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 0
    assert library.articles() == archived


def test_undo_names_an_applied_article_moved_since_and_restores_it_once_moved_back(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    archived = library.articles()
    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0
    capsys.readouterr()
    post = next(p for p in (library.root / "site").rglob("post.md"))
    moved = post.with_name("renamed.md")
    post.rename(moved)
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 0  # not an error: it may have been deleted
    out = capsys.readouterr().out
    assert "undo: 1 article restored" in out
    assert "1 article that --apply rewrote is no longer at its path (moved or deleted since), not restored" in out
    assert str(post) in out or post.name in out
    assert moved.read_bytes() != archived["post.md"]  # still pointing at the canonical copy: said, not hidden
    assert read_json(library)["applied"] is True and "left as it was" in out  # the export does not say otherwise
    assert main(["dedupe", "--config", str(library.config)]) == 0  # a plain report: its export says false
    capsys.readouterr()
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 0
    out = capsys.readouterr().out
    assert "no longer at its path" in out and "left as it was" not in out  # nothing to say of an export saying false
    assert read_json(library)["applied"] is False
    moved.rename(post)
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 0
    out = capsys.readouterr().out
    assert "undo: 1 article restored" in out and "no longer at its path" not in out
    assert library.articles() == archived and read_json(library)["applied"] is False


def test_undo_restores_only_spans_that_still_hold_what_dedupe_wrote(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    archived = library.articles()
    canonical = library.archive_url("/a/original.png")
    rot = library.archive_url("/c/rot.jpg")
    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0
    page = library.root / "site" / "page.html"
    edited = page.read_bytes().replace(f'<img src="{canonical}" alt'.encode(), b'<img src="/mine.jpg" alt')
    page.write_bytes(edited + b"<p>appended by the author</p>\n")
    capsys.readouterr()
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 1
    out = capsys.readouterr().out
    assert f"page.html: {canonical} (written by dedupe --apply) is no longer there; left as it is" in out
    assert out.count("no longer there") == 1
    assert library.articles()["post.md"] == archived["post.md"]
    expected = archived["page.html"].replace(f'<img src="{rot}" alt'.encode(), b'<img src="/mine.jpg" alt')
    assert page.read_bytes() == expected + b"<p>appended by the author</p>\n"


def test_pins_excludes_and_max_distance_from_config_and_flags(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = build_library(tmp_path, origin)
    text = lib.config.read_text()
    lib.config.write_text(
        text + '\n[dedupe]\ncanonical = ["http://photos.test/b/small.jpg"]\n'
        f'exclude = ["{hashlib.sha256(lib.bodies["/c/rot.jpg"]).hexdigest()}"]\n'
    )
    assert main(["dedupe", "--config", str(lib.config), "--report", str(tmp_path / "r" / "x.html")]) == 0
    report = json.loads((tmp_path / "r" / "x.json").read_text())
    (near,) = [g for g in report["groups"] if g["kind"] == "near"]
    assert near["canonical"] == hashlib.sha256(lib.bodies["/b/small.jpg"]).hexdigest()
    assert len(near["members"]) == 2 and near["members"][0]["pinned"]
    assert main(["dedupe", "--config", str(lib.config), "--max-distance", "0", "--json", str(tmp_path / "j.json")]) == 0
    assert json.loads((tmp_path / "j.json").read_text())["max_distance"] == 0
    assert main(["dedupe", "--config", str(lib.config), "--max-distance", "17"]) == 2  # beyond the index: no traceback
    assert "--max-distance: 17 is not 0-16" in capsys.readouterr().err


def test_a_pin_by_archive_url_is_found_by_its_key_and_an_unknown_entry_is_warned_about(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = build_library(tmp_path, origin)
    assert main(["dedupe", "--config", str(lib.config)]) == 0
    (near,) = [g for g in read_json(lib)["groups"] if g["kind"] == "near"]
    small = hashlib.sha256(lib.bodies["/b/small.jpg"]).hexdigest()
    url = next(m["url"] for m in near["members"] if m["sha256"] == small)  # the archive URL articles now hold
    assert near["canonical"] != small
    lib.config.write_text(lib.config.read_text() + f'\n[dedupe]\ncanonical = ["{url}", "{url}x", "0" ]\n')
    capsys.readouterr()
    assert main(["dedupe", "--config", str(lib.config)]) == 0
    err = capsys.readouterr().err
    (near,) = [g for g in read_json(lib)["groups"] if g["kind"] == "near"]
    assert near["canonical"] == small and near["members"][0]["pinned"]
    assert f"{url}x is not an archived asset or URL; ignored" in err and "0 is not an archived asset" in err


def test_assets_archived_before_variants_get_them_from_their_thumbnail(library: Library) -> None:
    db_path = os.environ.get("ARCHIVER_MANIFEST_URL") or library.root / ".archiver" / "manifest.sqlite3"
    with manifest_db(db_path) as db:
        db.execute("UPDATE assets SET phash_variants=NULL, dhash_variants=NULL")
    assert main(["dedupe", "--config", str(library.config)]) == 0
    (near,) = [g for g in read_json(library)["groups"] if g["kind"] == "near"]
    assert len(near["members"]) == 3
    db = manifest_db(db_path)
    rows = db.execute("SELECT phash, phash_variants, dhash_variants FROM assets").fetchall()
    assert all(pv and len(pv.split(",")) == 8 and len(dv.split(",")) == 8 for _p, pv, dv in rows)


def test_no_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "a.toml"
    cfg.write_text("")
    assert main(["dedupe", "--config", str(cfg)]) == 2
    assert "no manifest yet" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "said"), [
    (["--report", "r.json"], "the report page and the JSON export would be the same path"),
    (["--report", "x.html", "--json", "x.html"], "the report page and the JSON export would be the same path"),
    (["--report", "x.data"], "the report page and the page's data folder would be the same path"),
    (["--report", "x.html", "--json", "x.data"], "the JSON export and the page's data folder would be the same path"),
    (["--report", ""], "--report: . is not a file name"),
    (["--json", "."], "--json: . is not a file name"),
])
def test_report_paths_that_would_overwrite_each_other_are_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flags: list[str],
        said: str) -> None:
    """`--report r.json` made the export (default: the page's path with .json) replace the page; now one line, exit
    2, nothing written, before the manifest is even looked at."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "archiver.toml").write_text('[articles]\nroot = "site"\n')
    assert main(["dedupe", "--config", "archiver.toml", *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archiver.toml"]


@pytest.mark.parametrize(("made", "flags", "said"), [
    ("file", ["--report", "x.html"], "x.data exists and is not a folder"),
    ("folder", ["--report", "x.html"], "x.html is a folder"),
    ("folder", ["--report", "y.html", "--json", "x.html"], "x.html is a folder"),
])
def test_what_stands_where_the_report_must_go_is_said_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, made: str,
        flags: list[str], said: str) -> None:
    """A file where the page's data folder must be, a folder where the page or the export must be: one line, exit 2,
    before the manifest is looked at (was: after all the work, "File exists" or "not a regular file"); left as is."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "archiver.toml").write_text('[articles]\nroot = "site"\n')
    if made == "file":
        (tmp_path / "x.data").write_text("mine\n")
    else:
        (tmp_path / "x.html").mkdir()
    assert main(["dedupe", "--config", "archiver.toml", *flags]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "x.data").read_text() == "mine\n" if made == "file" else (tmp_path / "x.html").is_dir()


def test_report_for_10000_groups_stays_small_and_pages(tmp_path: Path) -> None:
    files = write_report(synthetic_groups(10_000), tmp_path / "dedupe.html", tmp_path / "dedupe.json",
                         {"generated": "now", "max_distance": 10})
    html = files.html.read_bytes()
    assert len(html) < 200_000 and b"data:image" not in html
    pages = sorted(files.data_dir.glob("p*.js"))
    assert len(pages) == files.pages == 200
    sizes = [p.stat().st_size for p in pages]
    assert max(sizes) < 150_000  # one page of 50 groups of 3
    assert sum(sizes) < 10_000 * 3_000  # proportional to the groups, a few KB each, no images inlined
    first = pages[0].read_text(encoding="utf-8")
    assert first.startswith("dedupeReportPage(1,") and first.count('"kind":"near"') == 50
    assert '"articles":4' in first  # sorted: groups touching 4 articles first
    export = json.loads(files.json.read_text(encoding="utf-8"))
    assert len(export["groups"]) == 10_000 and export["groups"][0]["articles"] == 4
    # a smaller report later removes the pages it no longer has
    files = write_report(synthetic_groups(60), tmp_path / "dedupe.html", tmp_path / "dedupe.json", {})
    assert [p.name[:6] for p in sorted(files.data_dir.glob("p*.js"))] == ["p00001", "p00002"]


def test_restore_after_apply_and_undo_gives_back_the_original_articles(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    """`archiver restore` undoes every generation, dedupe ones included: the articles as first written."""
    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0
    assert main(["dedupe", "--config", str(library.config), "--undo"]) == 0
    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0
    assert main(["restore", "--config", str(library.config)]) == 0, capsys.readouterr()
    originals = {"post.md": POST, "page.html": PAGE, "other.md": OTHER}
    assert library.articles() == {k: v.encode("utf-8") for k, v in originals.items()}


def _colour_library(tmp_path: Path, origin: Server) -> tuple[Path, dict[str, str]]:
    """One photo as a full-colour JPEG, a 256-colour GIF and a larger greyscale JPEG, archived by `run`."""
    from PIL import Image

    from tests.support.library import FIXTURES
    from tests.support.site import write_config

    base = Image.open(FIXTURES / "skimage_astronaut.png").convert("RGB").resize((384, 384))
    bodies = {"/p/photo.jpg": encode(base, "JPEG", quality=88), "/p/photo.gif": encode(base.quantize(256), "GIF"),
              "/p/grey.jpg": encode(base.convert("L").resize((512, 512)), "JPEG", quality=92)}
    for path, body in bodies.items():
        origin.add(path, body, "image/gif" if path.endswith("gif") else "image/jpeg")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.md").write_text("".join(f"![x](http://photos.test{p})\n" for p in bodies))
    cfg = write_config(tmp_path, origin)
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    return cfg, {p: hashlib.sha256(b).hexdigest() for p, b in bodies.items()}


def _colour_group(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    report = json.loads((tmp_path / "report" / "dedupe.json").read_text(encoding="utf-8"))
    (group,) = report["groups"]
    return group


def test_the_canonical_is_the_full_colour_photo_and_the_report_shows_greyscale_and_palette(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, sha = _colour_library(tmp_path, origin)
    assert main(["dedupe", "--config", str(cfg)]) == 0
    group = _colour_group(tmp_path)
    assert group["canonical"] == sha["/p/photo.jpg"]  # not the "lossless" GIF, not the larger greyscale copy
    members = {m["sha256"]: m for m in group["members"]}
    assert members[sha["/p/grey.jpg"]]["colour"] == "greyscale"
    assert members[sha["/p/photo.jpg"]]["colour"] == members[sha["/p/photo.gif"]]["colour"] == "colour"
    assert members[sha["/p/photo.gif"]]["palette_colours"] == 256
    assert members[sha["/p/photo.jpg"]]["palette_colours"] is None
    page = (tmp_path / "report" / "dedupe.html").read_text(encoding="utf-8")
    assert '"greyscale"' in page and "colour and greyscale copies of one picture" in page and "-colour palette" in page


def test_the_colour_of_images_archived_before_it_was_recorded_is_measured_once_where_a_group_needs_it(
    tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, sha = _colour_library(tmp_path, origin)
    db_path = tmp_path / ".archiver" / "manifest.sqlite3"
    with sqlite3.connect(db_path) as db:  # as a manifest from before schema 6 has them
        db.execute("UPDATE assets SET colours = NULL, chroma = NULL")
    assert main(["dedupe", "--config", str(cfg), "-v"]) == 0
    assert _colour_group(tmp_path)["canonical"] == sha["/p/photo.jpg"]
    with sqlite3.connect(db_path) as db:
        measured = {s: (c, round(ch)) for s, c, ch in db.execute("SELECT sha256, colours, chroma FROM assets")}
    assert measured[sha["/p/photo.gif"]][0] == 256 and measured[sha["/p/photo.jpg"]][0] == 0
    assert measured[sha["/p/grey.jpg"]][1] == 0 and measured[sha["/p/photo.jpg"]][1] > 10
    assert "measured the colour of 3 images" in capsys.readouterr().err
    assert main(["dedupe", "--config", str(cfg), "-v"]) == 0
    assert "measured the colour" not in capsys.readouterr().err

    # an asset without a stored thumbnail has no chroma to measure: its palette colours are read once, not on every
    # run (the GIF's original was read and its row written by each `archiver dedupe`)
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE assets SET colours = NULL, chroma = NULL")
        db.execute("DELETE FROM renditions WHERE asset IN (?, ?)", (sha["/p/photo.gif"], sha["/p/grey.jpg"]))
    assert main(["dedupe", "--config", str(cfg), "-v"]) == 0
    assert "measured the colour of 3 images" in capsys.readouterr().err
    with sqlite3.connect(db_path) as db:
        after = {s: (c, ch) for s, c, ch in db.execute("SELECT sha256, colours, chroma FROM assets")}
    assert after[sha["/p/photo.gif"]] == (256, None) and after[sha["/p/grey.jpg"]] == (0, None)
    assert main(["dedupe", "--config", str(cfg), "-v"]) == 0
    assert "measured the colour" not in capsys.readouterr().err
    with sqlite3.connect(db_path) as db:
        assert {s: (c, ch) for s, c, ch in db.execute("SELECT sha256, colours, chroma FROM assets")} == after


def test_a_copy_with_a_border_or_bars_added_is_found_and_resign_fixes_images_signed_before(
    manifest_env: str | None, tmp_path: Path, origin: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Signatures are taken inside an added frame: a copy of the astronaut framed in white and one letterboxed in
    black group with the original. An archive made before (the framed copy signed whole: simulated by writing the
    whole-frame signature of its thumbnail into its row) does not group it; `dedupe --resign` signs it again from
    its thumbnail and it groups; a second --resign changes nothing."""
    from PIL import Image, ImageOps

    from archiver.image.process import flatten
    from archiver.image.similarity import signature
    from tests.support.library import FIXTURES
    from tests.support.site import write_config

    astronaut = Image.open(FIXTURES / "skimage_astronaut.png").convert("RGB")
    framed = ImageOps.expand(astronaut, 36, (255, 255, 255))  # 584 x 584: more pixels than the original
    boxed = Image.new("RGB", (640, 360), (0, 0, 0))
    boxed.paste(astronaut.resize((360, 360)), (140, 0))
    bodies = {"/o.png": encode(astronaut, "PNG"), "/framed.jpg": encode(framed, "JPEG", quality=88),
              "/boxed.jpg": encode(boxed, "JPEG", quality=88)}
    for path, body in bodies.items():
        origin.add(path, body, "image/png" if path.endswith("png") else "image/jpeg")
    sha = {p: hashlib.sha256(b).hexdigest() for p, b in bodies.items()}
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.md").write_text("".join(f"![x](http://photos.test{p})\n" for p in bodies))
    cfg = write_config(tmp_path, origin, storage='[storage]\nbackend = "local"\npath = "archive"\n')
    assert main(["run", "--config", str(cfg), "-q"]) == 0
    report = tmp_path / "report" / "d.html"

    def near_groups() -> list[set[str]]:
        assert main(["dedupe", "--config", str(cfg), "--report", str(report)]) == 0
        groups = json.loads(report.with_suffix(".json").read_text())["groups"]
        return [{m["sha256"] for m in g["members"]} for g in groups if g["kind"] == "near"]

    assert near_groups() == [set(sha.values())]
    (group,) = json.loads(report.with_suffix(".json").read_text())["groups"]
    assert group["canonical"] == sha["/o.png"]  # the frame's pixels do not count as picture: not the framed copy
    with manifest_db(manifest_env or tmp_path / ".archiver" / "manifest.sqlite3") as db:
        content = dict(db.execute("SELECT sha256, content FROM assets").fetchall())
    assert content[sha["/o.png"]] == 1.0 and 0.74 < content[sha["/framed.jpg"]] < 0.80  # 512² / 584²

    # the framed copy as an older archiver signed it: the whole frame, border included
    db_path = manifest_env or tmp_path / ".archiver" / "manifest.sqlite3"
    with manifest_db(db_path) as db:
        (thumb,) = db.execute("SELECT key FROM renditions WHERE asset = ? ORDER BY width DESC LIMIT 1",
                              (sha["/framed.jpg"],)).fetchone()
        flat = flatten(Image.open(tmp_path / "archive" / thumb)).convert("RGB")
        whole = signature(flat, box=(0, 0, *flat.size))
        db.execute("UPDATE assets SET phash = ?, dhash = ?, phash_variants = ?, dhash_variants = ?, grey = ?, "
                   "search_mark = NULL, content = NULL WHERE sha256 = ?", (whole.phash[0], whole.dhash[0], ",".join(whole.phash),
                                                           ",".join(whole.dhash), whole.grey, sha["/framed.jpg"]))
        db.execute("DELETE FROM near_duplicates")
        db.execute("UPDATE assets SET search_mark = NULL")
        db.execute("DELETE FROM hash_index")
    assert near_groups() == [{sha["/o.png"], sha["/boxed.jpg"]}]  # what an archive signed before sees
    capsys.readouterr()

    assert main(["dedupe", "--config", str(cfg), "--resign", "--report", str(report)]) == 0
    assert "signed again 1 image of 3" in capsys.readouterr().out
    assert near_groups() == [set(sha.values())]
    (group,) = json.loads(report.with_suffix(".json").read_text())["groups"]
    assert group["canonical"] == sha["/o.png"]
    assert main(["dedupe", "--config", str(cfg), "--resign", "--report", str(report)]) == 0
    assert "signed again 0 images of 3" in capsys.readouterr().out
    assert near_groups() == [set(sha.values())]


def test_an_article_deleted_since_it_was_archived_is_no_error_for_dedupe_or_restore(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's clean-up advice is to delete an article and run gc: afterwards neither `dedupe` (with --apply and
    --undo) nor `restore` reports the article the manifest still knows as a problem, run after run."""
    (library.root / "site" / "other.md").unlink()
    for args in ([], ["--apply"], ["--undo"], []):
        assert main(["dedupe", "--config", str(library.config), *args]) == 0, args
        out = capsys.readouterr()
        assert "no such file" not in out.out + out.err, args
    assert main(["restore", "--config", str(library.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "other.md: deleted since archiver rewrote it; nothing to restore" in out
    assert "0 articles could not be restored; 1 article deleted since" in out


def test_articles_are_parsed_once_per_content_and_again_when_edited(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which articles use which copy comes from each article's references, found once per content: the run that
    wrote an article recorded them, so a report reads and hashes the articles and parses none; an edited article, and
    every article under other finder code, is parsed again, then no more; an article that names none of the report's
    images is not parsed at all; the report is the same either way."""
    from archiver.run import articles as run_articles

    parsed = count_parses(monkeypatch)

    def report() -> dict:  # type: ignore[type-arg]
        parsed.clear()
        assert main(["dedupe", "--config", str(library.config)]) == 0
        out = read_json(library)
        out.pop("generated")
        return out

    first = report()
    assert parsed == []  # the run that rewrote them recorded what it found in the bytes it wrote
    assert report() == first and parsed == []
    sha = {p: hashlib.sha256(b).hexdigest() for p, b in library.bodies.items()}

    def users(rep: dict, asset: str) -> list[str]:  # type: ignore[type-arg]
        return sorted(Path(a).name for g in rep["groups"] for m in g["members"] if m["sha256"] == asset
                      for a in m["articles"])

    assert users(first, sha["/b/small.jpg"]) == ["page.html", "post.md"]
    post = library.root / "site" / "post.md"
    post.write_bytes(post.read_bytes() + b"\nEdited.\n")
    assert report() == first and parsed == ["post.md"]
    post.write_text("no images any more, only [a link](/archive/)\n", encoding="utf-8")
    edited = report()
    assert parsed == [] and users(edited, sha["/b/small.jpg"]) == ["page.html"]
    db = manifest_db(os.environ.get("ARCHIVER_MANIFEST_URL") or library.root / ".archiver" / "manifest.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM article_refs").fetchone()[0] == 2  # the old contents of post.md went
    monkeypatch.setattr(run_articles, "finder_code", lambda: "another finder")
    assert report() == edited and sorted(parsed) == ["other.md", "page.html"]
    assert report() == edited and parsed == []


def test_only_archive_urls_of_an_article_are_recorded_never_another_site_s_url(library: Library) -> None:
    """The manifest keeps no URL of another site from an article (one may carry credentials or a token, and the
    manifest keeps no replaced span that does): of an article's references only those shaped like an archive URL are
    recorded, which is all that can name one of the report's images."""
    small = library.archive_url("/b/small.jpg")
    (library.root / "site" / "mixed.md").write_text(
        f"![a](https://someone:hunter2@photos.test/private.jpg)\n![b](https://cdn.test/x.jpg?token=s3cr3t)\n"
        f"![c]({small})\n<img src=\"{small}?sig=abc\">\n", encoding="utf-8")
    library.record_rewritten("mixed.md")
    db_path = library.manifest()
    assert main(["dedupe", "--config", str(library.config)]) == 0
    rows = [json.loads(r) for (r,) in manifest_db(db_path).execute("SELECT refs FROM article_refs")]
    recorded = " ".join(t for refs in rows for t in refs)
    assert "hunter2" not in recorded and "s3cr3t" not in recorded and "sig=" not in recorded
    assert [small] in rows
    members = {m["sha256"]: m for g in read_json(library)["groups"] for m in g["members"]}
    sha = hashlib.sha256(library.bodies["/b/small.jpg"]).hexdigest()
    assert "mixed.md" in {Path(a).name for a in members[sha]["articles"]}


def test_an_archive_url_with_the_fragment_a_run_kept_counts_as_a_use_as_apply_rewrites_it(
    library: Library, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by the sixth round's new-user trial: `run` keeps a ``#fragment`` after the archive URL it writes and
    `--apply` rewrites such a URL, but the report did not list the article as using the copy. A fragment that holds a
    secret is dropped by the run and not matched by --apply; it is not recorded either."""
    small = library.archive_url("/b/small.jpg")
    (library.root / "site" / "frag.md").write_text(f"![s]({small}#center)\n![t]({small}#access_token=abc)\n",
                                                   encoding="utf-8")
    library.record_rewritten("frag.md")
    db_path = library.manifest()
    assert main(["dedupe", "--config", str(library.config)]) == 0
    sha = hashlib.sha256(library.bodies["/b/small.jpg"]).hexdigest()
    members = {m["sha256"]: m for g in read_json(library)["groups"] for m in g["members"]}
    assert "frag.md" in {Path(a).name for a in members[sha]["articles"]}
    recorded = [json.loads(r) for (r,) in manifest_db(db_path).execute("SELECT refs FROM article_refs")]
    assert [small] in recorded and "access_token" not in json.dumps(recorded)
    capsys.readouterr()
    assert main(["dedupe", "--config", str(library.config), "--apply"]) == 0
    text = (library.root / "site" / "frag.md").read_text(encoding="utf-8")
    canonical = library.archive_url("/a/original.png")
    assert text.startswith(f"![s]({canonical}#center)\n")  # what the report counted is what --apply rewrote


def test_a_rescan_says_what_it_searched_without_verbose(library: Library, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by a new user's trial: without -v, ``dedupe --rescan`` printed what a plain report prints, so it looked
    as if it had done nothing. It says how many images it searched against how many."""
    assert main(["dedupe", "--config", str(library.config)]) == 0
    assert "rescan:" not in capsys.readouterr().out
    assert main(["dedupe", "--config", str(library.config), "--rescan"]) == 0
    out = capsys.readouterr().out
    found = re.search(r"rescan: searched (\d+) images? for near-duplicates against (\d+) in [0-9.]+s \((\d+) pairs?\)",
                      out)
    assert found and int(found[1]) == int(found[2]) > 1, out
