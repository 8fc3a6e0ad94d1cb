"""Tests of archiver run end to end."""
