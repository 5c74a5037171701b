"""FIFO: pages leave in the order they came in; use changes nothing.  A
victim the kernel could not free goes to the back.

One OrderedDict, oldest first.  Callers hold the kernel's reclaim lock (see
base.py); every call is O(1) but `victims`, which walks past the keys it
may not evict (left exactly where they are).
"""

from __future__ import annotations

from collections import OrderedDict

from pagemap.kernel.errors import KernelBug
from pagemap.kernel.policy.base import Evictable, Key, Policy, always, check_count


class FIFO(Policy):
    __slots__ = ("_q",)

    name = "fifo"

    def __init__(self) -> None:
        super().__init__()
        self._q: OrderedDict[Key, None] = OrderedDict()  # oldest first

    def insert(self, key: Key) -> None:
        if key in self._q or key in self._pending:
            raise KernelBug(f"{self.name}: insert() of {key!r}, which is already cached")
        self._q[key] = None

    def referenced(self, key: Key) -> None:
        pass

    def victims(self, n: int, evictable: Evictable = always) -> list[Key]:
        if n < 1:
            check_count(n)
            return []
        out: list[Key] = []
        q = self._q
        # Choose first, detach after: nothing moves if evictable() raises.
        for key in q:
            if evictable(key):
                out.append(key)
                if len(out) == n:
                    break
        pending = self._pending
        for key in out:
            del q[key]
            pending[key] = 0
        return out

    def lists(self) -> dict[str, list[tuple[Key, int]]]:
        return {"queue": [(k, 0) for k in self._q]}

    def _nr_resident(self) -> int:
        return len(self._q)

    def _resident(self, key: object) -> bool:
        return key in self._q

    def _drop(self, key: Key) -> bool:
        return self._q.pop(key, self) is not self

    def _restore(self, key: Key, origin: int) -> None:
        # A victim the kernel could not free (kept) goes to the back, as Linux
        # puts back a page it failed to reclaim: FIFO has no use to record, so
        # at the front it would be the next victim, again and again (a page of
        # a MAP_LOCKED region, which removal never frees, would starve reclaim:
        # pagemap run --reclaim fifo once ran out of memory that way).
        self._q[key] = None
