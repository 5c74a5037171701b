"""Mutants of hole punching's invalidate lock (kernel/invalidate.py)."""

from __future__ import annotations

from pagemap.check.mutants.base import Mutant
from pagemap.kernel.invalidate import InvalidateLock


def _down_read_ignores_writer(self: InvalidateLock) -> None:
    # BUG: a reader counts itself in whatever the word says, so a fault
    # adds a page while a punch holds the lock exclusive (ea3d7209ca01).
    if self.enabled:
        self.word.fetch_add(1)


PUNCH_MUTANTS = (
    Mutant(
        "invalidate-read-ignores-writer",
        "a page is added to the cache while a hole punch holds the invalidate lock",
        "punch-fault",
        {"down_read": _down_read_ignores_writer},
        budget=500,
        target=InvalidateLock,
    ),
)
