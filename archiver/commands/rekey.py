"""`archiver rekey`: move the stored objects to the keys ``[storage] key_template`` gives them now (content-addressed
keys when it is empty), re-point the articles, then delete the old objects.

Steps, each recorded in the manifest (``rekey_moves``) before the next begins, so a rekey killed at any point is
finished by the next one and an article never points at a deleted object:

1. plan: every object whose key differs from the template's, with its new key (a short hash taken by other bytes is
   widened, as in `run`); a plan a killed rekey left is finished first, whatever the template says now;
2. copy each object to its new key (S3: CopyObject on the server; read and written again only when the copy cannot
   be proven) and prove the copy (size, type, checksum);
3. re-point the articles: every span holding an old archive URL gets the new one (the atomic, journalled article
   writer, recorded as a rewrite generation "rekey": `restore` and `dedupe --undo` still work); an article that
   cannot be written keeps its objects' old keys alive;
4. record the new keys (and the old ones as moved, for `restore` and `dedupe --undo`);
5. delete the old objects (only keys this archiver recorded).

A second rekey finds every object under its key and does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
from collections import defaultdict
from pathlib import Path

from archiver.articles.files import iter_article_paths, load_article
from archiver.articles.journal import record_key, settle_pending
from archiver.config import Config
from archiver.dedupe.canonical import apply_canonical
from archiver.errors import ArchiverError, ManifestError
from archiver.faults import crash_point
from archiver.find.refs import article_refs
from archiver.manifest.keys import Move
from archiver.manifest.rows import StoredObject
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import exists, manifest_target, shown
from archiver.storage import Store, open_store, prove
from archiver.storage.keys import public_bases, public_url, templated_key
from archiver.storage.template import WIDTHS, KeyParts, KeyTemplate, rendition_of
from archiver.terminal import say

REASON = "rekey"
SHOWN = 20  # moves listed by --dry-run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="list the objects that would move and the articles that would change; change nothing")


def plan(cfg: Config, manifest: Manifest, store: Store) -> list[Move]:
    """The moves that put every object under the key the configuration gives it now."""
    text = cfg.storage.key_template
    widths = KeyTemplate.parse(text).widths() if text else (WIDTHS[-1],)
    chosen: dict[str, str] = {}  # new key -> asset, in this plan
    moves: list[Move] = []
    for a in manifest.keyed_assets():
        parts = KeyParts(a.sha256, a.ext, a.source or "", a.first_seen)
        for width in widths:
            new = templated_key(cfg, parts, width)
            thumbs = [(w, f, rendition_of(new, a.ext, w, ext), old) for w, f, ext, old in a.renditions]
            keys = [new, *(t[2] for t in thumbs)]
            if any(chosen.get(k, a.sha256) != a.sha256 or manifest.key_owner(k) not in (None, a.sha256)
                   for k in keys):
                continue
            if new == a.key or width == widths[-1]:
                break
            if prove(store, new, None, a.sha256).state != "different":
                break
        else:  # every form is another image's key: it stays where it is
            say(f"{a.key}: stays (every key the template gives it belongs to other bytes)")
            continue
        chosen.update(dict.fromkeys(keys, a.sha256))
        if new != a.key:
            moves.append(Move(a.key, new, a.sha256, None, None, "planned"))
        moves += [Move(old, key, a.sha256, w, f, "planned") for w, f, key, old in thumbs if key != old]
    return moves


def _copy(store: Store, m: Move, obj: StoredObject | None) -> str | None:
    """Copy one object to its new key and prove it; None when done, else why not."""
    size, digest, mime = (obj.size, obj.content_sha256, obj.mime) if obj else (None, None, None)
    if prove(store, m.new_key, size, digest, mime).ok:
        return None  # copied by a rekey that was killed afterwards
    source = prove(store, m.old_key, size, digest, mime)
    if source.state in ("missing", "different"):
        return f"{m.old_key}: {source.reason} (run `archiver verify --repair` first)"
    store.copy(m.old_key, m.new_key)
    proof = prove(store, m.new_key, size, digest, mime)
    if proof.ok:
        return None
    data = store.get(m.old_key)  # a copy the store keeps no checksum for: written again, with one
    if digest and hashlib.sha256(data).hexdigest() != digest:
        return f"{m.old_key}: its bytes are not the ones recorded"
    store.put(m.new_key, data, mime or "application/octet-stream", {}, hashlib.sha256(data).hexdigest())
    proof = prove(store, m.new_key, size, digest, mime)
    return None if proof.state in ("ok", "unproven") else f"{m.new_key}: the copy is not what was copied ({proof.reason})"


def _article_paths(cfg: Config, manifest: Manifest) -> list[str]:
    """Every article under ``[articles] root`` and every article the manifest records, once, by recorded path."""
    root = cfg.resolve_path(cfg.articles.root)
    folders = [root] if root.exists() else []
    folders += [Path(p) for p, _, _ in manifest.rewritten_articles() if Path(p).is_file()]
    seen: dict[str, None] = {}
    for path in iter_article_paths(folders, cfg.articles.extensions, on_skip=lambda _p, _why: None,
                                   follow_outside=cfg.articles.follow_symlinks_outside):
        seen.setdefault(record_key(path))
    return list(seen)


def command(args: argparse.Namespace, cfg: Config) -> int:
    manifest_path = manifest_target(cfg)
    if not exists(manifest_path):
        raise ManifestError(f"{shown(manifest_path)}: no manifest yet (run `archiver run` first)")
    dry = bool(args.dry_run)
    store = open_store(cfg)
    manifest = Manifest.snapshot(manifest_path) if dry else Manifest.open(manifest_path, reconnect_for=cfg.manifest.reconnect_for)
    try:
        store.check(write=not dry)
        settle_pending(manifest)  # article writes a killed command left between their rename and their record
        moves = manifest.moves()
        if moves:
            say(f"finishing the rekey an interrupted run began: {len(moves)} objects")
        else:
            moves = plan(cfg, manifest, store)
            if not dry and moves:
                manifest.plan_moves(moves)
        if not moves:
            say("every object is already under the key the configuration gives it: nothing to move")
            return 0
        if dry:
            return _dry_run(cfg, manifest, moves)
        return _rekey(cfg, manifest, store, moves)
    finally:
        manifest.close()
        store.close()


def _dry_run(cfg: Config, manifest: Manifest, moves: list[Move]) -> int:
    for m in moves[:SHOWN]:
        say(f"{m.old_key} -> {m.new_key}")
    if len(moves) > SHOWN:
        say(f"… and {len(moves) - SHOWN} more")
    mapping = _mapping(cfg, moves)
    fields, max_refs = cfg.articles.front_matter_fields, cfg.articles.max_refs
    changed = 0
    for path in _article_paths(cfg, manifest):
        try:
            article = load_article(Path(path))
            refs = article_refs(article, fields, max_refs)
        except ArchiverError:
            continue
        changed += any(article.text[r.start : r.end] in mapping for r in refs)
    say(f"would move {len(moves)} objects and re-point {changed} articles (dry run: nothing changed)")
    return 0


def _mapping(cfg: Config, moves: list[Move]) -> dict[str, str]:
    """Each old archive URL, in every form an article may hold it, to the new one in the same form."""
    return {public_url(b, m.old_key): public_url(b, m.new_key) for m in moves for b in public_bases(cfg)}


def _rekey(cfg: Config, manifest: Manifest, store: Store, moves: list[Move]) -> int:
    objects = {o.key: o for o in manifest.objects()}
    by_asset: dict[str, list[Move]] = defaultdict(list)
    for m in moves:
        by_asset[m.asset].append(m)
    problems: list[str] = []
    ready: list[Move] = []
    for asset_moves in by_asset.values():  # 2. copy: an asset moves whole or not at all
        todo = [m for m in asset_moves if m.state == "planned"]
        why = [w for m in todo if (w := _copy(store, m, objects.get(m.old_key))) is not None]
        if why:
            problems += why
            continue
        if todo:
            manifest.move_state([m.old_key for m in todo], "copied")
            crash_point("rekey-copied")
        ready += asset_moves
    # 3. re-point the articles
    pending = [m for m in ready if m.state in ("planned", "copied")]
    if pending:
        recorded = {p for p, _, _ in manifest.rewritten_articles()}
        paths = _article_paths(cfg, manifest)
        result = apply_canonical(manifest, paths, _mapping(cfg, pending),
                                 cfg.articles.front_matter_fields, cfg.articles.max_refs, reason=REASON)
        # articles with archive URLs pasted by hand: re-pointed, but still not restore's to undo
        for path in {p for p, _, _ in manifest.rewritten_articles()} - recorded:
            manifest.forget_article(path)
        if result.problems:  # an article not re-pointed may still use any old key: none is deleted this time
            problems += [f"{p} (not re-pointed; its objects keep their old keys until a rekey succeeds)"
                         for p in result.problems]
            say(*problems)
            return 1
        say(f"re-pointed {result.spans} URLs in {result.articles} articles")
        manifest.move_state([m.old_key for m in pending], "repointed")
    # before anything is deleted: no article may still hold an old key, in any form (a hard-linked or symlinked
    # article the rewrite skipped, `#center`/`?w=` suffixes, another public base, a hand-written link)
    held = _still_used(cfg, manifest, ready)
    if held:
        say(f"{len(held)} old keys are still used by articles that could not be re-pointed; nothing is deleted "
            "(fix these articles, or point them at the new keys by hand, then run rekey again):",
            *(f"  {path}: {key}" for key, path in sorted(held.items())[:20]))
        return 1
    # 4. record the new keys, 5. delete the old objects
    manifest.record_moved([m for m in ready if m.state != "recorded"])
    crash_point("rekey-recorded")
    for batch in _batches(ready, 500):
        store.delete([m.old_key for m in batch])
        crash_point("rekey-deleted")
        manifest.finish_moves([m.old_key for m in batch])
    say(f"moved {len(ready)} objects to their new keys" + (f"; {len(problems)} not moved:" if problems else ""))
    if problems:
        say(*(f"  {p}" for p in problems))
        return 1
    return 0


def _still_used(cfg: Config, manifest: Manifest, moves: list[Move]) -> dict[str, str]:
    """Old key -> an article that still holds it, read as gc reads the articles (symlinks followed, hard-linked
    files read, recorded articles wherever they are, every form of a key in the bytes)."""
    from archiver.gc.usage import Usage, known_articles
    from archiver.terminal import shown_path

    old = {m.old_key for m in moves}
    new_suffixes = {k.split("/", i)[-1] for m in moves for k in (m.new_key,) for i in range(1, k.count("/") + 1)}
    ambiguous = old & new_suffixes  # "<sha>.jpg" is also the tail of "ab/cd/<sha>.jpg": trust parsed URLs only
    root = cfg.resolve_path(cfg.articles.root)
    usage = Usage(cfg, [root] if root.is_dir() else [], known_articles(manifest))
    usage.refresh()
    held: dict[str, str] = {}
    for path, use in usage.files.items():
        hits = (use.keys & old) | ((use.tokens & old) - ambiguous)
        if use.raw:
            text = use.raw.decode("latin-1")
            hits |= {k for k in old - ambiguous if k in text}
        for key in hits:
            held.setdefault(key, shown_path(path))
    return held


def _batches(moves: list[Move], size: int) -> list[list[Move]]:
    return [moves[i : i + size] for i in range(0, len(moves), size)]

