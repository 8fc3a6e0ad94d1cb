"""Tests of finding references."""
