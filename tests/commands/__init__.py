"""Tests of the commands beyond run."""
