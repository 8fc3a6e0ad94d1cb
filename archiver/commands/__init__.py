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
    examples: tuple[str, ...] = ()  # shown at the end of the command's --help: "command line  # what it does"

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("init", "archiver.commands.init",
            "write a commented archiver.toml fitted to the Hexo, Hugo or Jekyll site in this folder", (
                "archiver init                     # detect the site here and write ./archiver.toml",
                "archiver init --site hugo         # a Hugo site: articles in content/, the archive in static/",
            )),
    Command("run", "archiver.commands.run", "archive the images of articles and rewrite the articles", (
        "archiver run --dry-run            # fetch and check everything, print the diff, write nothing",
        "archiver run --watch              # then archive new and changed articles as they are written",
    )),
    Command("status", "archiver.commands.status", "counts and recent failures from the manifest", (
        "archiver status --config site/archiver.toml",
    )),
    Command("verify", "archiver.commands.verify",
            "check that every archived object exists (and with --deep, is intact)", (
                "archiver verify --deep            # read every object and check its hash",
                "archiver verify --repair          # re-create what is missing or corrupt",
            )),
    Command("restore", "archiver.commands.restore", "put the original URLs back into articles", (
        "archiver restore --dry-run        # show what would be put back",
        "archiver restore source/_posts/2021-10-31-launch.md",
    )),
    Command("dedupe", "archiver.commands.dedupe",
            "group exact and near-duplicate images, report them, optionally rewrite to a canonical copy", (
                "archiver dedupe                   # write report/dedupe.html",
                "archiver dedupe --apply           # point articles at each group's canonical copy (--undo reverts)",
            )),
    Command("report", "archiver.commands.report",
            "an HTML page and a CSV of every image not archived, by host and reason, with the articles using it", (
                "archiver report                   # report/failures.html and report/failures.csv",
                "archiver report source/_posts --output /tmp/broken-images.html",
            )),
    Command("rekey", "archiver.commands.rekey",
            "move stored images to the keys [storage] key_template gives now, re-point the articles, delete the old", (
                "archiver rekey --dry-run          # list what would move and how many articles would change",
                "archiver rekey                    # copy, re-point, record, delete; a killed rekey is finished by the next",
            )),
    Command("export", "archiver.commands.export",
            "every archived image with its URLs, renditions, size and a tiny placeholder, as JSON or CSV for a site", (
                "archiver export --key public data/images.json  # Hugo: site.Data.images, keyed by the URLs the articles now hold",
                "archiver export images.csv  # one row per source URL (the default key)",
            )),
    Command("migrate-manifest", "archiver.commands.migrate_manifest",
            "copy the manifest into PostgreSQL (or back into a SQLite file), verified by counts and checksums", (
                "archiver migrate-manifest --to postgresql://archiver@db.internal/archive",
                "archiver migrate-manifest --from postgresql://archiver@db.internal/archive --to manifest.sqlite3",
            )),
    Command("gc", "archiver.commands.gc",
            "delete stored images that no article and no manifest record uses any more (after deleted articles or "
            "dedupe --apply)", (
                "archiver gc --dry-run             # list what would be deleted, with sizes; change nothing",
                "archiver gc --grace 0 --max-delete 5000   # delete now what nothing uses, up to 5000 objects",
            )),
)}
