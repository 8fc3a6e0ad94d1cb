"""The CLI's commands, one module each: ``add_arguments(parser)`` and ``command(args, cfg) -> exit code``.

``COMMANDS`` is the registry ``archiver.cli`` builds its parser from. A command's module is imported only when
that command runs (or when every command's arguments must be shown), so `archiver run` never loads the dedupe
stack (SciPy, numba) just to define dedupe's arguments. A new command is a new module here and one row below.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    help: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("run", "archiver.commands.run", "archive the images of articles and rewrite the articles"),
    Command("status", "archiver.commands.status", "counts and recent failures from the manifest"),
    Command("verify", "archiver.commands.verify",
            "check that every archived object exists (and with --deep, is intact)"),
    Command("restore", "archiver.commands.restore", "put the original URLs back into articles"),
    Command("dedupe", "archiver.commands.dedupe",
            "group exact and near-duplicate images, report them, optionally rewrite to a canonical copy"),
    Command("export", "archiver.commands.export",
            "every archived image with its URLs, renditions, size and a tiny placeholder, as JSON or CSV for a site"),
    Command("report", "archiver.commands.report",
            "an HTML page and a CSV of every image not archived, by host and reason, with the articles using it"),
)}
