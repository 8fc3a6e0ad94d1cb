"""The on-disk index of hash variants beside the manifest: immutable segment folders switched by one generation file.

Classes: assets with identical signatures (the 8 pHash and 8 dHash variants and the grey thumbnail, told apart by a
128-bit BLAKE2b digest) are one class, indexed once; a class has a global id (0, 1, ... in the order classes were
first seen) and members (manifest asset ids). Ten thousand copies of a blank image are one class of ten thousand
members, searched and compared once.

Layout (``<manifest>.index/variants/``):
  GENERATION          JSON: format, token, generation, segment names, classes, assets, last asset id, checksum
  seg-<token>-<n>/    one segment: the classes it added (ids ``first .. first+n-1``) and the members it added
    phash.npy dhash.npy   (n, 8) uint64 variants of each new class        rep.npy   a member id per class
    digest.npy            (n,) V16 digests, sorted (digest_class.npy: their class ids)
    member_id.npy         int64 asset ids, ascending             member_class.npy   their class ids
    class_sorted.npy class_members.npy   the members' class ids ascending, and their asset ids in that order
    {ph,dh,p0,d0}-c<i>-{offsets,values,order}.npy
                          a segment of >= LAYOUT_MIN classes also keeps the probe tables (``tables.Table``, format 4:
                          per chunk the values sorted by its key, their positions, the run offsets) over its 8 n
                          variants of each hash, and ({p0,d0}-…) over its n identity hashes, memory-mapped when
                          searched (smaller ones are compared flat)

Updating: a run appends one segment with the assets above the last indexed id (``Manifest.variant_rows_after``),
so it reads and writes O(k) for k new assets. Every file of a new segment is written and fsynced, then a new
GENERATION is written beside the old one, fsynced and renamed over it: a run killed at any point leaves the
previous generation whole. Segments are merged (tiered: while the newest is at least a quarter of the one before;
small flat segments once they add up to LAYOUT_MIN), so a search probes O(log n) segments; ``compact`` merges all.
The manifest records the generation, asset count and checksum of each update (``hash_index`` table): an index that
disagrees (another manifest, an older backup, an update the manifest never saw, the last indexed asset gone or
renumbered) is rebuilt from the manifest, with one log line. Only folders named ``seg-<hex>-<n>`` holding only the
files listed above, and ``GENERATION.tmp``, are ever removed: nothing else in the folder is touched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archiver.dedupe import kernel
from archiver.dedupe.index import BRUTE_FORCE_WORK, near
from archiver.dedupe.tables import Table, release
from archiver.image.similarity import TRANSFORMS
from archiver.manifest.rows import SignatureRow
from archiver.manifest.sqlite import Manifest

log = logging.getLogger("archiver")

NAME = "variants"
FORMAT = 4  # 4: tables.Table (16-bit chunks, runs of values); 3: probe tables of the identity hashes too;
            # 2: members by class as (class, asset id) arrays
LAYOUT_MIN = 4_096  # classes from which a segment keeps probe tables (below: compared flat, ~0.1 s per 1 000 classes)
TIER = 4  # merge the newest segment into the one before while it is at least 1/TIER of its size
T = len(TRANSFORMS)
_SEGMENT = re.compile(r"seg-[0-9a-f]{16}-[0-9]{8}")
_BASE_FILES = ("phash", "dhash", "rep", "digest", "digest_class", "member_id", "member_class", "class_sorted",
               "class_members")
_OLD_FILES = ("by_class",)  # written by format 1: its segment folders are still ours to remove
_TABLE = re.compile(r"(?:ph|dh|p0|d0)-(?:ids|starts|c[0-9]-(?:order|values|offsets|words))")
_IDENTITY = {"ph": "p0", "dh": "d0"}  # the probe tables of the identity hashes only
_KINDS = ("ph", "dh", "p0", "d0")
_REVERSE = 4  # a segment of at most 1/(T * _REVERSE) of the searched classes is searched the other way round
_WHOLE = 4  # searching at least 1/_WHOLE of the classes: two queries (_candidates_whole) beat the eight of a few
_WIDTH = VARIANTS_WIDTH = 17 * T - 1  # "h0,h1,...": 16 hex digits each, comma-separated


class StaleIndex(Exception):
    """The index on disk does not match the manifest (or cannot be read): it is rebuilt."""


@dataclass
class Segment:
    name: str
    first: int  # first class id it adds
    phash: np.ndarray  # (n, T) uint64
    dhash: np.ndarray
    rep: np.ndarray  # int64 asset id of one member of each class
    digest: np.ndarray  # V16, sorted
    digest_class: np.ndarray  # class id of each sorted digest
    member_id: np.ndarray  # int64 ascending
    member_class: np.ndarray  # int64
    class_sorted: np.ndarray  # member_class ascending (stable)
    class_members: np.ndarray  # member_id in that order
    tables: dict[str, Table] | None = None  # kind -> its probe table (tables.Table)

    @property
    def classes(self) -> int:
        return int(self.rep.size)

    def variants(self, kind: str) -> np.ndarray:
        return self.phash if kind[0] == "p" else self.dhash


_COMMAS = "," * (T - 1)  # at every 17th character of a variants field: 8 hashes of 16 characters


def _hex(text: str) -> bytes | None:
    """The bytes of ``text`` when it is hex digits only, else None (``bytes.fromhex`` alone skips whitespace)."""
    try:
        out = bytes.fromhex(text)
    except ValueError:
        return None
    return out if len(out) * 2 == len(text) else None


def digests(rows: Iterable[SignatureRow]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(asset ids, (n, T) pHash and dHash variants, V16 digests of the whole signature) of the rows that parse: 8 + 8
    hashes of 16 hex digits and a grey of 0 or 128, what ``similarity.Signature`` accepts (an asset the index holds is
    searched, and its signature made)."""
    good = [r for r in rows if len(r[2]) == _WIDTH and len(r[3]) == _WIDTH and r[2][16::17] == _COMMAS
            and r[3][16::17] == _COMMAS and len(r[4] or "") in (0, 128)]
    texts = [_hex("".join(r[c] or "" for r in good).replace(",", "")) for c in (2, 3, 4)]
    if any(t is None for t in texts):  # (not expected) a row that is not hex digits: left out, as Signature does
        good = [r for r in good if _hex(f"{r[2]}{r[3]}{r[4] or ''}".replace(",", "")) is not None]
        texts = [_hex("".join(r[c] or "" for r in good).replace(",", "")) for c in (2, 3)]
    ids = np.array([r[0] for r in good], dtype=np.int64)
    ph, dh = (np.frombuffer(t, dtype=">u8").astype(np.uint64).reshape(-1, T) for t in texts[:2])  # type: ignore[arg-type]
    dig = np.array([hashlib.blake2b(f"{r[2]}|{r[3]}|{r[4] or '-'}".encode(), digest_size=16).digest() for r in good],
                   dtype="V16")
    return ids, ph, dh, dig


