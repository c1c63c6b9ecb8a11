"""The ledger in a list: for tests, and for `ledger.backend: memory` (kept in the process only)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from .base import Row


class MemoryLedger:
    """A `LedgerBackend` holding its rows in memory; they end with the process."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def write(self, rows: Sequence[Row]) -> None:
        with self._lock:
            for row in rows:
                self.rows.append(replace(row, id=self._next_id))
                self._next_id += 1

    def prune(self, before: float) -> int:
        with self._lock:
            kept = [r for r in self.rows if r.ts >= before]
            removed = len(self.rows) - len(kept)
            self.rows = kept
            return removed

    def since(self, start: float, end: float | None = None) -> list[Row]:
        with self._lock:
            found = [r for r in self.rows if r.ts >= start and (end is None or r.ts < end)]
        light = (replace(r, prompt=None, answer=None, decision="") for r in found)
        return sorted(light, key=lambda r: (r.ts, r.id or 0))

    def tail(self, count: int) -> list[Row]:
        with self._lock:
            return self.rows[-count:] if count > 0 else []

    def after(self, row_id: int, limit: int = 1000) -> list[Row]:
        with self._lock:
            return [r for r in self.rows if (r.id or 0) > row_id][:limit]

    def close(self) -> None:
        return None
