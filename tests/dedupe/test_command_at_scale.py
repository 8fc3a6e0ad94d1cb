"""What `archiver dedupe` does per asset, made cheaper for a million images (the report's page paths, the JSON
export's layout, the key check, the rows grouping reads, the garbage collector paused): the same results as the
straightforward way, on hostile input too."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.commands.dedupe import _page_src
from archiver.dedupe.pairs import gc_paused
from archiver.dedupe.report import GroupRow, sort_groups, write_report
from archiver.errors import StorageError
from archiver.manifest.sqlite import Manifest
from archiver.model import Asset, ImageFormat, Rendition
from archiver.storage.keys import MAX_KEY_BYTES, check_key
from archiver.storage.local import LocalStore
from tests.support.library import synthetic_groups
from tests.support.postgres import manifest_db

JPEG = ImageFormat("jpeg", "image/jpeg", "jpg")
WEBP = ImageFormat("webp", "image/webp", "webp")


def _expected_export(meta: dict[str, object], groups: list[GroupRow]) -> dict[str, object]:
    """The export as the report wrote it before: every member's fields (``asdict``) but the page's own paths."""
    return json.loads(json.dumps({"report": "archiver dedupe", **meta, "groups": [
        {"id": i + 1, "kind": g.kind, "canonical": g.members[0].sha256, "articles": g.articles,
         "members": [{k: v for k, v in dataclasses.asdict(m).items() if not k.endswith("_src")} for m in g.members]}
        for i, g in enumerate(sort_groups(groups))]}))


@pytest.mark.parametrize("odd", ["", "\x7f", "\x1b[31m", "\u202e", "caf\u00e9", "\udce9", "</script>"])
def test_the_json_export_holds_every_field_and_no_unprintable_character(tmp_path: Path, odd: str) -> None:
    groups = [GroupRow(g.kind, tuple(dataclasses.replace(m, articles=(f"/site/{odd}/{i}.md",), source_urls=(
        f"https://img.example/{odd}.jpg",)) for i, m in enumerate(g.members))) for g in synthetic_groups(120)]
    meta = {"generated": "now", "max_distance": 10, "prefer": ["area", "bytes"], "applied": False}
    write_report(groups, tmp_path / "dedupe.html", tmp_path / "dedupe.json", meta)
    raw = (tmp_path / "dedupe.json").read_text(encoding="utf-8", errors="surrogateescape")
    assert json.loads(raw) == _expected_export(meta, groups)  # the groups in the report's order: the same data
    assert raw.startswith('{\n "report": "archiver dedupe"')  # how a later report recognises it as ours
    assert not any(ch in raw for ch in "\x7f\x1b\u202e\udce9")  # escaped (\\u007f, ...), never raw
    assert "caf\u00e9" in raw or odd != "caf\u00e9"  # printable text stays text
    assert sum(line.startswith('  {"id":') for line in raw.splitlines()) == 120  # a group a line (grep finds it)


def test_an_empty_export_is_valid_json(tmp_path: Path) -> None:
    write_report([], tmp_path / "dedupe.html", tmp_path / "dedupe.json", {"generated": "now"})
    assert json.loads((tmp_path / "dedupe.json").read_text(encoding="utf-8")) == {
        "report": "archiver dedupe", "generated": "now", "groups": []}


def _keyed(src: Callable[[str, str], str], store: object) -> Callable[[str], str]:
    """The page's path of a key as ``_rows`` asks for it: with the key's URL (``url_for`` checks the key)."""
    return lambda key: src(key, store.url_for(key))  # type: ignore[attr-defined]


@pytest.mark.parametrize("where", ["beside", "inside", "same", "linked", "far"])
def test_page_paths_are_the_store_paths_relative_to_the_report(tmp_path: Path, where: str) -> None:
    root = tmp_path / "site" / "archive"
    root.mkdir(parents=True)
    report = {"beside": tmp_path / "site" / "report", "inside": root / "report", "same": root,
              "linked": tmp_path / "link", "far": tmp_path / "a" / "b" / "c"}[where]
    if where == "linked":  # the report's folder reached through a symlink: related by its real path, as before
        (tmp_path / "elsewhere").mkdir()
        report.symlink_to(tmp_path / "elsewhere")
    report.mkdir(parents=True, exist_ok=True)
    store = LocalStore(root, "/archive/")
    src = _keyed(_page_src(store, report), store)
    for key in ("ab/cd/" + "e" * 64 + ".jpg", "p/x~y_z-1.2w.webp", "k.png"):
        rel = os.path.relpath(store.local_path(key), os.path.realpath(report))  # type: ignore[arg-type]
        assert src(key) == quote("/".join(rel.split(os.sep)))
    with pytest.raises(StorageError):
        src("../../etc/passwd")


@settings(max_examples=300, deadline=None)
@given(place=st.lists(st.sampled_from(["ab", "cd", "x", "ab.jpg"]), min_size=0, max_size=4),
       keys=st.lists(st.lists(st.sampled_from(["ab", "cd", "x", "ab.jpg", "y.png"]), min_size=1, max_size=4),
                     min_size=1, max_size=6))
def test_page_paths_equal_relpath_wherever_the_report_is_in_the_store(place: list[str], keys: list[list[str]]) -> None:
    root = Path("/nonexistent-store/archive")  # lexical: nothing is read (the folders need not exist)
    report = root.joinpath(*place)
    store = LocalStore(root, "/archive/")
    src = _keyed(_page_src(store, report), store)
    for segments in keys:
        key = "/".join(segments)
        assert src(key) == os.path.relpath(root / key, report), (place, key)


def test_page_paths_of_a_store_that_is_not_a_folder_are_its_urls(tmp_path: Path) -> None:
    class Remote:
        def local_root(self) -> None:
            return None

        def url_for(self, key: str) -> str:
            return "https://cdn.example/" + key

    remote = Remote()
    assert _keyed(_page_src(remote, tmp_path), remote)("ab/c.jpg") == "https://cdn.example/ab/c.jpg"  # type: ignore[arg-type]


def _per_segment(key: str) -> bool:
    """The key rule as written before one regex checked it."""
    from archiver.storage.keys import _SEGMENT

    return bool(key) and len(key.encode()) <= MAX_KEY_BYTES and all(
        seg not in ("", ".", "..") and _SEGMENT.fullmatch(seg) for seg in key.split("/"))


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from(["a", "Z", "0", ".", "/", "~", "-", "_", "%", " ", "\n", "\x00", "é", "…"]),
               max_size=14) | st.sampled_from(["a" * MAX_KEY_BYTES, "a" * (MAX_KEY_BYTES + 1), "é" * 600, "a/.",
                                               "./a", "a/..", "...", "a//b", "/a", "a/", "..a/b..", "a\n"]))
def test_check_key_refuses_exactly_what_the_per_segment_rule_refuses(key: str) -> None:
    try:
        check_key(key)
        accepted = True
    except StorageError:
        accepted = False
    assert accepted == _per_segment(key)


def test_gc_paused_puts_the_collector_back_as_it_was() -> None:
    assert gc.isenabled()
    with pytest.raises(KeyError), gc_paused():
        assert not gc.isenabled()
        raise KeyError("a failure inside")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off: left off
    finally:
        gc.enable()


def test_the_rows_dedupe_reads_on_each_backend(manifest_target: Path | str) -> None:
    """asset_rows(well_formed=…) gives "" for the variants and grey of a well-formed row (read later) and the stored
    text of any other (NULL, too short, a grey of another length), every row by sha256; unsigned_asset_rows gives
    those others only (a raster image: a pHash), by sha256; original_owners finds assets by their original's key (a
    thumbnail's key is not one); renditions_of gives the asked assets' thumbnails by asset and width."""
    pv, dv, grey = ",".join(["f" * 16] * 8), ",".join(["0" * 16] * 8), "ab" * 64
    odd = {"1": (None, None, None), "3": ("f" * 16, dv, grey), "5": (pv, dv, "ab" * 10), "7": (pv, None, None)}
    with Manifest.open(manifest_target) as m:
        for c in "9876543210":
            m.record_asset(Asset(c * 64, JPEG, 10, 8, 8, "f" * 16, "0" * 16,
                                 renditions=(Rendition(320, 320, 240, WEBP, b"x"), Rendition(160, 160, 120, WEBP, b"y")),
                                 phash_variants=("f" * 16,) * 8, dhash_variants=("0" * 16,) * 8,
                                 grey=None if c == "2" else grey), f"{c}.jpg", [f"{c}-320w.webp", f"{c}-160w.webp"])
    with manifest_db(manifest_target) as db:
        for c, (p, d, g) in odd.items():
            db.execute("UPDATE assets SET phash_variants = ?, dhash_variants = ?, grey = ? WHERE sha256 = ?",
                       (p, d, g, c * 64))
        db.execute("UPDATE assets SET phash = NULL, phash_variants = NULL WHERE sha256 = ?", ("9" * 64,))  # an SVG
    with Manifest.open(manifest_target) as m:
        rows = m.asset_rows(well_formed=len(pv))
        assert [r.sha256 for r in rows] == [c * 64 for c in "0123456789"]
        got = {r.sha256[0]: (r.phash_variants, r.dhash_variants, r.grey) for r in rows}
        assert got == {c: odd.get(c, (None, dv, grey) if c == "9" else ("", "", "")) for c in "0123456789"}
        assert [r.sha256 for r in m.asset_rows()] == [c * 64 for c in "0123456789"]
        assert [r.sha256[0] for r in m.unsigned_asset_rows(len(pv))] == ["1", "3", "5", "7"]
        assert m.original_owners(["3.jpg", "3-320w.webp", "x.jpg", "8.jpg"]) == {"3.jpg": "3" * 64, "8.jpg": "8" * 64}
        assert m.renditions_of(["8" * 64, "x" * 64, "2" * 64]) == [
            ("2" * 64, 160, "2-160w.webp"), ("2" * 64, 320, "2-320w.webp"),
            ("8" * 64, 160, "8-160w.webp"), ("8" * 64, 320, "8-320w.webp")]


def test_the_quick_copy_of_an_asset_is_dataclasses_replace() -> None:
    """plan._copy skips replace's look at the fields: it must copy every field, the ones added later too."""
    from archiver.dedupe.grouping import AssetInfo
    from archiver.dedupe.plan import ArchivedAsset, _copy
    from archiver.image.similarity import Signature

    sig = Signature(("f" * 16,) * 8, ("0" * 16,) * 8, "ab" * 64)
    info = AssetInfo("a" * 64, "png", 10, 8, 9, 1.5, sig, 3, 12.5, 0.9)
    asset = ArchivedAsset(info, "image/png", "png", "k.png", "f" * 16, "0" * 16, ((160, "k-160w.webp"),))
    for field in dataclasses.fields(AssetInfo):  # every field set to something other than its default
        assert getattr(info, field.name) not in (None, field.default), field.name
    assert _copy(info, signature=None) == dataclasses.replace(info, signature=None)
    assert _copy(asset, info=_copy(info, chroma=None)) == dataclasses.replace(
        asset, info=dataclasses.replace(info, chroma=None))
    assert _copy(info).signature is sig and info.signature is sig  # the original is left as it was


