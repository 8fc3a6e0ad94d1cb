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
