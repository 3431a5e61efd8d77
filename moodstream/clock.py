"""Wall-clock time as the contract carries it."""

from __future__ import annotations

import time


def now_ms() -> float:
    """Unix time in milliseconds (the `*_ms` timestamps of records and messages)."""
    return time.time() * 1000.0
