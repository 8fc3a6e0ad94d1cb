"""`archiver export`: every archived image with what a downstream site needs, as JSON (an object keyed by source URL,
usable as is as a Hugo, Jekyll or Hexo data file) or CSV (one row per source URL); streamed, so memory stays flat
whatever the manifest's size."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import secrets
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from archiver.config import Config
from archiver.errors import EXIT_OK, ArchiverError, ConfigError
from archiver.manifest.rows import ExportedAsset
from archiver.manifest.sqlite import Manifest
from archiver.manifest.target import manifest_target
from archiver.run.local import shown_source
from archiver.scratch import is_ours
from archiver.storage import Store, open_store
from archiver.terminal import UNPRINTABLE, count, say, shown_path

CSV_FIELDS = ("key", "source_urls", "url", "sha256", "width", "height", "bytes", "content_type", "format",
              "first_archived", "srcset", "placeholder")
WINDOW = 32  # placeholders being made at once (store reads overlap; results stay in manifest order)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", nargs="?", type=Path, metavar="PATH",
                        help="file to write (replaced atomically; an existing file only if an earlier export wrote "
                             "it); default: standard output")
    parser.add_argument("--format", choices=("json", "csv"), default=None,
                        help="json (an object keyed by URL) or csv; default: from PATH's extension, else json")
    parser.add_argument("--key", choices=("source", "public", "sha256"), default="source",
                        help="what each entry is keyed by: each source URL (default; an image with several has "
                             "several entries), the archive URL the rewritten articles use, or the SHA-256")
    parser.add_argument("--no-placeholders", action="store_true",
                        help="leave out the tiny previews (they need one read of a thumbnail per image)")


# -- one entry ----------------------------------------------------------------------------------------
def entry(asset: ExportedAsset, store: Store, placeholder: str | None) -> dict[str, object]:
    """The record of one image: the same for every key it is listed under."""
    url = store.url_for(asset.key)
    renditions = [
        {"width": r.pixel_width, "height": r.pixel_height, "format": r.format, "content_type": f"image/{r.format}",
         "bytes": r.bytes, "url": store.url_for(r.key), "for_width": r.width}
        for r in asset.renditions
    ]
    srcset: dict[int, str] = {}  # one candidate per width (several formats: the first, by format name)
    for r in sorted(renditions, key=lambda r: r["format"] == "avif"):  # AVIF needs <picture>: others first
        if r["width"] != asset.width:
            srcset.setdefault(int(r["width"]), f"{r['url']} {r['width']}w")  # type: ignore[call-overload]
    if asset.width:
        srcset[asset.width] = f"{url} {asset.width}w"
    return {
        "sha256": asset.sha256,
        "url": url,
        "width": asset.width,
        "height": asset.height,
        "bytes": asset.bytes,
        "content_type": asset.mime,
        "format": asset.format,
        "first_archived": datetime.fromtimestamp(asset.first_seen, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sources": asset.sources,
        "renditions": renditions,
        "srcset": ", ".join(srcset[w] for w in sorted(srcset)),
        "placeholder": placeholder,
    }


def keys(asset: ExportedAsset, store: Store, by: str) -> list[str]:
    if by == "source":
        return asset.sources
    return [store.url_for(asset.key)] if by == "public" else [asset.sha256]


def shown_sources(assets: Iterator[ExportedAsset], cfg: Config) -> Iterator[ExportedAsset]:
    """Each asset with its sources as they are shown beyond this machine: an image read from disk by its site path
    (``/images/x.png``, or ``base_url`` + that path), never by the ``file://`` URL naming this machine's folders
    (archiver.run.local.shown_source); two sources shown alike are listed once."""
    for asset in assets:
        shown = list(dict.fromkeys(shown_source(url, cfg) for url in asset.sources))
        yield asset._replace(sources=shown) if shown != asset.sources else asset


# -- placeholders, made a few at a time in manifest order ---------------------------------------------
def with_placeholders(assets: Iterator[ExportedAsset], make: Callable[[ExportedAsset], str | None] | None
                      ) -> Iterator[tuple[ExportedAsset, str | None]]:
    if make is None:
        yield from ((a, None) for a in assets)
        return
    with ThreadPoolExecutor(max_workers=4) as pool:
        window: deque[tuple[ExportedAsset, Future[str | None]]] = deque()
        for asset in assets:
            window.append((asset, pool.submit(make, asset)))
            if len(window) >= WINDOW:
                done, future = window.popleft()
                yield done, future.result()
        while window:
            done, future = window.popleft()
            yield done, future.result()


def placeholder_maker(store: Store, missing: list[str]) -> Callable[[ExportedAsset], str | None]:
    from archiver.image.placeholder import placeholder  # Pillow: only when placeholders are made

    def make(asset: ExportedAsset) -> str | None:
        source = asset.renditions[0].key if asset.renditions else None
        if source is None:
            if asset.format == "svg" or asset.bytes > 4_000_000:
                return None
            source = asset.key
        try:
            data = store.get(source)
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable object: that image has no placeholder
            missing.append(f"{source}: {type(exc).__name__}: {exc}")
            return None
        return placeholder(data)

    return make


# -- writers ------------------------------------------------------------------------------------------
def _safe_json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)  # a stray control or bidi character


def write_json(out: TextIO, rows: Iterator[tuple[ExportedAsset, str | None]], store: Store, by: str) -> int:
    n = 0
    out.write("{")
    for asset, ph in rows:
        record = _safe_json(entry(asset, store, ph))
        for k in keys(asset, store, by):
            out.write(("\n" if n == 0 else ",\n") + _safe_json(k) + ": " + record)
            n += 1
    out.write("\n}\n" if n else "}\n")
    return n


def write_csv(out: TextIO, rows: Iterator[tuple[ExportedAsset, str | None]], store: Store, by: str) -> int:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    n = 0
    for asset, ph in rows:
        e = entry(asset, store, ph)
        for k in keys(asset, store, by):
            source = k if by == "source" else " ".join(asset.sources)
            writer.writerow([k, source, e["url"], asset.sha256, asset.width or "", asset.height or "", asset.bytes,
                             asset.mime, asset.format, e["first_archived"], e["srcset"], ph or ""])
            n += 1
    return n


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or ``path`` replaced all at once when the export is complete (never half-written)."""
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _is_export(path: Path) -> bool:
    """Whether ``path`` is a regular file an earlier export wrote (JSON or CSV, by its first KiB)."""
    header = (",".join(CSV_FIELDS) + "\r\n").encode()
    if is_ours(path, starts=(header, b"{}\n")):
        return True
    return is_ours(path, starts=(b"{\n",)) and is_ours(path, contains=(b'"sha256":',)) and is_ours(
        path, contains=(b'"first_archived":',))


