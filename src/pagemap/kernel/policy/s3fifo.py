"""S3-FIFO (Yang, Zhang, Qiu, Yue and Rashmi, "FIFO queues are all you need
for cache eviction", SOSP 2023): a small FIFO, a main FIFO and a ghost FIFO.

- A new page enters the small queue, unless its key is in the ghost queue
  (it was evicted from the small queue not long ago): then it goes straight
  to the main queue.
- Each resident page has a 2-bit use count; `referenced` bumps it (to 3 at
  most) and moves nothing.
- While the main queue holds more than its share (all but `small_ratio` of
  the cache) or the small queue is empty, evict from main: a page at its
  front with a count goes to the back with one count less; one with none is
  the victim.
- Otherwise evict from small: a page at its front used at least
  `move_to_main` times moves to the back of main with a count of 0; any other
  is the victim, and its key goes to the ghost queue, which remembers the
  last `ghost_ratio` x cache keys so evicted.

The cache's size is taken, at each `victims` call, to be the pages cached at
that moment (the kernel asks for victims when its frames are full), so the
small and ghost shares follow memory as it grows or shrinks.

The defaults are libCacheSim's S3FIFO (small 0.10, ghost 0.90,
move-to-main threshold 2: a page must have been used twice after its miss to
move from the small queue to main), including its one departure from the
paper's algorithm (which libCacheSim keeps as S3FIFOv0): pages that arrive while the cache is still
filling, once the small queue has its share, go to main rather than small, so
what was loaded before memory first ran short is not all treated as a scan.
We learn the cache's size only when it first fills (the first `victims`
call), so that is when we split the small queue: its oldest `small_ratio`
share stays, the rest moves to main in order, which is where libCacheSim
would have put them.  `fill_main_first=False` is the paper's (and S3FIFOv0's)
rule: every new page goes to small.

One detail cannot be the same: libCacheSim looks a missing key up in the
ghost queue before it evicts, we at insert(), after the eviction that made
room may have pushed the oldest ghost out.

Callers hold the kernel's reclaim lock (see base.py).
"""

from __future__ import annotations

from collections import OrderedDict

from pagemap.kernel.errors import InvalidArgument, KernelBug
from pagemap.kernel.policy.base import Evictable, Key, Policy, always, check_count

SMALL = 0
MAIN = 1
MAX_FREQ = 3  # two bits