def test_an_s3_store_is_not_made_to_answer_that_it_is_no_local_folder(tmp_path: Path) -> None:
    """The report asks the store for its folder once, even when no group is shown: a deferred S3 store answers None
    without making its client (boto3 not loaded, the endpoint not contacted: a dedupe with nothing to show)."""
    from archiver.config import Config, StorageConfig
    from archiver.storage import open_store

    store = open_store(Config(storage=StorageConfig(backend="s3", endpoint_url="http://127.0.0.1:9")))
    assert _page_src(store, tmp_path)("ab/c.jpg", "/archive/ab/c.jpg") == "/archive/ab/c.jpg"
    assert store._real is None  # type: ignore[attr-defined]


def test_the_quick_construction_of_an_asset_is_the_constructor() -> None:
    """plan._made sets a frozen dataclass's fields at once: the same object as calling it, every field."""
    from archiver.dedupe.grouping import AssetInfo
    from archiver.dedupe.plan import _ASSET_FIELDS, _INFO_FIELDS, ArchivedAsset, _made
    from archiver.image.similarity import Signature

    sig = Signature(("f" * 16,) * 8, ("0" * 16,) * 8, "ab" * 64)
    values = ("a" * 64, "png", 10, 8, 9, 1.5, sig, 3, 12.5, 0.9)
    info = _made(AssetInfo, _INFO_FIELDS, values)
    assert info == AssetInfo(*values) and type(info) is AssetInfo and info.area == AssetInfo(*values).area
    asset_values = (info, "image/png", "png", "k.png", "f" * 16, "0" * 16, ((160, "k-160w.webp"),))
    assert _made(ArchivedAsset, _ASSET_FIELDS, asset_values) == ArchivedAsset(*asset_values)
    assert len(_INFO_FIELDS) == len(values) and len(_ASSET_FIELDS) == len(asset_values)  # a field added: add it here