def _mix(v: np.ndarray) -> np.ndarray:
    """A 64-bit mix of each row of ``v`` (uint64): equal rows, equal keys."""
    with np.errstate(over="ignore"):
        h = np.full(v.shape[0], 0x243F6A8885A308D3, dtype=np.uint64)
        for j in range(v.shape[1]):
            h = (h ^ v[:, j]) * np.uint64(0x9E3779B97F4A7C15)
            h ^= h >> np.uint64(29)
        return h


def _checksum(ids: np.ndarray, classes: np.ndarray, start: int = 0) -> int:
    """Order-independent (a sum mod 2**64) mix of (asset id, class id) pairs, added to ``start``."""
    with np.errstate(over="ignore"):
        x = ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ classes.astype(np.uint64) * np.uint64(
            0xC2B2AE3D27D4EB4F)
        x ^= x >> np.uint64(31)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        return int((np.uint64(start) + x.sum(dtype=np.uint64)) & np.uint64(0xFFFFFFFFFFFFFFFF))


class VariantIndex:
    """The classes and members of every asset with hash variants, searchable within a Hamming distance.

    ``open`` validates the index against the manifest (rebuilding it when stale) and appends the assets the
    manifest gained; without a folder (an in-memory manifest, a dry run) the index lives in memory only."""

    def __init__(self, folder: Path | None, token: str, generation: int, segments: list[Segment], assets: int,
                 last_id: int, checksum: int, last_sha: str | None) -> None:
        self.folder, self.token, self.generation = folder, token, generation
        self.segments, self.assets, self.last_id, self.checksum = segments, assets, last_id, checksum
        self.last_sha = last_sha
        self._pending: list[Segment] = []

    # -- opening and updating ---------------------------------------------------------------------
    @classmethod
    def open(cls, manifest: Manifest, *, rebuild: bool = False) -> VariantIndex:
        base = manifest.index_folder
        folder = None if base is None else base / NAME
        index = None
        if folder is not None and not rebuild:
            try:
                index = cls._load(folder, manifest)
            except _Missing:
                folder.mkdir(parents=True, exist_ok=True)
            except StaleIndex as exc:
                folder.mkdir(parents=True, exist_ok=True)
                log.info("near-duplicate index %s: %s; rebuilding it from the manifest", folder, exc)
        if index is None:
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
            index = cls(folder, secrets.token_hex(8), 0, [], 0, 0, 0, None)
        index.update(manifest)
        return index

    @classmethod
    def _load(cls, folder: Path, manifest: Manifest) -> VariantIndex:
        state = manifest.hash_index_state(NAME)
        gen_file = folder / "GENERATION"
        if state is None:
            if gen_file.exists():
                raise StaleIndex("the manifest has no record of it")
            raise _Missing("no index yet")
        try:
            meta = json.loads(gen_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StaleIndex("missing") from None
        except (OSError, ValueError) as exc:
            raise StaleIndex(f"unreadable ({exc})") from exc
        ours = (meta.get("token"), meta.get("generation"), meta.get("assets"), meta.get("checksum"))
        if meta.get("format") != FORMAT:
            raise StaleIndex(f"written in format {meta.get('format')}, this version reads format {FORMAT}")
        if ours != state:
            raise StaleIndex(f"generation {ours[1]} with {ours[2]} assets does not match the manifest's record "
                             f"(generation {state[1]} with {state[2]})")
        last_id, last_sha = int(meta["last_id"]), meta.get("last_sha")
        if last_sha is not None and manifest.asset_shas([last_id]).get(last_id) != last_sha:
            raise StaleIndex(f"its last asset (id {last_id}) is not in the manifest any more")
        try:
            segments = [_read_segment(folder / name, int(first)) for name, first in meta["segments"]]
        except (OSError, ValueError, KeyError, EOFError) as exc:  # EOFError: an empty file (np.load)
            raise StaleIndex(f"a segment cannot be read ({exc or type(exc).__name__})") from exc
        if sum(int(s.member_id.size) for s in segments) != state[2]:
            raise StaleIndex("its segments do not add up to the recorded asset count")
        return cls(folder, meta["token"], int(meta["generation"]), segments, int(meta["assets"]), last_id,
                   int(meta["checksum"], 16), last_sha)

    def update(self, manifest: Manifest) -> int:
        """Index the assets the manifest gained since the last update; returns how many."""
        parts, last = [], None
        for batch in manifest.variant_rows_after(self.last_id, 65_536):  # parsed a batch at a time: the text goes
            parts.append(digests(batch))                                  # (one segment for all: no merge cascade)
            last = batch[-1]
        if last is None:
            return 0
        ids, ph, dh, dig = (np.concatenate(x) for x in zip(*parts, strict=True))
        del parts
        added = self._append(ids, ph, dh, dig, last[0], last[1])
        self._merge(force=False)
        self._commit(manifest)
        return added

    def compact(self, manifest: Manifest) -> None:
        """Merge every segment into one (``archiver dedupe --compact``)."""
        if len(self.segments) > 1:
            self._merge(force=True)
            self._commit(manifest)

    def _append(self, ids: np.ndarray, ph: np.ndarray, dh: np.ndarray, dig: np.ndarray, last_id: int,
                last_sha: str) -> int:
        cls_of = np.full(ids.size, -1, dtype=np.int64)
        for s in self.segments:
            if s.digest.size:
                pos = np.minimum(np.searchsorted(s.digest, dig), s.digest.size - 1)
                hit = s.digest[pos] == dig
                cls_of[hit] = s.digest_class[pos[hit]]
        new = np.flatnonzero(cls_of < 0)
        uniq, first, inverse = np.unique(dig[new], return_index=True, return_inverse=True)
        start = self.classes
        order = np.argsort(first, kind="stable")  # class ids in order of first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        cls_of[new] = start + rank[inverse.ravel()]
        heads = new[first[order]]
        seg = _segment(f"seg-{self.token}-{self.generation + 1:08d}", start, ph[heads], dh[heads], ids[heads],
                       dig[heads], ids, cls_of)
        self.segments.append(seg)
        self.assets += int(ids.size)
        self.checksum = _checksum(ids, cls_of, self.checksum)
        self.last_id, self.last_sha = last_id, last_sha
        self._pending = [seg]
        return int(ids.size)

    def _merge(self, *, force: bool) -> None:
        segs = self.segments
        while len(segs) > 1 and (force or _wants_merge(segs)):
            a, b = segs[-2], segs[-1]
            segs[-2:] = [_concat(a, b, f"seg-{self.token}-{self.generation + 1:08d}")]
            self._pending = [segs[-1]]

    @property
    def classes(self) -> int:
        return self.segments[-1].first + self.segments[-1].classes if self.segments else 0

    def _commit(self, manifest: Manifest) -> None:
        """Write the new segment, then the new generation file (atomically), then tell the manifest."""
        self.generation += 1
        if self.folder is None:
            return
        for seg in self._pending:
            if seg.classes >= LAYOUT_MIN and seg.tables is None:
                seg.tables = _tables(seg)
            _write_segment(self.folder / seg.name, seg)
        self._pending = []
        meta = {"format": FORMAT, "token": self.token, "generation": self.generation,
                "segments": [[s.name, s.first] for s in self.segments], "classes": self.classes,
                "assets": self.assets, "last_id": self.last_id, "last_sha": self.last_sha,
                "checksum": f"{self.checksum:016x}"}
        tmp = self.folder / "GENERATION.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / "GENERATION")
        _fsync_dir(self.folder)
        manifest.record_hash_index_state(NAME, self.token, self.generation, self.assets, meta["checksum"])
        self._remove_unused()

    def _remove_unused(self) -> None:
        """Segment folders of ours no generation names any more (merged, or left by a killed run)."""
        keep = {s.name for s in self.segments}
        for entry in self.folder.iterdir() if self.folder else ():
            if entry.name in keep or not _SEGMENT.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
                continue
            files = list(entry.iterdir())
            if all(_is_ours(f) for f in files):
                for f in files:
                    f.unlink()
                with contextlib.suppress(OSError):
                    entry.rmdir()

    # -- lookups ------------------------------------------------------------------------------------
    def classes_of(self, ids: np.ndarray) -> np.ndarray:
        """The class of each asset id (-1: not indexed, its variants do not parse)."""
        out = np.full(ids.size, -1, dtype=np.int64)
        for s in self.segments:
            pos = np.minimum(np.searchsorted(s.member_id, ids), max(0, s.member_id.size - 1))
            if s.member_id.size:
                hit = s.member_id[pos] == ids
                out[hit] = s.member_class[pos[hit]]
            release(s.member_id, s.member_class)  # see _touched
        return out

    def members(self, classes: np.ndarray) -> dict[int, np.ndarray]:
        """Asset ids of each class's members."""
        parts: dict[int, list[np.ndarray]] = {int(c): [] for c in classes}
        for s in self.segments:  # O(classes asked x log members): no pass over a whole segment
            lo = np.searchsorted(s.class_sorted, classes)
            hi = np.searchsorted(s.class_sorted, classes, side="right")
            for c, a, b in zip(classes.tolist(), lo.tolist(), hi.tolist(), strict=True):
                if b > a:
                    parts[c].append(np.array(s.class_members[a:b]))
            release(s.class_sorted, s.class_members)  # see _touched
        return {c: np.concatenate(p) if p else np.zeros(0, np.int64) for c, p in parts.items()}

    def first_members(self, classes: np.ndarray) -> np.ndarray:
        """The smallest asset id of each class's members (-1: none): ``members`` without a list per class (a
        segment lists a class's members by id, ``class_members``)."""
        out = np.full(classes.size, np.iinfo(np.int64).max, dtype=np.int64)
        for s in self.segments:
            lo = np.searchsorted(s.class_sorted, classes)
            has = lo < np.searchsorted(s.class_sorted, classes, side="right")
            out[has] = np.minimum(out[has], np.asarray(s.class_members)[lo[has]])
            release(s.class_sorted, s.class_members)  # see _touched
        out[out == np.iinfo(np.int64).max] = -1
        return out

    def reps(self, classes: np.ndarray) -> np.ndarray:
        """An asset id of each class (its first member)."""
        out = np.empty(classes.size, dtype=np.int64)
        for s in self.segments:
            inside = (classes >= s.first) & (classes < s.first + s.classes)
            out[inside] = s.rep[classes[inside] - s.first]
            release(s.rep)  # see _touched
        return out

    def variants(self, kind: str, classes: np.ndarray) -> np.ndarray:
        out = np.empty((classes.size, T), dtype=np.uint64)
        for s in self.segments:
            inside = (classes >= s.first) & (classes < s.first + s.classes)
            out[inside] = s.variants(kind)[classes[inside] - s.first]
            release(s.variants(kind))  # see _touched
        return out

    # _touched: a lookup of a few classes in a memory-mapped segment reads a few pages at random, and the kernel maps
    # 64 KB around each one it reads (fault-around): at 10 M images, looking up 1 000 added images' classes, members
    # and variants left ~150 MB of the index mapped. The pages are handed back after each lookup (they stay in the
    # page cache): a run's resident size is what it works on, not what it once glanced at.

    def shared_hash_classes(self, block: int = 1 << 18) -> np.ndarray:
        """The classes whose assets share their hashes (8 pHash and 8 dHash variants) with another asset: classes
        of two members or more, and classes whose variants equal another class's (the same hashes, another grey
        thumbnail). Reads each segment's arrays a block at a time: O(classes) time, ~16 bytes per class of memory."""
        counts = np.zeros(self.classes, dtype=np.int64)
        keys = np.empty(self.classes, dtype=np.uint64)
        for s in self.segments:
            for lo in range(0, s.member_class.size, block):
                counts += np.bincount(np.asarray(s.member_class[lo:lo + block]), minlength=self.classes)
            for lo in range(0, s.classes, block):
                v = np.concatenate([np.asarray(s.phash[lo:lo + block]), np.asarray(s.dhash[lo:lo + block])], axis=1)
                keys[s.first + lo:s.first + lo + v.shape[0]] = _mix(v)
        order = np.argsort(keys, kind="stable")
        k = keys[order]
        run = np.flatnonzero(k[1:] == k[:-1])
        maybe = np.unique(np.concatenate([order[run], order[run + 1]]))  # equal keys: equal variants, or a collision
        same = np.zeros(0, dtype=np.int64)
        if maybe.size:
            v = np.concatenate([self.variants("ph", maybe), self.variants("dh", maybe)], axis=1)
            _, inverse, n = np.unique(v, axis=0, return_inverse=True, return_counts=True)
            same = maybe[n[inverse.ravel()] > 1]
        return np.union1d(np.flatnonzero(counts > 1), same)

    # -- search -------------------------------------------------------------------------------------
    def candidates(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Class pairs (x < y), each involving a class of ``q``, where some variant of one (pHash or dHash) is
        within ``k`` of the other's identity hash: what ``similarity.compare`` can accept at ``k``."""
        found: list[tuple[np.ndarray, np.ndarray]] = []
        if q.size * _WHOLE >= self.classes:  # most of the archive (a first search, a rescan): one index in memory
            return self._candidates_whole(q, k)
        for kind in ("ph", "dh"):
            v = self.variants(kind, q)
            identity, others = np.ascontiguousarray(v[:, 0]), np.ascontiguousarray(v[:, 1:]).ravel()
            for s in self.segments:
                # a searched class's identity hash near any variant of an indexed class (the table of every
                # variant), or another variant of a searched class near an indexed class's identity hash (the
                # table of identity hashes only: 1/T of the values, so these T - 1 queries cost far less)
                qi, e = _search(s, kind, identity, k)
                found.append((q[qi], s.first + e // T))
                if T > 1:
                    qi, e = _search(s, kind, others, k, identity=True)
                    found.append((q[qi // (T - 1)], s.first + e // T))
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        a, b = (np.concatenate(z) for z in zip(*found, strict=True))
        keep = a != b
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        packed = np.unique(lo * (self.classes + 1) + hi)
        return packed // (self.classes + 1), packed % (self.classes + 1)


    def _candidates_whole(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``candidates`` when most classes are searched: only the two queries needed (a searched identity hash
        against every variant, through each segment's probe tables: ``kernel.sweep`` reads them tile by tile for that
        many queries; the other variants of a searched class against the identity hashes of the classes not
        searched, in memory), not every variant against all. (Until the seventh round of 2026-12-05 the first query
        went to an in-memory join over 22-bit buckets of every variant: 32 s of wall time a hash kind at 1 M, where
        the tables take ~11 s.)"""
        everything = np.arange(self.classes)
        rest = np.setdiff1d(everything, q, assume_unique=True)
        found = []
        searched = np.zeros(self.classes, dtype=bool)
        searched[q] = True
        for kind in ("ph", "dh"):
            v = self.variants(kind, everything)
            identity = np.ascontiguousarray(v[q, 0])
            for s in self.segments:  # the probe tables every segment has on disk (a flat one's made in memory)
                if s.classes * T * _REVERSE <= q.size:
                    # a small segment: its variants against every segment's identity hashes, the pairs of a searched
                    # class kept (the same relation); a million identity hashes probing its small tables one by one
                    # took 2-4 s a hash kind whatever its size (the tables' direct path)
                    sv = np.ascontiguousarray(s.variants(kind)).ravel()
                    for u in self.segments:
                        qi, e = _search(u, kind, sv, k, identity=True)
                        a, b = u.first + e // T, s.first + qi // T
                        keep = searched[a]
                        found.append((a[keep], b[keep]))
                    continue
                qi, e = _search(s, kind, identity, k)
                found.append((q[qi], s.first + e // T))
            if rest.size and T > 1:
                qi, e, _ = near(v[rest, 0], v[q, 1:].ravel(), k, ordered=False)
                found.append((q[qi // (T - 1)], rest[e]))
            del v
        a, b = (np.concatenate(z) for z in zip(*found, strict=True))
        keep = a != b
        lo, hi = np.minimum(a[keep], b[keep]), np.maximum(a[keep], b[keep])
        packed = np.unique(lo * (self.classes + 1) + hi)
        return packed // (self.classes + 1), packed % (self.classes + 1)


def _search(s: Segment, kind: str, queries: np.ndarray, k: int, *, identity: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """(query index, flat position class * T + t) of the segment's variants within ``k`` of each query; with
    ``identity``, of its identity hashes only (t = 0)."""
    if s.tables is None and (kernel.AVAILABLE or queries.size * s.classes * (1 if identity else T) > BRUTE_FORCE_WORK):
        # a flat segment: its tables in memory (a few ms for 4 096 classes), so that a run loads one compiled
        # function (``kernel.lookup``: ~0.3 s each, even from numba's cache), or when asked many queries (a rescan)
        s.tables = _tables(s)
    key = _IDENTITY[kind] if identity else kind
    if s.tables is None or key not in s.tables:
        v = s.variants(kind)
        targets = np.ascontiguousarray(v[:, 0] if identity else v).ravel()
        if kernel.AVAILABLE:
            qi, e = kernel.all_near(np.ascontiguousarray(queries), targets, k)
        else:
            qi, e, _ = near(targets, queries, k)
        return qi, e * T if identity else e
    qi, e = s.tables[key].search(queries, k)
    return qi, e * T if identity else e


def _wants_merge(segs: list[Segment]) -> bool:
    a, b = segs[-2], segs[-1]
    if b.classes < LAYOUT_MIN:  # flat segments (no probe tables) are merged into one as they come
        return a.classes < LAYOUT_MIN
    return b.classes * TIER >= a.classes


def _segment(name: str, first: int, ph: np.ndarray, dh: np.ndarray, rep: np.ndarray, dig: np.ndarray,
             member_id: np.ndarray, member_class: np.ndarray) -> Segment:
    order = np.argsort(dig, kind="stable")
    by_class = np.argsort(member_class, kind="stable")
    return Segment(name, first, np.ascontiguousarray(ph), np.ascontiguousarray(dh), rep.astype(np.int64),
                   dig[order], (first + order).astype(np.int64), member_id.astype(np.int64),
                   member_class.astype(np.int64), member_class[by_class].astype(np.int64),
                   member_id[by_class].astype(np.int64))


def _concat(a: Segment, b: Segment, name: str) -> Segment:
    dig = np.empty(a.classes + b.classes, dtype="V16")
    dig[a.digest_class - a.first] = a.digest
    dig[a.classes + b.digest_class - b.first] = b.digest
    return _segment(name, a.first, np.concatenate([a.phash, b.phash]), np.concatenate([a.dhash, b.dhash]),
                    np.concatenate([a.rep, b.rep]), dig, np.concatenate([a.member_id, b.member_id]),
                    np.concatenate([a.member_class, b.member_class]))


def _tables(seg: Segment) -> dict[str, Table]:
    return {kind: Table.build(np.ascontiguousarray(seg.variants(kind)[:, 0]) if kind in _IDENTITY.values()
                              else seg.variants(kind).ravel()) for kind in _KINDS}


def _is_ours(f: Path) -> bool:
    return f.suffix == ".npy" and (f.stem in _BASE_FILES or f.stem in _OLD_FILES or bool(_TABLE.fullmatch(f.stem)))


def _save(folder: Path, name: str, arr: np.ndarray) -> None:
    with open(folder / f"{name}.npy", "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def _write_segment(folder: Path, seg: Segment) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in _BASE_FILES:
        _save(folder, name, getattr(seg, name))
    for kind, table in (seg.tables or {}).items():
        for i, c in enumerate(table.chunks):
            for part in ("offsets", "values", "order"):
                _save(folder, f"{kind}-c{i}-{part}", getattr(c, part))
    _fsync_dir(folder)
    _fsync_dir(folder.parent)


def _read_segment(folder: Path, first: int) -> Segment:
    def load(name: str) -> np.ndarray:
        return np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)

    seg = Segment(folder.name, first, *(load(n) for n in _BASE_FILES))
    n = seg.classes
    if seg.phash.shape != (n, T) or seg.dhash.shape != (n, T) or seg.digest.size != n or \
            seg.member_id.size != seg.member_class.size or seg.class_sorted.size != seg.member_id.size or \
            seg.class_members.size != seg.member_id.size:
        raise ValueError(f"{folder.name}: arrays of inconsistent sizes")
    if (folder / "ph-c0-offsets.npy").exists():
        tables = {}
        for kind in _KINDS:
            parts, i = [], 0
            while (folder / f"{kind}-c{i}-offsets.npy").exists():
                parts.append(tuple(load(f"{kind}-c{i}-{p}") for p in ("offsets", "values", "order")))
                i += 1
            tables[kind] = Table.assemble(n if kind in _IDENTITY.values() else n * T, parts)
        seg.tables = tables
    return seg


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Missing(StaleIndex):
    """No index and no record: the first one is made (not worth a log line)."""
