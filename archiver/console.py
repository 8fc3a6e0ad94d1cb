"""The ``archiver`` command's entry point: the command line (``archiver.cli``) is imported inside ``main``, so a Ctrl-C
while its modules load is one line and exit 130, like a Ctrl-C at any later moment, not a traceback. Once the command
has returned, a Ctrl-C ends the process as the signal does (no handler left to raise KeyboardInterrupt in whatever
Python code the interpreter's exit runs: a module lock's callback printed "Exception ignored ... KeyboardInterrupt")."""

from __future__ import annotations

import signal
import sys


def main() -> int:
    try:
        from archiver.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("archiver: interrupted\n")
        return 130  # archiver.errors.EXIT_INTERRUPTED, not imported: this module loads nothing else
    try:
        return cli()
    finally:  # the command is done (its answer given): a Ctrl-C from now on ends the process, silently
        signal.signal(signal.SIGINT, signal.SIG_DFL)
