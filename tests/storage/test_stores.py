"""Object storage against a real SeaweedFS S3 server and a real folder: what lands where, and what is refused."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from archiver.config import Config, StorageConfig
from archiver.errors import ConfigError, StorageError
from archiver.storage import Stored, open_store, prove
from archiver.storage.keys import normalise_prefix, original_key, rendition_key
from archiver.storage.local import LocalStore
from archiver.storage.null import NullStore
from archiver.storage.s3 import S3Store, s3_metadata
from tests.support.paths import ROOT_DIR
from tests.support.seaweed import SeaweedS3

SHA = "ab" + "cd" + "0123456789abcdef" * 3 + "0123456789ab"
CDN = "https://cdn.example.com/"
ESCAPES = [
    "../evil.png",
    "/etc/passwd",
    "a/../../evil.png",
    "a//b.png",
    "./a.png",
    "a\\..\\b.png",
    "",
    "a/",
    "ü.png",
]


def s3_config(server: SeaweedS3, bucket: str, **kw: object) -> StorageConfig:
    return StorageConfig(
        backend="s3",
        bucket=bucket,
        endpoint_url=server.endpoint_url,
        region=server.region,
        public_base_url=CDN,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def s3_store(s3_env: SeaweedS3) -> S3Store:
    return S3Store(s3_config(s3_env, s3_env.make_bucket("store")), multipart_threshold=5 * 1024 * 1024)


# -- keys -------------------------------------------------------------------------------------------


def test_keys_are_sharded_by_the_original_sha256() -> None:
    assert len(SHA) == 64
    assert original_key("", SHA, "jpg") == f"ab/cd/{SHA}.jpg"
    assert original_key("media/img", SHA, "png") == f"media/img/ab/cd/{SHA}.png"
    assert rendition_key("media/", SHA, 320, "webp") == f"media/ab/cd/{SHA}-320w.webp"


@pytest.mark.parametrize(
    ("prefix", "expected"), [("", ""), ("/", ""), ("/a//b", "a/b/"), ("a/./b/", "a/b/"), (" img ", "img/")]
)
def test_prefix_is_normalised(prefix: str, expected: str) -> None:
    assert normalise_prefix(prefix) == expected


@pytest.mark.parametrize("prefix", ["..", "a/../..", "a/..", "a b", "a\\b", "x?y", "ü"])
def test_prefix_that_could_escape_or_needs_escaping_is_a_config_error(prefix: str) -> None:
    with pytest.raises(ConfigError, match="prefix"):
        original_key(prefix, SHA, "jpg")


@pytest.mark.parametrize(
    ("sha", "ext"),
    [
        (SHA.upper(), "jpg"),
        (SHA[:-1], "jpg"),
        ("../" + SHA[3:], "jpg"),
        (SHA, "JPG"),
        (SHA, "jpeg12"),
        (SHA, "x/y"),
        (SHA, ""),
    ],
)
def test_bad_sha_or_extension_is_refused(sha: str, ext: str) -> None:
    with pytest.raises(ValueError):
        original_key("", sha, ext)
    with pytest.raises(ValueError):
        rendition_key("", sha, 320, ext)


# -- local folder -----------------------------------------------------------------------------------


def test_local_round_trip_bytes_and_path(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive", "/archive/")
    store.check()
    key, key2 = original_key("p/", SHA, "jpg"), rendition_key("p/", SHA, 320, "webp")
    assert not store.exists(key)
    store.put(key, b"\xff\xd8jpeg", "image/jpeg", {"source-url": "https://example.com/a.jpg"})
    src = tmp_path / "download.tmp"
    src.write_bytes(os.urandom(300_000))
    store.put(key2, src, "image/webp", {})
    assert store.exists(key) and store.exists(key2)
    assert store.get(key) == b"\xff\xd8jpeg"
    assert store.get(key2) == src.read_bytes()
    final = tmp_path / "archive" / key
    assert final.is_file() and stat.S_IMODE(final.stat().st_mode) == 0o644
    assert store.url_for(key) == f"/archive/{key}"
    store.close()  # its scratch folder goes
    # nothing but the two objects: no temp files, no metadata side files
    files = sorted(
        p.relative_to(tmp_path / "archive").as_posix()
        for p in (tmp_path / "archive").rglob("*")
        if p.is_file()
    )
    assert files == sorted([key, key2])
    with pytest.raises(StorageError, match="no object"):
        store.get(original_key("p/", SHA, "png"))


def test_local_put_replaces_atomically_and_cleans_up_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path, "/a/")
    key = original_key("", SHA, "png")
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    store.put(key, b"one", "image/png", {})
    [(src, dst)] = replaced
    # the temp file is in the store's own scratch folder: same file system, so os.replace is atomic,
    # and never beside the objects, so a killed run cannot leave a partial file among them
    assert dst == str(tmp_path / key) and Path(src).parent.parent == tmp_path and src != dst
    assert Path(src).parent.name.startswith(".archiver-scratch-")

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StorageError, match="No space left"):
        store.put(key, b"two, longer", "image/png", {})
    assert (tmp_path / key).read_bytes() == b"one"  # the old object is untouched
    assert os.listdir((tmp_path / key).parent) == [f"{SHA}.png"]  # the temp file is gone


CRASH_CHILD = """
import sys
from pathlib import Path
from archiver.storage.local import LocalStore
LocalStore(Path(sys.argv[1]), "/").put(sys.argv[2], Path(sys.argv[3]), "image/png", {})
"""


def test_local_crash_mid_write_leaves_no_partial_object(tmp_path: Path) -> None:
    """A process killed while copying leaves no partial object; the next run's check() removes its temp file."""
    fifo = tmp_path / "source.fifo"
    os.mkfifo(fifo)
    root, key = tmp_path / "archive", original_key("", SHA, "png")
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(root), key, str(fifo)], cwd=ROOT_DIR
    )
    try:
        with fifo.open("wb") as pipe:
            pipe.write(b"x" * (3 << 19))  # 1.5 MiB: the child copies whole 1 MiB chunks, then waits for more
            pipe.flush()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # wait until the child has written half the object
                temps = list(root.glob(".archiver-scratch-*/*.tmp"))
                if temps and temps[0].stat().st_size == 1 << 20:
                    break
                time.sleep(0.01)
            else:
                pytest.fail("the child never wrote its temp file")
            child.kill()
            child.wait()
    except BrokenPipeError:
        pass
    finally:
        child.kill()
        child.wait()
    assert not (root / key).exists()
    assert list((root / "ab" / "cd").iterdir()) == []  # nothing beside the objects
    assert [p.name.startswith(f"{SHA}.png.") for p in root.glob(".archiver-scratch-*/*.tmp")] == [True]
    store = LocalStore(root, "/")
    assert not store.exists(key)
    store.check()  # the next run: the dead process's scratch folder goes
    assert sorted(p.name for p in root.iterdir()) == ["ab"]


