"""LRU: the page unused for longest leaves first.

FIFO's single OrderedDict, least recently used first, where a use moves the
page to the end.  Callers hold the kernel's reclaim lock (see base.py).
"""

from __future__ import annotations

from pagemap.kernel.policy.base import Key
from pagemap.kernel.policy.fifo import FIFO


class LRU(FIFO):
    __slots__ = ()

    name = "lru"

    def referenced(self, key: Key) -> None:
        # try costs nothing when nothing is raised (the hit path); suppress() would.
        try:  # noqa: SIM105
            self._q.move_to_end(key)
        except KeyError:
            pass  # in flight, or already gone: see base.py

    def lists(self) -> dict[str, list[tuple[Key, int]]]:
        return {"lru": [(k, 0) for k in self._q]}
