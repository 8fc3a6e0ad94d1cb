"""`python -m archiver` entry point."""

from archiver.cli import main

raise SystemExit(main())
