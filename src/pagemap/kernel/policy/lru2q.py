"""LRU-2Q: an inactive and an active list, in the manner of Linux's page LRU.

- A new page goes to the head of the inactive list.  The miss that brought it
  in is its first use; its next use (a VFS access, or an accessed bit the
  kernel harvested after the fault's own) promotes it to the head of the
  active list.  Further uses move it back to the active head.
- Victims come from the tail of the inactive list.  Before each one, the
  active list is trimmed from its tail into the inactive head until it is no
  longer than the inactive list (`active_ratio` 1: Linux's target
  for file pages when memory is under a gigabyte, inactive_is_low()).
  Trimming happens in `victims`, as Linux ages the active list in reclaim,
  so that `referenced` stays one or two dict operations.
- A victim the kernel could not free (`kept`) was found in use: it is
  activated, as Linux activates a referenced page that reclaim meets.

Pages used once, such as a scan, never leave the inactive list, so they
cannot push the active list's pages out: the point of two lists.  Linux keeps
the active list in rough order with accessed bits rather than moving pages on
every use; here the active list is an exact LRU.

Callers hold the kernel's reclaim lock (see base.py).
"""

from __future__ import annotations

from collections import OrderedDict

from pagemap.kernel.errors import InvalidArgument, KernelBug
from pagemap.kernel.policy.base import Evictable, Key, Policy, always, check_count


class LRU2Q(Policy):
    __slots__ = ("_active", "_inactive", "active_ratio")

    name = "lru2q"

    def __init__(self, active_ratio: float = 1.0) -> None:
        if active_ratio < 0:
            raise InvalidArgument(f"lru2q: active_ratio cannot be negative ({active_ratio})")
        super().__init__()
        self.active_ratio = active_ratio
        self._inactive: OrderedDict[Key, None] = OrderedDict()  # tail (oldest) first
        self._active: OrderedDict[Key, None] = OrderedDict()  # least recently used first

    def insert(self, key: Key) -> None:
        if key in self._inactive or key in self._active or key in self._pending:
            raise KernelBug(f"{self.name}: insert() of {key!r}, which is already cached")
        self._inactive[key] = None

    def referenced(self, key: Key) -> None:
        active = self._active
        if key in active:
            active.move_to_end(key)
            return
        inactive = self._inactive
        if key in inactive:
            del inactive[key]
            active[key] = None

    def victims(self, n: int, evictable: Evictable = always) -> list[Key]:
        if n < 1:
            check_count(n)
            return []
        out: list[Key] = []
        met: list[Key] = []  # taken from the inactive tail, in order: victims and pinned
        inactive, active, pending = self._inactive, self._active, self._pending
        try:
            while len(out) < n and (inactive or active):
                self._trim()
                key = next(iter(inactive))
                go = evictable(key)
                del inactive[key]
                met.append(key)
                if go:
                    pending[key] = 0
                    out.append(key)
        except BaseException:
            for key in out:
                del pending[key]
            out = []  # so that everything met goes back
            raise
        finally:
            if len(met) > len(out):
                handed = set(out)
                for key in reversed(met):  # back to the inactive tail, in their order
                    if key not in handed:
                        inactive[key] = None
                        inactive.move_to_end(key, last=False)
        return out

    def _trim(self) -> None:
        """Deactivate from the active tail until the active list is short enough.

        Always leaves the inactive list non-empty when any key is resident.
        """
        active, inactive = self._active, self._inactive
        limit = self.active_ratio
        while active and (len(active) > limit * len(inactive) or not inactive):
            key, _ = active.popitem(last=False)
            inactive[key] = None

    def lists(self) -> dict[str, list[tuple[Key, int]]]:
        return {
            "inactive": [(k, 0) for k in self._inactive],
            "active": [(k, 1) for k in self._active],
        }

    def _nr_resident(self) -> int:
        return len(self._inactive) + len(self._active)

    def _resident(self, key: object) -> bool:
        return key in self._inactive or key in self._active

    def _drop(self, key: Key) -> bool:
        return self._inactive.pop(key, self) is not self or self._active.pop(key, self) is not self

    def _restore(self, key: Key, origin: int) -> None:
        self._inactive[key] = None
        self._inactive.move_to_end(key, last=False)
