"""The command line: parse, load the config, run one command from ``archiver.commands``; every ArchiverError
becomes one line on stderr and the exit code its class names (archiver.errors), never a traceback.

Exit codes: 0 done (dead links are reported, not an error); 1 something failed that a re-run may fix;
2 usage, configuration or storage set-up error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from archiver import __version__
from archiver.commands import COMMANDS
from archiver.config import Config, load
from archiver.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, ArchiverError

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
        epilog = "examples:\n" + "\n".join(f"  {line}" for line in cmd.examples) if cmd.examples else None
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, argparse.SUPPRESS)
        if named not in COMMANDS or named == name:
            cmd.load().add_arguments(p)
    return parser


def _config(args: argparse.Namespace) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = Path(DEFAULT_CONFIG)
    if path is None and (args.command != "run" or getattr(args, "paths", None)):  # (run without PATH: its error says)
        above = next((d / DEFAULT_CONFIG for d in Path.cwd().parents if (d / DEFAULT_CONFIG).is_file()), None)
        if above is not None:  # the defaults would make a new manifest here, with none of that config's settings
            logging.getLogger("archiver").warning(
                "no %s in this folder, so the defaults are used; %s is in a folder above: run from there, or pass "
                "--config %s", DEFAULT_CONFIG, above, above)
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


def _tolerant_streams() -> None:
    """Text the terminal's encoding cannot show (a CJK file name under a Latin-1 locale) is printed escaped,
    never raised as UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(errors="backslashreplace")


def _say(line: str) -> None:
    from archiver.terminal import say  # secrets masked, control characters escaped

    with contextlib.suppress(Exception):  # stderr itself closed or full: nothing more can be said
        say(line, file=sys.stderr)


def _drop_stdout() -> None:
    """The reader of stdout went away (`archiver status | head -1`): send what is left nowhere, so the
    interpreter's final flush does not complain either."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        _tolerant_streams()
        parser = build_parser(argv)  # imports the command's module: most of a short command's time
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # before any command started: nothing was done
        _say("archiver: interrupted")
        return EXIT_INTERRUPTED
    with _logging(args):
        try:
            module = COMMANDS[args.command].load()
            cfg = _config(args) if getattr(module, "NEEDS_CONFIG", True) else Config()  # init writes one
            return int(module.command(args, cfg))
        except ArchiverError as exc:
            _say(f"archiver: {exc}")
            return exc.exit_code
        except KeyboardInterrupt:
            _say("archiver: interrupted; the manifest keeps what was done, run again to finish")
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            _drop_stdout()
            return EXIT_FAILED
        except Exception as exc:  # a bug, or a fault no stage translated: one line (the traceback with -v), exit 1
            if args.verbose:
                traceback.print_exc()
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
                _say(f"archiver: cannot write: {exc.strerror}")  # stdout on a full disk, ...
            else:
                from archiver.redaction import redact_text  # here: importing the CLI stays light

                _say(f"archiver: internal error: {type(exc).__name__}: {redact_text(str(exc))}"
                     f"{'' if args.verbose else ' (run with -v for the traceback)'}")
            return EXIT_FAILED
