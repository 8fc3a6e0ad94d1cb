"""What a hostile server, document or folder controls never drives the terminal: reason phrases, Location headers,
URLs and file names holding ESC sequences, C1 controls or bidi overrides are printed escaped by the summary, the
``-v`` log, ``status`` and ``restore``, and the dedupe report escapes them too (archiver.terminal.printable)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.dedupe.report import GroupRow, MemberRow, write_report
from archiver.terminal import StatusLine, printable, say
from tests.support.hostile import HostileServer

CLEAR_SCREEN = "\x1b[2J"
SET_TITLE = "\x1b]0;pwned\x07"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\udc9b")  # what must never reach the terminal


def _reply(status: str, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 {status}\r\n{head}Content-Length: 0\r\nConnection: close\r\n\r\n".encode("utf-8", "surrogateescape")


def _assert_escaped(text: str) -> None:
    for ch in RAW:
        assert ch not in text, (ch, text[-3000:])


def test_a_hostile_server_cannot_drive_the_terminal(
    tmp_path: Path, hostile: HostileServer, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = f"{CLEAR_SCREEN}{SET_TITLE}\udc9b31m\u202e Boom"  # \udc9b: the lone byte 0x9b (an 8-bit CSI)
    hostile.answer("/reason.jpg", _reply(f"500 {reason}"))
    hostile.answer("/gone.jpg", _reply(f"404 {reason}"))
    hostile.answer("/to-script.jpg", _reply("302 Found", f"Location: javascript:{CLEAR_SCREEN}{SET_TITLE}"))
    hostile.answer("/to-host.jpg", _reply("302 Found", f"Location: http://evil{SET_TITLE}.test/x.jpg"))
    hostile.answer("/to-private.jpg", _reply("302 Found", f"Location: http://127.0.0.2/{CLEAR_SCREEN}{SET_TITLE}.jpg"))
    site = tmp_path / "site"
    site.mkdir()
    refs = "".join(f"![{p}](http://evil.test/{p}.jpg)\n" for p in ("reason", "gone", "to-script", "to-host", "to-private"))
    refs += f"![doc](javascript:{CLEAR_SCREEN}{SET_TITLE})\n"
    (site / f"post{CLEAR_SCREEN}\u202egpj.md").write_text(refs, encoding="utf-8")
    cfg = tmp_path / "archiver.toml"
    cfg.write_text(f'[fetch]\nallow_networks = ["127.0.0.1/32"]\nconnect_to = {{ "evil.test" = "127.0.0.1:{hostile.port}" }}\n'
                   f'retries = 0\n[storage]\npath = "archive"\n', encoding="utf-8")
    assert main(["run", str(site), "--config", str(cfg), "-v"]) == 1  # the 500 failed
    run = capsys.readouterr()
    assert main(["status", "--config", str(cfg)]) == 0
    status = capsys.readouterr()
    for text in (run.out, run.err, status.out, status.err):
        _assert_escaped(text)
    summary = run.out
    assert "500 \\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202e Boom" in summary
    assert "404 \\x1b[2J" in summary and "post\\x1b[2J\\u202egpj.md" in summary
    assert "redirect to javascript:\\x1b[2J" in summary  # the Location as sent, escaped
    assert "redirect to http://127.0.0.2/%1B%5B2J%1B%5D0;pwned%07.jpg" in summary  # resolved: percent-encoded
    assert "500 \\x1b[2J" in status.out and "404 \\x1b[2J" in status.out


def test_status_line_and_say_escape_everything_they_print() -> None:
    stream = io.StringIO()
    line = StatusLine(lambda: f"urls 1/2 {SET_TITLE}", stream, enabled=True)
    line.draw()
    say(f"a\nb{CLEAR_SCREEN}", file=stream)
    assert stream.getvalue() == "urls 1/2 \\x1b]0;pwned\\x07\na\\nb\\x1b[2J\n"


@pytest.mark.parametrize(("text", "shown"), [
    ("plain text, tabs\tand all 100 % ASCII", "plain text, tabs\\tand all 100 % ASCII"),
    ("café 東京 🙂 \u200d zero-width joiner stays", "café 東京 🙂 \u200d zero-width joiner stays"),
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
    ("\x9b31m \x85 \x7f \x00", "\\x9b31m \\x85 \\x7f \\x00"),
    ("abc\u202edcba \u2066x\u2069 \u200f \u061c", "abc\\u202edcba \\u2066x\\u2069 \\u200f \\u061c"),
    ("line\u2028sep\rcr", "line\\u2028sep\\rcr"),
    ("bad byte \udcff", "bad byte \\xff"),
])  # fmt: skip
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_printable_lines_keeps_the_line_structure_only() -> None:
    assert printable("a\tb\r\nc\rd\n\x1b[2J", lines=True) == "a\tb\r\nc\\rd\n\\x1b[2J"


def test_the_dedupe_report_escapes_what_it_shows(tmp_path: Path) -> None:
    evil = f"post{CLEAR_SCREEN}\u202egpj.md\udcff"
    member = MemberRow("a" * 64, "http://x/a.jpg", "a.jpg", "http://x/t.webp", "t.webp", 10, 10, "JPEG", 100, True,
                       source_urls=(f"http://evil.test/{SET_TITLE}.jpg",), articles=(evil,))
    files = write_report([GroupRow("exact", (member,))], tmp_path / "r.html", tmp_path / "r.json", {})
    for path in (files.json, *files.data_dir.iterdir()):
        text = path.read_bytes().decode("utf-8")  # encodable: the lone surrogate is an escape
        _assert_escaped(text)
    data = json.loads(files.json.read_text(encoding="utf-8"))
    assert data["groups"][0]["members"][0]["articles"] == [evil]  # the data itself is exact
    assert "function shown(text)" in files.html.read_text(encoding="utf-8")  # and the page escapes what it shows
