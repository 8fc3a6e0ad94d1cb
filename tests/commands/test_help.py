"""Every command's --help ends with one or two examples of it."""

from __future__ import annotations

import pytest

from archiver.cli import main
from archiver.commands import COMMANDS


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_examples(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    examples = out.split("\nexamples:\n", 1)[1].splitlines()
    assert 1 <= len(examples) <= 2 and all(line.startswith(f"  archiver {name}") for line in examples), out


def test_export_help_gives_the_commands_the_readme_recommends(capsys: pytest.CaptureFixture[str]) -> None:
    """The README recommends `--key public` for a data file of a site the archiver rewrote: --help says the same."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exports for downstream sites", 1)[1].split("\n## ", 1)[0]
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    examples = capsys.readouterr().out.split("\nexamples:\n", 1)[1].splitlines()
    for line in examples:
        command, _, comment = line.strip().partition("#")
        assert " ".join(command.split()) in " ".join(section.split()), line
        if "data/" in command:  # a data file a theme looks images up in: keyed as the rewritten articles hold them
            assert "--key public" in command and "source URL" not in comment, line