class S3FIFO(Policy):
    __slots__ = (
        "_filled",
        "_freq",
        "_ghost",
        "_ghost_limit",
        "_main",
        "_small",
        "fill_main_first",
        "ghost_ratio",
        "move_to_main",
        "small_ratio",
    )

    name = "s3fifo"

    def __init__(
        self,
        small_ratio: float = 0.10,
        ghost_ratio: float = 0.90,
        move_to_main: int = 2,
        fill_main_first: bool = True,
    ) -> None:
        if not 0 < small_ratio < 1:
            raise InvalidArgument(f"s3fifo: small_ratio must be in (0, 1), not {small_ratio}")
        if ghost_ratio < 0:
            raise InvalidArgument(f"s3fifo: ghost_ratio cannot be negative ({ghost_ratio})")
        if not 1 <= move_to_main <= MAX_FREQ:
            raise InvalidArgument(
                f"s3fifo: move_to_main must be between 1 and {MAX_FREQ}, not {move_to_main}"
            )
        super().__init__()
        self.small_ratio = small_ratio
        self.ghost_ratio = ghost_ratio
        self.move_to_main = move_to_main
        self.fill_main_first = fill_main_first
        self._filled = False  # has victims() been called yet?
        self._small: OrderedDict[Key, None] = OrderedDict()  # oldest first
        self._main: OrderedDict[Key, None] = OrderedDict()  # oldest first
        self._ghost: OrderedDict[Key, None] = OrderedDict()  # oldest first
        # Every cached key (resident or in flight) -> its use count: a use of
        # a victim in flight counts if the kernel then keeps it.
        self._freq: dict[Key, int] = {}
        self._ghost_limit = 0  # ghost_ratio x the pages cached at the last victims() call

    def insert(self, key: Key) -> None:
        if key in self._freq:
            raise KernelBug(f"{self.name}: insert() of {key!r}, which is already cached")
        self._freq[key] = 0
        ghost = self._ghost
        if key in ghost:
            del ghost[key]
            self._main[key] = None
        else:
            self._small[key] = None

    def referenced(self, key: Key) -> None:
        freq = self._freq
        f = freq.get(key, MAX_FREQ)  # a key not cached reads as full: never added
        if f < MAX_FREQ:
            freq[key] = f + 1

    def victims(self, n: int, evictable: Evictable = always) -> list[Key]:
        if n < 1:
            check_count(n)
            return []
        small, main = self._small, self._main
        cap = len(self._freq)
        self._ghost_limit = int(cap * self.ghost_ratio)
        small_share = int(cap * self.small_ratio)
        if not self._filled:
            self._first_fill(small_share)
        main_share = cap - small_share
        out: list[Key] = []
        met: list[tuple[int, Key]] = []  # (queue, key) taken off a queue, in order
        try:
            while len(out) < n and (small or main):
                if len(main) > main_share or not small:
                    key = self._evict_main(evictable, met)
                else:
                    key = self._evict_small(evictable, met)
                if key is not None:
                    out.append(key)
        except BaseException:
            for key in out:
                del self._pending[key]
            out = []  # so that everything met goes back
            raise
        finally:
            if len(met) > len(out):
                self._put_back(met, out)
        return out

    def _first_fill(self, small_share: int) -> None:
        self._filled = True
        if self.fill_main_first:
            small, main = self._small, self._main
            for key in list(small)[small_share:]:
                del small[key]
                main[key] = None

    def _evict_small(self, evictable: Evictable, met: list[tuple[int, Key]]) -> Key | None:
        small, freq = self._small, self._freq
        while small:
            key = next(iter(small))
            if freq[key] >= self.move_to_main:
                del small[key]
                self._main[key] = None
                freq[key] = 0
                continue
            go = evictable(key)
            del small[key]
            met.append((SMALL, key))
            if go:
                self._pending[key] = SMALL
                return key
        return None

    def _evict_main(self, evictable: Evictable, met: list[tuple[int, Key]]) -> Key | None:
        main, freq = self._main, self._freq
        while main:
            key = next(iter(main))
            f = freq[key]
            if f:
                freq[key] = f - 1
                main.move_to_end(key)
                continue
            go = evictable(key)
            del main[key]
            met.append((MAIN, key))
            if go:
                self._pending[key] = MAIN
                return key
        return None

    def _put_back(self, met: list[tuple[int, Key]], out: list[Key]) -> None:
        """Keys passed over return to the fronts of their queues, in the order met."""
        handed = set(out)
        for origin, key in reversed(met):
            if key not in handed:
                self._restore(key, origin)

    def lists(self) -> dict[str, list[tuple[Key, int]]]:
        return {
            "small": [(k, self._freq[k]) for k in self._small],
            "main": [(k, self._freq[k]) for k in self._main],
            "ghost": [(k, 0) for k in self._ghost],
        }

    def _nr_resident(self) -> int:
        return len(self._small) + len(self._main)

    def _resident(self, key: object) -> bool:
        return key in self._small or key in self._main

    def _drop(self, key: Key) -> bool:
        if self._small.pop(key, self) is self and self._main.pop(key, self) is self:
            return False
        del self._freq[key]
        return True

    def _restore(self, key: Key, origin: int) -> None:
        q = self._small if origin == SMALL else self._main
        q[key] = None
        q.move_to_end(key, last=False)

    def _forget(self, key: Key, origin: int) -> None:
        del self._freq[key]
        limit = self._ghost_limit
        if origin != SMALL or limit <= 0:
            return
        ghost = self._ghost
        ghost[key] = None
        while len(ghost) > limit:
            ghost.popitem(last=False)
