"""Placeholder: being written."""

from __future__ import annotations

import argparse

from archiver.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def command(args: argparse.Namespace, cfg: Config) -> int:
    print("not implemented yet")
    return 2