_HEX16 = st.text("0123456789abcdefABCDEF", min_size=16, max_size=16)
_ODD = st.text(st.sampled_from("0123456789abcdefABCDEF ,\n\x00gx\u0660\uff10"), max_size=20)


@settings(max_examples=500, deadline=None)
@given(p=st.lists(st.one_of(_HEX16, _ODD), min_size=0, max_size=9), d=st.lists(_HEX16, min_size=7, max_size=9),
       grey=st.one_of(st.none(), st.just(""), st.text("0123456789abcdefABCDEF", min_size=126, max_size=130), _ODD),
       sep=st.sampled_from([",", ", ", ";"]))
def test_a_signature_read_from_its_columns_is_checked_as_one_made_from_its_parts(
        p: list[str], d: list[str], grey: str | None, sep: str) -> None:
    """Signature.from_columns checks the text of a row at once: the same signatures accepted, the same refused."""
    from archiver.image.similarity import Signature

    pv, dv = sep.join(p), ",".join(d)
    try:
        made = Signature(tuple(pv.split(",")), tuple(dv.split(",")), grey or "") if pv and dv else None
    except ValueError:
        made = None
    read = Signature.from_columns(pv, dv, grey)
    assert read == made
    if read is not None:  # usable as one made by hand: its parsed forms too
        assert read._p == made._p and read._d == made._d  # type: ignore[union-attr]
        assert (read._g is None) == (made._g is None)  # type: ignore[union-attr]


