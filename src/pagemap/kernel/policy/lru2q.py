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

from array import array
from collections import OrderedDict
from collections.abc import Sequence
from typing import cast

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


class FrameLRU2Q(Policy):
    """LRU2Q over frame numbers, for the kernel: the same lists, choices and
    calls as LRU2Q, kept as two doubly linked lists threaded through arrays
    indexed by frame (9 bytes a frame: two 32-bit links and a list tag),
    where LRU2Q's OrderedDicts cost about a hundred bytes a page.  Keys are
    ints in [0, capacity); tests/kernel/policy/test_policy.py holds it to
    LRU2Q's choices, call for call.
    """

    __slots__ = ("_count", "_next", "_prev", "_where", "active_ratio", "capacity")

    name = "lru2q"

    def __init__(self, capacity: int, active_ratio: float = 1.0) -> None:
        if active_ratio < 0:
            raise InvalidArgument(f"lru2q: active_ratio cannot be negative ({active_ratio})")
        if capacity < 1:
            raise InvalidArgument(f"lru2q: capacity must be positive, not {capacity}")
        super().__init__()
        self.capacity = capacity
        self.active_ratio = active_ratio
        # Nodes 0..capacity-1 are frames; capacity and capacity+1 the heads of
        # the inactive and active lists (a head's next is its list's front,
        # oldest first; its prev the back).
        heads = [capacity, capacity + 1]
        self._next = array("i", range(capacity + 2))
        self._prev = array("i", range(capacity + 2))
        self._where = bytearray(capacity)  # 0 absent, INACTIVE, ACTIVE or PENDING
        self._count = [0, 0]  # inactive, active
        for h in heads:
            self._next[h] = self._prev[h] = h

    # -- list primitives ----------------------------------------------------------------
    def _link_back(self, lst: int, k: int) -> None:
        h = self.capacity + lst
        nxt, prv = self._next, self._prev
        p = prv[h]
        nxt[p] = k
        prv[k] = p
        nxt[k] = h
        prv[h] = k
        self._count[lst] += 1

    def _link_front(self, lst: int, k: int) -> None:
        h = self.capacity + lst
        nxt, prv = self._next, self._prev
        n = nxt[h]
        nxt[h] = k
        prv[k] = h
        nxt[k] = n
        prv[n] = k
        self._count[lst] += 1

    def _unlink(self, lst: int, k: int) -> None:
        nxt, prv = self._next, self._prev
        p, n = prv[k], nxt[k]
        nxt[p] = n
        prv[n] = p
        self._count[lst] -= 1

    def _front(self, lst: int) -> int:
        """The oldest key of a list, or -1."""
        h = self.capacity + lst
        k = self._next[h]
        return -1 if k == h else k

    def _check_key(self, key: Key) -> int:
        if not isinstance(key, int) or not 0 <= key < self.capacity:
            raise KernelBug(f"{self.name}: key {key!r} is not a frame in 0..{self.capacity - 1}")
        return key

    # -- the calls ------------------------------------------------------------------------
    def insert(self, key: Key) -> None:
        k = self._check_key(key)
        if self._where[k]:
            raise KernelBug(f"{self.name}: insert() of {key!r}, which is already cached")
        self._where[k] = _INACTIVE
        self._link_back(_IN, k)

    def referenced(self, key: Key) -> None:
        if not isinstance(key, int) or not 0 <= key < self.capacity:
            return
        where = self._where[key]
        if where == _ACTIVE:
            self._unlink(_ACT, key)
            self._link_back(_ACT, key)
        elif where == _INACTIVE:
            self._unlink(_IN, key)
            self._where[key] = _ACTIVE
            self._link_back(_ACT, key)

    def victims(self, n: int, evictable: Evictable = always) -> list[Key]:
        if n < 1:
            check_count(n)
            return []
        out: list[Key] = []
        met: list[int] = []
        where, pending, count = self._where, self._pending, self._count
        try:
            while len(out) < n and (count[_IN] or count[_ACT]):
                self._trim()
                k = self._front(_IN)
                go = evictable(k)
                self._unlink(_IN, k)
                where[k] = _PENDING
                met.append(k)
                if go:
                    pending[k] = 0
                    out.append(k)
        except BaseException:
            for key in out:
                del pending[key]
            out = []
            raise
        finally:
            if len(met) > len(out):
                handed = set(out)
                for k in reversed(met):  # back to the inactive front, in their order
                    if k not in handed:
                        where[k] = _INACTIVE
                        self._link_front(_IN, k)
        return out

    def discard_many(self, keys: Sequence[Key]) -> None:
        # Policy.discard_many, written out: a removal at scale frees many.
        where, pending, count = self._where, self._pending, self._count
        nxt, prv = self._next, self._prev
        for k in cast(Sequence[int], keys):
            tag = where[k]
            if not tag:
                continue
            if tag == _PENDING:
                del pending[k]
            else:
                p, n = prv[k], nxt[k]
                nxt[p] = n
                prv[n] = p
                count[_IN if tag == _INACTIVE else _ACT] -= 1
            where[k] = 0

    def _trim(self) -> None:
        count, limit = self._count, self.active_ratio
        while count[_ACT] and (count[_ACT] > limit * count[_IN] or not count[_IN]):
            k = self._front(_ACT)
            self._unlink(_ACT, k)
            self._where[k] = _INACTIVE
            self._link_back(_IN, k)

    def lists(self) -> dict[str, list[tuple[Key, int]]]:
        return {
            "inactive": [(k, 0) for k in self._walk(_IN)],
            "active": [(k, 1) for k in self._walk(_ACT)],
        }

    def _walk(self, lst: int) -> list[int]:
        h = self.capacity + lst
        out, k = [], self._next[h]
        while k != h:
            out.append(k)
            k = self._next[k]
        return out

    # -- hooks ----------------------------------------------------------------------------
    def _nr_resident(self) -> int:
        return self._count[_IN] + self._count[_ACT]

    def _resident(self, key: object) -> bool:
        return (
            isinstance(key, int)
            and 0 <= key < self.capacity
            and self._where[key] in (_INACTIVE, _ACTIVE)
        )

    def _drop(self, key: Key) -> bool:
        if not self._resident(key):
            return False
        k = cast(int, key)
        self._unlink(_IN if self._where[k] == _INACTIVE else _ACT, k)
        self._where[k] = 0
        return True

    def _restore(self, key: Key, origin: int) -> None:
        k = cast(int, key)
        self._where[k] = _INACTIVE
        self._link_front(_IN, k)

    def _forget(self, key: Key, origin: int) -> None:
        self._where[cast(int, key)] = 0


# FrameLRU2Q's list numbers and frame tags.
_IN, _ACT = 0, 1
_INACTIVE, _ACTIVE, _PENDING = 1, 2, 3
