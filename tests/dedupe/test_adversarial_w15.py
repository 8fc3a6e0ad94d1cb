"""Adversarial review (w15) of the fifth round's speed-ups of ``archiver dedupe``: the report's JSON by orjson and
streamed, Signature.from_columns, the page paths of (key, url), gc_paused's freeze, HashIndex's threaded build."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from archiver.dedupe import index
from archiver.dedupe.index import HashIndex
from archiver.dedupe.index_numpy import _Layout


def test_a_threaded_index_build_uses_no_more_threads_than_its_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: from _THREADED_BUILD distinct values, ``HashIndex.build`` made its chunks' layouts on
    min(chunks, os.cpu_count()) threads whatever ``workers`` asked for (1: one thread), where its pairs and queries
    honour it."""
    monkeypatch.setattr(index, "_THREADED_BUILD", 1)  # the threaded path at a test's size
    real = _Layout.build
    threads: set[int] = set()

    def build(values: np.ndarray, chunk: object) -> _Layout:
        threads.add(threading.get_ident())
        time.sleep(0.05)  # each layout takes a while, as at millions of values: a pool would start its threads
        return real(values, chunk)

    hashes = np.random.default_rng(15).integers(0, 2**63, 3000, dtype=np.int64).astype(np.uint64)
    expected = HashIndex.build(hashes, 10)  # (threaded, on as many threads as there are cores and chunks)
    monkeypatch.setattr(_Layout, "build", staticmethod(build))
    one = HashIndex.build(hashes, 10, workers=1)
    assert len(one.layouts) >= 2 and len(threads) == 1
    for a, b in zip(expected.layouts, one.layouts, strict=True):
        assert np.array_equal(a.order, b.order) and np.array_equal(a.offsets, b.offsets)
