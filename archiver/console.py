"""The ``archiver`` command's entry point: the command line (``archiver.cli``) is imported inside ``main``, so a Ctrl-C
while its modules load is one line and exit 130, like a Ctrl-C at any later moment, not a traceback."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from archiver.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("archiver: interrupted\n")
        return 130  # archiver.errors.EXIT_INTERRUPTED, not imported: this module loads nothing else
    return cli()