def check_output(path: Path | None) -> None:
    """An export replaces only a file an earlier export wrote: never an article, a config, the manifest or any
    other file that happens to be at ``path`` (ConfigError, before any work)."""
    if path is None or str(path) == "-" or not os.path.lexists(path):
        return
    if not _is_export(path):
        raise ConfigError(f"{shown_path(path)} exists and is not an export archiver wrote: not overwritten; remove "
                          "it or choose another path")


def command(args: argparse.Namespace, cfg: Config) -> int:
    fmt = args.format or ("csv" if args.output and args.output.suffix.lower() == ".csv" else "json")
    check_output(args.output)
    store = open_store(cfg)
    missing: list[str] = []
    try:
        if not args.no_placeholders:
            store.check(write=False)
        with Manifest.open_readonly(manifest_target(cfg), reconnect_for=cfg.manifest.reconnect_for) as m:
            make = None if args.no_placeholders else placeholder_maker(store, missing)
            rows = with_placeholders(shown_sources(m.exported_assets(), cfg), make)
            try:
                with _output(args.output) as out:
                    n = (write_csv if fmt == "csv" else write_json)(out, rows, store, args.key)
            except BrokenPipeError:
                raise  # the reader went away (`| head`): the CLI ends quietly
            except OSError as exc:
                where = shown_path(args.output) if args.output else "standard output"
                raise ArchiverError(f"cannot write {where}: {exc.strerror or exc}") from exc
    finally:
        store.close()
    if args.output:
        say(f"exported {n} entries ({fmt}, keyed by {args.key}) to {shown_path(args.output)}")
    if missing:
        say(f"{count(len(missing), 'image')} {'has' if len(missing) == 1 else 'have'} no placeholder (their "
            f"thumbnail could not be read; `archiver verify` checks the store), e.g. {missing[0]}", file=sys.stderr)
    return EXIT_OK