@pytest.mark.parametrize("key", ESCAPES)
def test_local_refuses_keys_that_escape(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "archive", "/a/")
    with pytest.raises(StorageError, match="refusing object key"):
        store.put(key, b"x", "image/png", {})
    with pytest.raises(StorageError, match="refusing object key"):
        store.exists(key)
    with pytest.raises(StorageError, match="refusing object key"):
        store.get(key)
    assert not (tmp_path / "evil.png").exists()


def test_local_refuses_a_symlink_leading_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "ab").symlink_to(outside)
    store = LocalStore(tmp_path / "archive", "/a/")
    with pytest.raises(StorageError, match="outside"):
        store.put(original_key("", SHA, "png"), b"x", "image/png", {})
    assert list(outside.iterdir()) == []


def test_a_symlink_loop_in_the_local_store_is_no_traceback(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archive", "/a/")
    sha = "ab" * 32
    (tmp_path / "archive" / "ab").mkdir(parents=True)
    (tmp_path / "archive" / "ab" / "ab").symlink_to(tmp_path / "archive" / "ab" / "ab")  # a shard folder: a loop
    assert store.exists(f"ab/ab/{sha}.jpg") is False  # was: RuntimeError("Symlink loop from ...")


def test_local_check_reports_an_unwritable_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageError, match="cannot write"):
        LocalStore(tmp_path / "file" / "archive", "/").check()


