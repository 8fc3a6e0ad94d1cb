"""Tests of near-duplicates."""
