"""The manifest's schema: the migrations, in order, and applying them (the rows read back: rows.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from archiver.errors import ManifestError
from archiver.manifest.dialect import SQLITE

# Each entry migrates the schema from version i to i+1; never edit a released entry, append a new one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE urls (
        url TEXT PRIMARY KEY,
        status TEXT NOT NULL,              -- archived | dead | rejected | failed
        reason TEXT,
        http_status INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        asset TEXT REFERENCES assets(sha256),
        final_url TEXT,
        etag TEXT,
        last_modified TEXT,
        first_seen REAL NOT NULL,
        last_tried REAL NOT NULL
    );
    CREATE INDEX urls_status ON urls(status);
    CREATE INDEX urls_asset ON urls(asset);
    CREATE TABLE assets (
        sha256 TEXT PRIMARY KEY,
        format TEXT NOT NULL,
        mime TEXT NOT NULL,
        ext TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        width INTEGER,
        height INTEGER,
        frames INTEGER NOT NULL DEFAULT 1,
        phash TEXT,
        dhash TEXT,
        key TEXT NOT NULL,
        first_seen REAL NOT NULL
    );
    CREATE TABLE renditions (
        asset TEXT NOT NULL REFERENCES assets(sha256),
        width INTEGER NOT NULL,
        format TEXT NOT NULL,
        pixel_width INTEGER NOT NULL,
        pixel_height INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (asset, width, format)
    );
    CREATE TABLE articles (
        path TEXT PRIMARY KEY,
        sha256_before TEXT NOT NULL,       -- before our first rewrite
        sha256_after TEXT NOT NULL,        -- after our latest rewrite
        rewritten_at REAL NOT NULL
    );
    CREATE TABLE replacements (
        article TEXT NOT NULL REFERENCES articles(path),
        seq INTEGER NOT NULL,              -- rewrite generation of this article
        start INTEGER NOT NULL,            -- char offsets in the text before that rewrite
        end INTEGER NOT NULL,
        original TEXT NOT NULL,            -- exact text of the span before
        replacement TEXT NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (article, seq, start)
    );
    CREATE TABLE near_duplicates (
        a TEXT NOT NULL REFERENCES assets(sha256),
        b TEXT NOT NULL REFERENCES assets(sha256),
        phash_distance INTEGER NOT NULL,
        dhash_distance INTEGER NOT NULL,
        PRIMARY KEY (a, b),
        CHECK (a < b)
    );
    """,
    # 2: dihedral hash variants for near-duplicate search, why a span was replaced, the transform of a pair
    """
    ALTER TABLE assets ADD COLUMN phash_variants TEXT;
    ALTER TABLE assets ADD COLUMN dhash_variants TEXT;
    ALTER TABLE replacements ADD COLUMN reason TEXT NOT NULL DEFAULT 'archive';
    ALTER TABLE near_duplicates ADD COLUMN transform TEXT NOT NULL DEFAULT 'identity';
    """,
    # 3: the 8x8 grey thumbnail, the pixel-level check that confirms a near-duplicate pair
    """
    ALTER TABLE assets ADD COLUMN grey TEXT;
    """,
    # 4: which assets were searched for near-duplicates (at which distance, under which decision rule), and per
    # pair what filtering by distance needs; pairs recorded before searches were tracked are found again
    """
    CREATE TABLE pair_searches (
        asset TEXT PRIMARY KEY REFERENCES assets(sha256),
        max_distance INTEGER NOT NULL,     -- searched against every asset that existed then, at this distance
        rule INTEGER NOT NULL,             -- SIMILARITY_RULE_VERSION of that search
        searched_at REAL NOT NULL
    );
    DELETE FROM near_duplicates;
    ALTER TABLE near_duplicates ADD COLUMN grey_distance REAL NOT NULL DEFAULT -1;
    ALTER TABLE near_duplicates ADD COLUMN min_distance INTEGER NOT NULL DEFAULT 0;  -- smallest accepting distance
    ALTER TABLE near_duplicates ADD COLUMN rule INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX near_duplicates_b ON near_duplicates(b);
    """,
    # 5: the write-ahead record of an article write: recorded before the rename, confirmed (moved into articles and
    # replacements, or for a restore, the article forgotten) after it; a run killed in between leaves it here and
    # the next one settles it by the file's hash. Paths (here and in articles/replacements) are TEXT, or a BLOB of
    # the file name's bytes when it is not UTF-8 (rows.stored_path): the columns keep their type.
    """
    CREATE TABLE pending_writes (
        path TEXT PRIMARY KEY,
        sha256_before TEXT NOT NULL,       -- the bytes read
        sha256_after TEXT NOT NULL,        -- the bytes being renamed into place
        reason TEXT NOT NULL,              -- archive | dedupe | dedupe-undo (a generation), or restore
        replacements TEXT NOT NULL,        -- JSON: per generation, [[start, end, original, replacement, url], ...]
        started_at REAL NOT NULL
    );
    """,
    # 6: what a stored thumbnail's bytes hash to (an object is trusted only when its checksum matches), and the
    # objects found missing or corrupt in storage (by verify), which run and verify --repair store again
    """
    ALTER TABLE renditions ADD COLUMN sha256 TEXT;   -- of the thumbnail's bytes; NULL when recorded before 6
    CREATE TABLE lost_objects (
        key TEXT PRIMARY KEY,
        asset TEXT NOT NULL REFERENCES assets(sha256),  -- the original's sha256 (its own key, or its thumbnail's)
        state TEXT NOT NULL,               -- missing | corrupt
        reason TEXT NOT NULL,
        found_at REAL NOT NULL
    );
    CREATE INDEX lost_objects_asset ON lost_objects(asset);
    """,
    # 7: why a URL was refused when a setting decided it (model.Cause), and a digest of those settings
    # (config.settings_fingerprint): such refusals are tried again once the settings change
    """
    ALTER TABLE urls ADD COLUMN cause TEXT;
    ALTER TABLE urls ADD COLUMN settings TEXT;
    """,
    # 8: colour, for the canonical choice: palette colours used (0: not a palette image) and mean chroma (~0: a
    # greyscale picture); NULL for assets archived before, filled in by `dedupe` where a group needs them
    """
    ALTER TABLE assets ADD COLUMN colours INTEGER;
    ALTER TABLE assets ADD COLUMN chroma REAL;
    """,
    # 9: article contents a run found fully archived (every reference already points at the archive), under the
    # scan's fingerprint (run.articles.scan_fingerprint): a later run reads such a file and hashes it, and skips
    # parsing it when the same bytes are recorded under the same fingerprint
    """
    CREATE TABLE settled_articles (
        sha256 TEXT PRIMARY KEY,           -- of the article's bytes
        fingerprint TEXT NOT NULL,         -- the settings and finder code the scan ran under
        refs INTEGER NOT NULL              -- its image references, every one pointing at the archive
    );
    """,
    # 10: an explicit id per asset (the near-duplicate search's index; SQLite's rowid has no PostgreSQL twin), numbered
    # in the order the assets were first seen, and the counter new ids are drawn from (a row lock in PostgreSQL, so
    # writers on several machines never draw the same id)
    """
    ALTER TABLE assets ADD COLUMN id INTEGER;
    UPDATE assets SET id = n.id FROM (SELECT sha256, ROW_NUMBER() OVER (ORDER BY first_seen, sha256) AS id
                                      FROM assets) AS n WHERE n.sha256 = assets.sha256;
    CREATE UNIQUE INDEX assets_id ON assets(id);
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    INSERT INTO counters (name, value) SELECT 'assets', COALESCE(MAX(id), 0) FROM assets;
    """,
    # 11: the work queue: URLs waiting for a worker, and each one's claim (who, until when, and its fencing token,
    # raised at every claim so that the results of a holder whose lease expired and was claimed again are refused)
    """
    CREATE TABLE queue (
        url TEXT PRIMARY KEY,              -- as urls.url (rows.url_key)
        enqueued_at REAL NOT NULL,
        claimed_by TEXT,                   -- the worker holding it; NULL: waiting
        lease_until REAL,                  -- the database's clock; a lease that passed is anyone's to claim
        token INTEGER NOT NULL DEFAULT 0   -- the fencing token of the latest claim
    );
    CREATE INDEX queue_lease ON queue(lease_until);
    """,
    # 12: `archiver gc`'s journal: the objects whose records it removed, kept until the store has deleted them too,
    # so a gc killed in between finishes the job on its next run (and skips a key a run has recorded again since)
    """
    CREATE TABLE gc_deletions (
        key TEXT PRIMARY KEY,
        asset TEXT NOT NULL,               -- the original's sha256 (no reference: its row is gone)
        bytes INTEGER NOT NULL,
        recorded_at REAL NOT NULL
    );
    """,
    # 13: key layouts ([storage] key_template): the URL an asset was first archived from (its key's {host} and
    # {name}; NULL before 13: the oldest archived URL stands in), keys looked up by value (a templated key is read
    # back from the manifest, never from its shape), and `archiver rekey`'s moves until each is done: the object
    # copied to its new key, the articles re-pointed, the new key recorded, the old object deleted
    """
    ALTER TABLE assets ADD COLUMN source TEXT;
    CREATE INDEX assets_key ON assets(key);
    CREATE INDEX renditions_key ON renditions(key);
    CREATE TABLE rekey_moves (
        old_key TEXT PRIMARY KEY,
        new_key TEXT NOT NULL,
        asset TEXT NOT NULL REFERENCES assets(sha256),
        width INTEGER,                     -- NULL: the original; else the thumbnail's configured width
        format TEXT,                       -- the thumbnail's format
        state TEXT NOT NULL                -- planned | copied | repointed | recorded
    );
    CREATE INDEX rekey_moves_new ON rekey_moves(new_key);
    CREATE TABLE moved_keys (              -- every key rekey moved an object away from: restore and dedupe --undo
        old_key TEXT PRIMARY KEY,          -- put back the URL of the object's key now, never of a deleted one
        new_key TEXT NOT NULL,
        moved_at REAL NOT NULL
    );
    """,
    # 14: the state of the on-disk index of hash variants beside the manifest (dedupe/segments.py), as its last
    # update left it: an index whose generation file says otherwise is stale and is rebuilt from the assets
    """
    CREATE TABLE hash_index (
        name TEXT PRIMARY KEY,             -- which index (one today: 'variants')
        token TEXT NOT NULL,               -- random, made with the index: another index folder never matches
        generation INTEGER NOT NULL,       -- bumped by every update of the index
        assets INTEGER NOT NULL,           -- assets indexed
        checksum TEXT NOT NULL             -- of the indexed (asset id, signature digest) pairs
    );
    """,
    # 15: fleet-wide politeness (manifest/fleet.py): connection slots per host (host '*': the global ones), each
    # held under a lease on the database's clock, and host pauses ("slow down" answers) every worker reads
    """
    CREATE TABLE host_slots (
        host TEXT NOT NULL,                -- host:port, or '*' for the fleet-wide concurrency slots
        slot INTEGER NOT NULL,             -- 0 .. per_host - 1 (concurrency - 1)
        holder TEXT,                       -- the process holding it (NULL: free)
        lease_until REAL,                  -- database clock, seconds since the epoch; passed: free
        PRIMARY KEY (host, slot)
    );
    CREATE TABLE host_pauses (
        host TEXT PRIMARY KEY,
        paused_until REAL NOT NULL,        -- database clock: no request to the host before
        why TEXT
    );
    """,
    # 16: each asset's latest near-duplicate search beside it (rule * 1000 + max_distance, as in pair_searches; NULL:
    # never searched), indexed over the assets with hash variants, so that finding what a run must search reads only
    # those assets (not a join of every asset with pair_searches); the recorded pairs indexed by rule (dropping the
    # pairs of another rule reads only those)
    """
    ALTER TABLE assets ADD COLUMN search_mark INTEGER;
    UPDATE assets SET search_mark = (SELECT s.rule * 1000 + s.max_distance FROM pair_searches s
                                     WHERE s.asset = assets.sha256);
    CREATE INDEX assets_search_mark ON assets(search_mark, id)
        WHERE phash_variants IS NOT NULL AND dhash_variants IS NOT NULL;
    CREATE INDEX near_duplicates_rule ON near_duplicates(rule, min_distance);
    """,
    # 17: the workers serving the queue (`archiver worker`, and a run settling URLs itself): one row each, its
    # heartbeat written by the database's clock while it lives, removed when it exits cleanly (`archiver status`)
    """
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,               -- host:pid:random, as queue.claimed_by names it
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,          -- the database's clock, seconds since the epoch
        heartbeat_at REAL NOT NULL,        -- likewise: a worker silent for long was killed or is paused
        held INTEGER NOT NULL DEFAULT 0,   -- URLs it holds claims on
        done INTEGER NOT NULL DEFAULT 0    -- URLs it completed since it started
    );
    """,
    # 18: near-duplicate pairs recorded once per pair of classes of identical signatures (the same pHash and dHash
    # variants and grey thumbnail), between the classes' heads: each class's member with the smallest id (ten
    # thousand copies of a blank image near a copy of it: one row, not ten thousand). The rows between two heads are
    # kept, the others dropped (a pair between two classes was recorded for every member pair, so the heads' row is
    # there whenever the pair is complete). The index on each asset's identity pHash finds a class's members (gc
    # removing a head marks the rest of its class unsearched).
    """
    CREATE INDEX assets_identity_phash ON assets((substr(phash_variants, 1, 16)));
    DELETE FROM near_duplicates WHERE EXISTS (
        SELECT 1 FROM assets x JOIN assets y
            ON substr(y.phash_variants, 1, 16) = substr(x.phash_variants, 1, 16)
           AND y.phash_variants = x.phash_variants AND y.dhash_variants = x.dhash_variants
           AND COALESCE(y.grey, '') = COALESCE(x.grey, '') AND y.id < x.id
        WHERE x.sha256 = near_duplicates.a
    ) OR EXISTS (
        SELECT 1 FROM assets x JOIN assets y
            ON substr(y.phash_variants, 1, 16) = substr(x.phash_variants, 1, 16)
           AND y.phash_variants = x.phash_variants AND y.dhash_variants = x.dhash_variants
           AND COALESCE(y.grey, '') = COALESCE(x.grey, '') AND y.id < x.id
        WHERE x.sha256 = near_duplicates.b
    );
    """,
    # 19: the share of an image's area inside the flat frame or bars a copy added around the picture
    # (image.similarity.content_box; 1.0 none), so a framed copy does not win the canonical choice by its frame's area;
    # NULL: archived before it was measured (taken as 1.0; `dedupe --resign` measures it)
    """
    ALTER TABLE assets ADD COLUMN content REAL;
    """,
    # 20: the references `archiver dedupe` found in an article's bytes (as parsed for its format, under the finder's
    # settings and code), so that a later report reads and hashes an unchanged article instead of parsing it again
    # (at 100 000 articles, ~2 minutes of a report against ~5 s of reading and hashing)
    """
    CREATE TABLE article_refs (
        sha256 TEXT NOT NULL,              -- of the article's bytes
        format TEXT NOT NULL,              -- the format it was parsed as (from its file name)
        fingerprint TEXT NOT NULL,         -- the settings and finder code the parse ran under
        refs TEXT NOT NULL,                -- a JSON list of each reference's text as written, in the text's order
        PRIMARY KEY (sha256, format)
    );
    """,
    # 21: each asset's search record (migration 4) is gone: since migration 16 its mark beside the asset
    # (assets.search_mark) is what every search reads, and the table was only written (a million rows deleted and
    # inserted again by a rescan of a million images, ~4 s of it). IF EXISTS: a manifest rolled back by hand
    """
    DROP TABLE IF EXISTS pair_searches;
    """,
)

