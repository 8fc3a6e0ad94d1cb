"""``[storage] key_template``: what each placeholder gives, what is refused at start-up (exit 2 naming the file and
the key), and the thumbnail keys derived from an original's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.storage.keys import original_key, rendition_key
from archiver.storage.template import (
    KeyParts,
    KeyTemplate,
    TemplateError,
    rendition_of,
    source_host,
    source_name,
)

SHA = hashlib.sha256(b"x").hexdigest()
DEC_4_2026 = 1796385600.0  # 2026-12-04 12:00 UTC


@pytest.mark.parametrize(("url", "name"), [
    ("https://cdn.test/a/Caf%C3%A9%20Photo.JPG", "cafe-photo"),
    ("https://cdn.test/%E9t%E9.png", "ete"),  # Latin-1 bytes, not UTF-8
    ("https://cdn.test/%FF%FE.png", "y"),  # ÿ folds to y, þ has no ASCII form
    ("https://cdn.test/", "image"),
    ("https://cdn.test/....jpg", "image"),
    ("https://cdn.test/..%2F..%2Fetc%2Fpasswd", "etc-passwd"),
    ("https://cdn.test/%00%0a.gif", "image"),
    ("https://cdn.test/" + "ab" * 100 + ".jpg", "ab" * 32),
    ("https://cdn.test/photo.tar.gz", "photo.tar"),
    ("https://cdn.test/日本語.jpg", "image"),
    ("file:///site/source/_posts/hello/Cover%20Image.png", "cover-image"),
    ("https://cdn.test/img?id=7", "img"),
    ("https://cdn.test/CON.jpg", "con_"),  # names Windows reserves, with any extension
    ("https://cdn.test/aux.tar.gz", "aux_.tar"),
    ("https://cdn.test/com1.png", "com1_"),
    ("https://cdn.test/console.png", "console"),
])
def test_name_is_a_safe_bounded_never_empty_segment(url: str, name: str) -> None:
    got = source_name(url)
    assert got == name
    assert 1 <= len(got) <= 64 and got not in (".", "..")


@pytest.mark.parametrize(("url", "host"), [
    ("https://CDN.Example.com./a.jpg", "cdn.example.com"),
    ("https://bücher.example/a.jpg", "xn--bcher-kva.example"),
    ("http://127.0.0.1:8080/a.jpg", "127.0.0.1"),
    ("http://[::1]/a.jpg", "1"),
    ("file:///x/a.jpg", "local"),
    ("", "unknown"),
])
def test_host(url: str, host: str) -> None:
    assert source_host(url) == host


def test_render_every_placeholder_and_widen() -> None:
    t = KeyTemplate.parse("{host}/{yyyy}/{mm}/{dd}/{name}-{sha8}.{ext}")
    parts = KeyParts(SHA, "jpg", "https://img.test/p/Sunset.JPG", DEC_4_2026)
    assert t.render(parts) == f"img.test/2026/12/04/sunset-{SHA[:8]}.jpg"
    assert t.widths() == (8, 16, 64)
    assert t.render(parts, 16) == f"img.test/2026/12/04/sunset-{SHA[:16]}.jpg"
    assert KeyTemplate.parse("{sha256}.{ext}").widths() == (64,)
    assert KeyTemplate.parse("{sha16}/{sha256}.{ext}").render(parts) == f"{SHA[:16]}/{SHA}.{SHA and 'jpg'}"


@pytest.mark.parametrize(("template", "why"), [
    ("{yyyy}/{name}.{ext}", "must contain {sha256}"),
    ("{name}-{sha7}.{ext}", "unknown placeholder {sha7}"),
    ("{name} {sha8}.{ext}", "' ' is not safe"),
    ("{name}-{sha8}?.{ext}", "'?' is not safe"),
    ("../{sha256}.{ext}", "'..'"),
    ("/{sha256}.{ext}", "leading or trailing '/'"),
    ("a//{sha256}", "empty"),
    ("{sha256}}.{ext}", "'{' or '}'"),
    ("{{sha256}.{ext}", "'{' or '}'"),
])
def test_bad_templates_are_refused(template: str, why: str) -> None:
    with pytest.raises(TemplateError, match=None) as err:
        KeyTemplate.parse(template)
    assert why in str(err.value)


def _config(tmp_path: Path, storage: str) -> Path:
    cfg = tmp_path / "archiver.toml"
    (tmp_path / "site").mkdir(exist_ok=True)
    cfg.write_text(f'[articles]\nroot = "site"\n[storage]\npath = "archive"\n{storage}\n', encoding="utf-8")
    return cfg


@pytest.mark.parametrize(("storage", "says"), [
    ('key_template = "{yyyy}/{mm}/{name}.{ext}"', "must contain {sha256}, {sha16} or {sha8}"),
    ('key_template = "{year}/{sha8}.{ext}"', "unknown placeholder {year}"),
    ('key_template = "{name}%20{sha8}.{ext}"', "'%' is not safe"),
    ('key_template = "{host}{name}{sha256}.{ext}"', "file name longer than 255 bytes"),
    ('prefix = "' + "p/" * 350 + '"\nkey_template = "{host}/{name}/{sha256}.{ext}"', "at most 1024"),
])
def test_a_bad_template_stops_the_run_at_start_up(tmp_path: Path, storage: str, says: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path, storage)
    assert main(["run", "--config", str(cfg), "-q"]) == 2
    err = capsys.readouterr().err
    assert "archiver.toml" in err and "[storage] key_template" in err and says in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "archive").exists()


def test_thumbnails_sit_beside_their_original_in_both_layouts() -> None:
    assert rendition_of(original_key("m/", SHA, "jpg"), "jpg", 320, "webp") == rendition_key("m/", SHA, 320, "webp")
    assert rendition_of(f"2026/12/sunset-{SHA[:8]}.jpg", "jpg", 640, "avif") == f"2026/12/sunset-{SHA[:8]}-640w.avif"
    assert rendition_of(f"x/{SHA}", "png", 320, "webp") == f"x/{SHA}-320w.webp"
