"""Tests of article files: walking, decoding, rewriting, span mapping."""