# Every table, in an order where each row's references are copied before it (migrate-manifest); a migration that adds
# a table adds it here (a test compares this with the schema).
TABLES: tuple[str, ...] = (
    "assets", "renditions", "urls", "articles", "replacements", "near_duplicates", "pending_writes", "lost_objects", "settled_articles", "counters", "queue", "gc_deletions", "rekey_moves",
    "moved_keys", "hash_index", "host_slots", "host_pauses", "workers", "article_refs",
)


def check_ours(conn: Any, path: Path | str | None) -> None:
    """Refuse a database that is not an archiver manifest (schema 0 with tables of its own), before anything (a
    migration, a journal mode) changes it."""
    dialect = getattr(conn, "dialect", SQLITE)
    if dialect.foreign(conn):
        key = "[manifest] path must name an archiver manifest or a new file" if dialect is SQLITE else \
            "[manifest] url must name an archiver manifest or an empty database (or schema)"
        raise ManifestError(f"{path}: not an archiver manifest (a database with other tables, left as it is); {key}")


def migrate(conn: Any, path: Path | str | None) -> None:
    """Bring the schema to the latest version: the same migrations on SQLite and PostgreSQL (dialect.py)."""
    check_ours(conn, path)
    dialect = getattr(conn, "dialect", SQLITE)
    version = dialect.version(conn)
    if version > len(MIGRATIONS):
        raise ManifestError(
            f"{path}: manifest schema {version} is newer than this archiver knows ({len(MIGRATIONS)}); upgrade"
        )
    for i in range(version, len(MIGRATIONS)):
        dialect.apply(conn, i, MIGRATIONS[i])
