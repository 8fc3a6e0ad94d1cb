"""`python -m archiver` entry point."""

from archiver.console import main

raise SystemExit(main())