def test_open_store_local_path_is_relative_to_root(tmp_path: Path) -> None:
    source = tmp_path / "archiver.toml"  # a config file in tmp_path: relative paths are relative to its folder
    store = open_store(
        Config(storage=StorageConfig(backend="local", path="out/archive", public_base_url="/m/"), source=source)
    )
    assert isinstance(store, LocalStore) and store.root == tmp_path / "out" / "archive"
    absolute = open_store(Config(storage=StorageConfig(path=str(tmp_path / "abs")), source=Path("/elsewhere/c.toml")))
    assert isinstance(absolute, LocalStore) and absolute.root == tmp_path / "abs"


@pytest.mark.parametrize("path", ["/", "/..", "../../../../../../../../../../../../../.."])
def test_a_local_store_at_the_root_of_the_file_system_is_refused(tmp_path: Path, path: str) -> None:
    # objects under ab/cd/… and a scratch folder in / : a typo no one means
    cfg = Config(storage=StorageConfig(backend="local", path=path), source=tmp_path / "archiver.toml")
    with pytest.raises(ConfigError, match=r"archiver.toml: \[storage\] path: .* root of the file system"):
        open_store(cfg)


# -- S3 (real SeaweedFS) ----------------------------------------------------------------------------


def test_s3_round_trip_with_headers_and_metadata(s3_store: S3Store, s3_server: SeaweedS3) -> None:
    s3_store.check()
    key = original_key("media/", SHA, "jpg")
    assert not s3_store.exists(key)
    source = "https://user:hunter2@img.example.com/фото/ü.jpg?w=800&token=abc123"
    s3_store.put(key, b"\xff\xd8\xff jpeg bytes", "image/jpeg", {"source-url": source})
    assert s3_store.exists(key)
    assert s3_store.get(key) == b"\xff\xd8\xff jpeg bytes"
    head = s3_server.client().head_object(Bucket=s3_store.bucket, Key=key)
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "public, max-age=31536000, immutable"
    url = head["Metadata"]["source-url"]
    assert url == "https://***@img.example.com/%D1%84%D0%BE%D1%82%D0%BE/%C3%BC.jpg?w=800&token=***"
    assert "hunter2" not in url and "abc123" not in url
    assert s3_store.url_for(key) == CDN + key


def test_s3_put_from_a_path_uses_multipart_above_the_threshold(
    s3_store: S3Store, s3_server: SeaweedS3, tmp_path: Path
) -> None:
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(os.urandom(9 * 1024 * 1024))
    small.write_bytes(os.urandom(1000))
    kbig, ksmall = original_key("", SHA, "png"), rendition_key("", SHA, 320, "webp")
    s3_store.put(kbig, big, "image/png", {"source-url": "https://example.com/big.png"})
    s3_store.put(ksmall, small, "image/webp", {})
    assert s3_store.get(kbig) == big.read_bytes()
    assert s3_store.get(ksmall) == small.read_bytes()
    head = s3_server.client().head_object(Bucket=s3_store.bucket, Key=kbig)
    assert head["ETag"].strip('"').endswith("-2")  # two parts: 5 MiB chunks... the multipart path was taken
    assert head["ContentType"] == "image/png" and head["CacheControl"].endswith("immutable")
    assert head["Metadata"] == {"source-url": "https://example.com/big.png"}
    assert "-" not in s3_server.client().head_object(Bucket=s3_store.bucket, Key=ksmall)["ETag"]


def test_s3_objects_are_publicly_readable_over_plain_http(s3_store: S3Store, s3_server: SeaweedS3) -> None:
    key = original_key("", SHA, "gif")
    s3_store.put(key, b"GIF89a...", "image/gif", {})
    with urllib.request.urlopen(f"{s3_server.endpoint_url}/{s3_store.bucket}/{key}", timeout=5) as resp:
        assert resp.read() == b"GIF89a..."
        assert resp.headers["Content-Type"] == "image/gif"


def test_s3_refuses_keys_that_escape(s3_store: S3Store, s3_server: SeaweedS3) -> None:
    for key in ESCAPES:
        for call in (
            lambda k=key: s3_store.put(k, b"x", "image/png", {}),
            lambda k=key: s3_store.exists(k),
            lambda k=key: s3_store.get(k),
        ):
            with pytest.raises(StorageError, match="refusing object key"):
                call()
    assert s3_server.client().list_objects_v2(Bucket=s3_store.bucket)["KeyCount"] == 0


