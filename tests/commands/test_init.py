"""`archiver init`: a commented archiver.toml fitted to a Hexo, Hugo or Jekyll site (articles root, where a local
archive is published from, its public URL, the site's URL), that loads as a valid config, never over an existing
file; and a first real run with it puts the archive where the generator publishes it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.config import load
from tests.support.images import make_jpeg
from tests.support.origin import Server


def _hexo(root: Path) -> None:
    (root / "source" / "_posts").mkdir(parents=True)
    (root / "scaffolds").mkdir()
    (root / "_config.yml").write_text("title: Blog\nurl: https://example.com/blog\nroot: /blog/\n", encoding="utf-8")
    (root / "package.json").write_text('{"dependencies": {"hexo": "^7.0.0"}}', encoding="utf-8")


def _hugo(root: Path) -> None:
    (root / "content" / "posts").mkdir(parents=True)
    (root / "hugo.toml").write_text('baseURL = "https://example.org/"\ntitle = "x"\n', encoding="utf-8")


def _jekyll(root: Path) -> None:
    (root / "_posts").mkdir(parents=True)
    (root / "_config.yml").write_text('url: "https://me.github.io"\nbaseurl: "/notes"\n', encoding="utf-8")
    (root / "Gemfile").write_text('gem "jekyll"\n', encoding="utf-8")


@pytest.mark.parametrize(("make", "kind", "articles", "archive", "public", "base"), [
    # Hexo under /blog/: a full URL, since {% img %} would prepend root to /blog/archive/… once more
    (_hexo, "hexo", "source/_posts", "source/archive", "https://example.com/blog/archive/", "https://example.com/blog/"),
    (_hugo, "hugo", "content", "static/archive", "/archive/", "https://example.org/"),
    (_jekyll, "jekyll", "_posts", "archive", "/notes/archive/", "https://me.github.io/notes/"),
])
def test_init_detects_the_site_and_writes_a_config_that_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, kind: str, articles: str, archive: str, public: str,
    base: str,
) -> None:
    make(tmp_path)
    assert main(["init", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert f"for a {kind} site" in said
    assert ("exclude: [archiver.toml, report]" in said) == (kind == "jekyll")
    written = tmp_path / "archiver.toml"
    text = written.read_text(encoding="utf-8")
    assert text.startswith(f"# archiver configuration for this {kind} site")
    cfg = load(written)
    assert (cfg.articles.root, cfg.storage.path, cfg.storage.public_base_url, cfg.articles.base_url) == (
        articles, archive, public, base)
    assert cfg.storage.backend == "local" and cfg.resolve_path(cfg.storage.path) == tmp_path / archive

    # never over an existing file, even one of its own
    written.write_text("# mine\n", encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 2
    assert "archiver.toml exists: not overwritten" in capsys.readouterr().err
    assert written.read_text(encoding="utf-8") == "# mine\n"


def test_init_without_a_recognisable_site_asks_for_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path)]) == 2
    assert "--site hexo|hugo|jekyll" in capsys.readouterr().err
    assert not (tmp_path / "archiver.toml").exists()
    assert main(["init", str(tmp_path), "--site", "hugo"]) == 0
    cfg = load(tmp_path / "archiver.toml")
    assert (cfg.articles.root, cfg.storage.path, cfg.articles.base_url) == ("content", "static/archive", "")


def test_init_does_not_read_a_broken_config_it_is_asked_to_write_beside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _hugo(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "archiver.toml").write_text("[nonsense\n", encoding="utf-8")
    assert main(["init"]) == 2
    assert "archiver.toml exists: not overwritten" in capsys.readouterr().err
    other = tmp_path / "conf" / "site.toml"
    other.parent.mkdir()
    assert main(["init", "--config", str(other)]) == 0
    assert load(other).storage.path == "static/archive"


def test_a_first_run_with_the_written_config_archives_into_the_published_folder(
    tmp_path: Path, origin: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hugo(tmp_path)
    body = make_jpeg(120, 80, seed=9)
    origin.add("/pic.jpg", body, "image/jpeg")
    post = tmp_path / "content" / "posts" / "hello.md"
    post.write_text("---\ntitle: hi\n---\n![pic](http://img.example.test/pic.jpg)\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    cfg = tmp_path / "archiver.toml"
    text = cfg.read_text(encoding="utf-8")  # the test's origin, reached through connect_to
    cfg.write_text(text.replace("\n[fetch]\n", f'\n[fetch]\nallow_networks = ["127.0.0.1/32"]\n'
                                f'connect_to = {{ "img.example.test" = "127.0.0.1:{origin.port}" }}\n', 1),
                   encoding="utf-8")
    assert main(["run", "-q"]) == 0
    stored = list((tmp_path / "static" / "archive").rglob("*.jpg"))
    assert [p.read_bytes() for p in stored] == [body]
    key = stored[0].relative_to(tmp_path / "static" / "archive").as_posix()
    assert f"![pic](/archive/{key})" in post.read_text(encoding="utf-8")
    # a real Hugo build publishes the archive where the rewritten article points (required, like chromium)
    hugo = shutil.which("hugo")
    assert hugo, "hugo is not installed: apt-get install -y hugo (CI installs it)"
    (tmp_path / "layouts" / "_default").mkdir(parents=True)
    (tmp_path / "layouts" / "_default" / "single.html").write_text("{{ .Content }}\n", encoding="utf-8")
    done = subprocess.run([hugo, "--quiet", "-d", str(tmp_path / "public")], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "public" / "posts" / "hello" / "index.html").read_text(encoding="utf-8")
    assert f'src="/archive/{key}"' in page
    assert (tmp_path / "public" / "archive" / key).read_bytes() == body


@pytest.mark.parametrize(("layout", "base", "public", "found_in"), [
    ({"config/_default/hugo.toml": 'baseURL = "https://ex.org/sub/"\n'}, "https://ex.org/sub/", "/sub/archive/",
     "config/_default/hugo.toml"),
    ({"config/_default/config.yaml": "baseURL: https://ex.org/\ntitle: x\n"}, "https://ex.org/", "/archive/",
     "config/_default/config.yaml"),
    # `hugo` builds for production: config/production/ overrides _default, and keys are read without case
    ({"config/_default/hugo.toml": 'baseurl = "http://localhost:1313/"\n',
      "config/production/hugo.toml": 'baseURL = "https://ex.org/docs/"\n', "config/_default/params.toml": "a = 1\n"},
     "https://ex.org/docs/", "/docs/archive/", "config/production/hugo.toml"),
])
def test_init_reads_hugos_configuration_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: dict[str, str], base: str, public: str, found_in: str
) -> None:
    """A Hugo site configured in config/_default/ (many themes' example sites) is detected and its baseURL read:
    a site served under /sub/ gets public_base_url /sub/archive/, where its built pages find the images."""
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 0
    assert "for a hugo site" in capsys.readouterr().out
    written = (tmp_path / "archiver.toml").read_text(encoding="utf-8")
    assert f"# from {found_in}:" in written
    cfg = load(tmp_path / "archiver.toml")
    assert (cfg.articles.root, cfg.articles.base_url, cfg.storage.public_base_url) == ("content", base, public)


def _hexo_at_root(root: Path) -> None:
    _hexo(root)
    (root / "_config.yml").write_text("title: Blog\nurl: https://example.com\nroot: /\n", encoding="utf-8")


def _hugo_with_static(root: Path) -> None:
    _hugo(root)
    (root / "static").mkdir()


def _jekyll_at_root(root: Path) -> None:
    _jekyll(root)
    (root / "_config.yml").write_text('url: "https://me.github.io"\n', encoding="utf-8")


@pytest.mark.parametrize(("make", "site_root"), [
    (_hexo_at_root, "source"), (_hugo_with_static, "static"), (_jekyll_at_root, "."),
    (_hugo, ""), (_hexo, ""), (_jekyll, ""),  # no static/ yet; served under /blog/ or /notes/: left commented
])
def test_init_writes_site_root_and_suggests_the_cookie_file_in_the_unpublished_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, site_root: str
) -> None:
    make(tmp_path)
    assert main(["init", str(tmp_path)]) == 0
    text = (tmp_path / "archiver.toml").read_text(encoding="utf-8")
    cfg = load(tmp_path / "archiver.toml")
    expected = str((tmp_path / site_root).absolute()) if site_root else ""
    assert cfg.articles.site_root == expected
    assert "site_root = " in text  # written, commented out when it cannot be used as it is
    assert '# cookies = ".archiver/cookies.txt"' in text and cfg.fetch.cookies == ""
    assert "\ncookies" not in text  # never an active cookie file, never one at the published root


def test_a_first_run_reads_the_sites_own_images_from_disk(
    tmp_path: Path, origin: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With what init wrote, /images/x.png in an article is the file static/images/x.png: no HTTP, even with the
    site not online yet."""
    _hugo_with_static(tmp_path)
    (tmp_path / "static" / "images").mkdir()
    (tmp_path / "static" / "images" / "x.jpg").write_bytes(body := make_jpeg(150, 100, seed=11))
    post = tmp_path / "content" / "posts" / "hello.md"
    post.write_text("---\ntitle: hi\n---\n![x](/images/x.jpg)\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert main(["run"]) == 0
    out = capsys.readouterr().out
    assert "1 archived" in out and "0 dead" in out and origin.total_hits() == 0, out
    stored = list((tmp_path / "static" / "archive").rglob("*.jpg"))
    assert [p.read_bytes() for p in stored] == [body]
    assert "![x](/archive/" in post.read_text(encoding="utf-8")
