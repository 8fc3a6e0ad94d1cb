"""The command line: parse, load the config, run one command from ``archiver.commands``; every ArchiverError
becomes one line on stderr and the exit code its class names (archiver.errors), never a traceback.

Exit codes: 0 done (dead links are reported, not an error); 1 something failed that a re-run may fix;
2 usage, configuration or storage set-up error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from archiver import __version__
from archiver.commands import COMMANDS
from archiver.config import Config, load
from archiver.errors import EXIT_INTERRUPTED, EXIT_USAGE, ArchiverError

DEFAULT_CONFIG = "archiver.toml"
_VALUE_OPTIONS = ("--config",)  # global options that take a value (to find the command's name in argv)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        from archiver.terminal import say

        self.print_usage(sys.stderr)
        say(f"archiver: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _named(argv: Sequence[str]) -> str | None:
    """The command argv names (options before it, ``--config FILE`` included, are skipped)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _common(p: argparse.ArgumentParser, default: object) -> None:
    """Options every command takes, before or after its name (``default`` SUPPRESS after it, so an option given
    before the command is not reset by the command's own parser)."""
    p.add_argument("--config", type=Path, default=default,
                   help=f"TOML config file (default: ./{DEFAULT_CONFIG} if present)")
    p.add_argument("-v", "--verbose", action="store_true", default=default, help="log every request and decision")
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="no progress display; summary and errors only")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """With ``argv``, only the command it names imports its module (``dedupe`` brings SciPy and numba, which a
    plain ``run`` does not need); without, or when it names none, every command's arguments are defined."""
    named = _named(sys.argv[1:] if argv is None else argv)
    parser = _Parser(prog="archiver", description="Archive the images your articles reference.")
    parser.add_argument("--version", action="version", version=f"archiver {__version__}")
    _common(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help)
        _common(p, argparse.SUPPRESS)
        if named not in COMMANDS or named == name:
            cmd.load().add_arguments(p)
    return parser


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = Path(DEFAULT_CONFIG)
    return load(path)


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """The "archiver" logger writes plain lines to stderr for this command; its previous state comes back
    afterwards, so a program (or test) calling ``main`` in-process keeps its own logging."""
    from archiver.terminal import ProgressAwareHandler

    handler = ProgressAwareHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("archiver")
    saved = (list(root.handlers), root.propagate, root.level)
    root.handlers = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING)
    try:
        yield
    finally:
        root.handlers, root.propagate = saved[0], saved[1]
        root.setLevel(saved[2])


@contextlib.contextmanager
def _never_unprintable() -> Iterator[None]:
    """stdout, for this command, escapes what its encoding cannot write (``\\udcxx``) instead of raising: file names
    are printed escaped (terminal.shown_path) on purpose; this is the net under that, as stderr always has."""
    stream = sys.stdout
    saved = getattr(stream, "errors", None)
    if saved != "strict" or not hasattr(stream, "reconfigure"):
        yield
        return
    stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            stream.reconfigure(errors=saved)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from archiver.terminal import say  # with the log handler: what the command prints goes through it

    with _logging(args), _never_unprintable():
        try:
            return int(COMMANDS[args.command].load().command(args, _config(args)))
        except ArchiverError as exc:
            say(f"archiver: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            say("archiver: interrupted; the manifest keeps what was done, run again to finish", file=sys.stderr)
            return EXIT_INTERRUPTED
