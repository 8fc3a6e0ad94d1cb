"""Peak resident memory of this process for the benchmarks: VmHWM, resettable between steps (Linux)."""

from __future__ import annotations

import contextlib
from pathlib import Path


def reset_peak() -> None:
    """Start a new peak (writing 5 to clear_refs resets VmHWM); a no-op where the kernel refuses."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