def test_the_quick_member_row_is_the_constructor() -> None:
    from archiver.dedupe.report import MemberRow, member_row

    values = ("a" * 64, "/a.jpg", "a.jpg", "/t.webp", "t.webp", 10, 20, "jpeg", 300, False, True, "mirror", 3, 4,
              1.25, ("https://x/a.jpg",), ("p/a.md",), "colour", 7)
    assert member_row(*values) == MemberRow(*values) and len(values) == len(dataclasses.fields(MemberRow))
    assert list(vars(member_row(*values)).items()) == list(dataclasses.asdict(MemberRow(*values)).items())
    with pytest.raises(ValueError):
        member_row(*values[:-1])  # every field given, or none made


@pytest.mark.parametrize("key", ["../../etc/passwd", "/abs.jpg", "a/./b.jpg", "a//b.jpg", "a b.jpg", "a\x00.jpg"])
def test_every_store_checks_the_key_of_the_url_it_gives(tmp_path: Path, key: str) -> None:
    """The report's page path of a key is appended to what ``url_for`` checked (Store.url_for's contract): a local
    store and a deferred S3 store both refuse an unsafe key there."""
    from archiver.config import Config, StorageConfig
    from archiver.storage import open_store

    s3 = open_store(Config(storage=StorageConfig(backend="s3", endpoint_url="http://127.0.0.1:9")))
    for store in (LocalStore(tmp_path, "/archive/"), s3):
        with pytest.raises(StorageError):
            store.url_for(key)
        with pytest.raises(StorageError):
            _keyed(_page_src(store, tmp_path / "report"), store)(key)