def test_s3_wrong_secret_is_one_clear_error_without_the_secret(
    s3_env: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "WrongSecret-" + s3_env.secret_key[::-1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    store = S3Store(s3_config(s3_env, s3_env.make_bucket("creds")))
    with pytest.raises(StorageError) as info:
        store.check()
    message = str(info.value)
    assert "credentials" in message and "SignatureDoesNotMatch" in message
    assert wrong not in message and s3_env.secret_key not in message
    with pytest.raises(StorageError, match="credentials") as info:
        store.put(original_key("", SHA, "png"), b"x", "image/png", {})
    assert wrong not in str(info.value)


def test_s3_unknown_access_key(s3_env: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKNOBODY")
    store = S3Store(s3_config(s3_env, s3_env.make_bucket("creds")))
    with pytest.raises(StorageError, match="credentials.*InvalidAccessKeyId"):
        store.check()


def test_s3_missing_bucket_is_named(s3_env: SeaweedS3) -> None:
    store = S3Store(s3_config(s3_env, "no-such-bucket-here"))
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
        store.check()
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        store.put(original_key("", SHA, "png"), b"x", "image/png", {})


def test_s3_unreachable_endpoint_fails_fast(s3_env: SeaweedS3) -> None:
    from tests.support.seaweed import _free_ports

    (port,) = _free_ports(1)
    cfg = StorageConfig(backend="s3", bucket="whatever", endpoint_url=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(StorageError, match=f"cannot reach endpoint http://127.0.0.1:{port}"):
        S3Store(cfg).check()
    assert time.monotonic() - started < 20  # ~1 s: one retry; not the minute a default client would retry for


def test_s3_concurrent_puts_share_one_client(s3_store: S3Store) -> None:
    keys = [original_key("c/", f"{i:064x}", "png") for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3_store.put(k, k.encode(), "image/png", {}), keys))
        assert all(pool.map(s3_store.exists, keys))
    assert s3_store.get(keys[7]) == keys[7].encode()


def test_open_store_s3_uses_the_credential_chain(s3_env: SeaweedS3) -> None:
    store = open_store(Config(storage=s3_config(s3_env, s3_env.make_bucket("open"))))
    assert "S3Store(bucket=" in repr(store)  # made at its first use (a run with nothing new never loads boto3)
    store.check()
    store.put("k/x.png", b"png", "image/png", {})
    assert store.get("k/x.png") == b"png"


def test_metadata_is_ascii_capped_and_free_of_credentials() -> None:
    meta = s3_metadata(
        {
            "Source URL": "http://a:b@h.example/x?sig=1&X-Amz-Signature=2&q=é",
            "note": "ä" * 2000,
            "": "dropped",
            "ref": "  plain  ",
        }
    )
    assert meta["source-url"] == "http://***@h.example/x?sig=***&X-Amz-Signature=***&q=%C3%A9"
    assert len(meta["note"]) <= 1024 and meta["note"].endswith("%A4") and meta["note"].isascii()
    assert meta["ref"] == "plain" and "" not in meta
    many = s3_metadata({f"k{i}": "v" * 1000 for i in range(5)})
    assert sum(len(k) + len(v) for k, v in many.items()) <= 2000 and len(many["k0"]) == 1000
    assert s3_metadata({"u": "https://[::1]:8080/a"})["u"] == "https://[::1]:8080/a"
    assert s3_metadata({"u": "https://u:p@[::1]:8080/a"})["u"] == "https://***@[::1]:8080/a"


# -- dry run ----------------------------------------------------------------------------------------


def test_null_store_writes_nothing_but_reads_through(tmp_path: Path) -> None:
    real = LocalStore(tmp_path, "/real/")
    have, new = original_key("", SHA, "png"), original_key("", SHA, "jpg")
    real.put(have, b"old", "image/png", {})
    real.close()
    dry = NullStore(real)
    dry.check()
    assert dry.exists(have) and not dry.exists(new)
    dry.put(new, b"new", "image/jpeg", {})
    assert not real.exists(new) and not dry.exists(new)
    assert dry.would_put == [new]
    assert dry.url_for(new) == f"/real/{new}" and dry.get(have) == b"old"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{SHA}.png"]
    bare = NullStore(public_base_url="/x/")
    assert not bare.exists(have) and bare.url_for(have) == f"/x/{have}"
    bare.put(have, tmp_path / "missing", "image/png", {})
    with pytest.raises(StorageError):
        bare.get(have)


def test_null_store_over_s3_uploads_nothing(s3_store: S3Store, s3_server: SeaweedS3) -> None:
    dry = NullStore(s3_store)
    key = original_key("", SHA, "webp")
    dry.put(key, b"RIFF....WEBP", "image/webp", {})
    assert not s3_store.exists(key)
    assert s3_server.client().list_objects_v2(Bucket=s3_store.bucket)["KeyCount"] == 0


def test_server_restart_keeps_objects_and_a_stopped_server_is_a_clear_error(s3_env: SeaweedS3) -> None:
    bucket = s3_env.make_bucket("restart")
    store = S3Store(s3_config(s3_env, bucket), max_attempts=1)
    key = original_key("", SHA, "png")
    store.put(key, b"kept", "image/png", {})
    s3_env.stop()
    try:
        assert not s3_env.running
        with pytest.raises(StorageError, match="cannot reach endpoint|connection"):
            store.exists(key)
    finally:
        s3_env.start()
    assert store.exists(key) and store.get(key) == b"kept"


def test_s3_without_credentials_says_how_to_set_them(
    s3_env: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(StorageError, match="no usable S3 credentials.*AWS_ACCESS_KEY_ID"):
        S3Store(s3_config(s3_env, "any-bucket")).check()


# -- configuration that cannot work: refused at start-up -----------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "why"),
    [("../outside", "not a safe key prefix"), ("a b", "not a safe key prefix"), ("p" * 1000, "no room for object keys")],
)
def test_a_prefix_that_cannot_work_is_refused_by_open_store_naming_the_file(
    tmp_path: Path, prefix: str, why: str
) -> None:
    cfg = Config(storage=StorageConfig(prefix=prefix), source=tmp_path / "archiver.toml")
    with pytest.raises(ConfigError, match=f"^{tmp_path / 'archiver.toml'}: \\[storage\\] prefix: .*{why}"):
        open_store(cfg)


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("https://cdn.example.com/bucket/", f"https://cdn.example.com/bucket/ab/cd/{SHA}.png"),
        ("https://cdn.example.com", f"https://cdn.example.com/ab/cd/{SHA}.png"),  # a bare origin: unambiguous
        ("/archive/", f"/archive/ab/cd/{SHA}.png"),
    ],
)
def test_public_urls_join_the_base_folder_and_the_key(tmp_path: Path, base: str, url: str) -> None:
    store = open_store(Config(storage=StorageConfig(path=str(tmp_path), public_base_url=base)))
    assert store.url_for(original_key("", SHA, "png")) == url


@pytest.mark.parametrize(
    ("base", "why"),
    [
        ("https://cdn.example.com/bucket", "does not end with '/': the key would be glued to 'bucket'"),
        ("/archive", "does not end with '/'"),
        ("https://cdn.example.com/media?v=1", "query or fragment"),
        ("https://cdn.example.com/#", "query or fragment"),
    ],
)
def test_a_public_base_url_a_key_cannot_be_joined_to_is_refused(tmp_path: Path, base: str, why: str) -> None:
    cfg = Config(storage=StorageConfig(public_base_url=base), source=tmp_path / "a.toml")
    with pytest.raises(ConfigError, match=f"a.toml: \\[storage\\] public_base_url: .*{why}"):
        open_store(cfg)


# -- an object that exists is not proof -------------------------------------------------------------


def test_s3_uploads_carry_a_sha256_the_server_checks_keeps_and_reports(
    s3_store: S3Store, s3_server: SeaweedS3, tmp_path: Path
) -> None:
    data = os.urandom(5000)
    digest = hashlib.sha256(data).hexdigest()
    kb, kf, kbig = original_key("", SHA, "png"), original_key("", SHA, "jpg"), original_key("", SHA, "gif")
    s3_store.put(kb, data, "image/png", {})
    src = tmp_path / "f.bin"
    src.write_bytes(data)
    s3_store.put(kf, src, "image/jpeg", {}, sha256=digest)
    assert s3_store.stat(kb) == Stored(5000, digest, "image/png")
    assert s3_store.stat(kf) == Stored(5000, digest, "image/jpeg")
    assert s3_store.stat(original_key("", SHA, "webp")) is None
    # a body that is not what the checksum says is refused by the server: nothing half-true is stored
    with pytest.raises(StorageError, match="BadDigest"):
        s3_store.put(original_key("", SHA, "bmp"), data, "image/bmp", {}, sha256="00" * 32)
    assert s3_store.stat(original_key("", SHA, "bmp")) is None
    # above the multipart threshold the checksum is composite: it proves the parts, not the whole
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    s3_store.put(kbig, big, "image/gif", {})
    stored = s3_store.stat(kbig)
    assert stored is not None and stored.size == 6 * 1024 * 1024 and stored.sha256 is None


def test_prove_compares_size_type_and_checksum_without_a_download(s3_store: S3Store, s3_server: SeaweedS3) -> None:
    data = b"\x89PNG proof " * 100
    digest = hashlib.sha256(data).hexdigest()
    key = original_key("", SHA, "png")
    assert prove(s3_store, key, len(data), digest, "image/png").state == "missing"
    s3_store.put(key, data, "image/png", {})
    assert prove(s3_store, key, len(data), digest, "image/png").ok
    assert prove(s3_store, key, len(data) + 1, digest).reason == f"it holds {len(data)} bytes, not the {len(data) + 1} expected"
    assert "served as 'image/png', not 'image/svg+xml'" in prove(s3_store, key, None, digest, "image/svg+xml").reason
    assert prove(s3_store, key, len(data), "ab" * 32).reason.startswith(f"its content hashes to {digest[:16]}…")
    client = s3_server.client()
    client.put_object(Bucket=s3_store.bucket, Key=key, Body=data, ContentType="image/png")  # no checksum
    assert prove(s3_store, key, len(data), digest, "image/png").state == "unproven"
    assert prove(NullStore(s3_store), key, len(data), digest).state == "unproven"  # a dry run asks the real store


def test_local_prove_hashes_the_file_when_asked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, "/a/")
    data = b"GIF89a" + os.urandom(100)
    key = original_key("", SHA, "gif")
    store.put(key, data, "image/gif", {})
    digest = hashlib.sha256(data).hexdigest()
    assert store.stat(key) == Stored(len(data)) and store.stat(original_key("", SHA, "png")) is None
    assert prove(store, key, len(data), digest).ok
    (tmp_path / key).write_bytes(bytes(reversed(data)))  # same size, other bytes
    assert prove(store, key, len(data), digest).state == "different"
    assert prove(store, key, len(data), digest, read_local=False).state == "unproven"  # verify without --deep


def test_s3_put_if_absent_creates_a_free_key_and_leaves_a_taken_one_alone(
    s3_store: S3Store, s3_server: SeaweedS3
) -> None:
    """The run's usual upload is one conditional PUT (no HEAD before it): a free key is written, a taken one is
    left as it is for the caller to prove (HTTP 412), whatever bytes are offered."""
    key = original_key("media/", SHA, "png")
    assert s3_store.put_if_absent(key, b"\x89PNG first", "image/png", {"source-url": "https://example.com/a.png"}) is True
    assert s3_store.get(key) == b"\x89PNG first"
    assert s3_store.put_if_absent(key, b"\x89PNG other bytes", "image/png", {}) is False
    assert s3_store.get(key) == b"\x89PNG first"
    head = s3_server.client().head_object(Bucket=s3_store.bucket, Key=key)
    assert head["ContentType"] == "image/png" and head["Metadata"] == {"source-url": "https://example.com/a.png"}


def test_s3_put_if_absent_to_a_server_that_hangs_up_is_a_transient_storage_error(s3_env: SeaweedS3) -> None:
    """A connection closed before any answer (a server going down mid-request) has no response to read a status
    from: the conditional PUT reports it like any PUT (transient, waited out by the run), not as an internal error."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def hang_up() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        cfg = StorageConfig(backend="s3", bucket="b", endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}")
        with pytest.raises(StorageError) as caught:
            S3Store(cfg, max_attempts=1).put_if_absent(original_key("", SHA, "png"), b"\x89PNG", "image/png", {})
        assert caught.value.transient
    finally:
        stop.set()
        thread.join()
        listener.close()
