"""CLOCK: FIFO with a second chance for pages used since the hand last passed.

The textbook ring of frames with a hand is written here as a queue, front
first: the front is the page under the hand; passing a page whose referenced
bit is set clears the bit and moves it to the back (the hand moved on);
a new page joins at the back (just behind the hand).  That is libCacheSim's
Clock with its default one-bit counter, page for page.

`referenced` only sets a bit, the cheapest hit path of all the policies,
which is why CLOCK is what kernels put behind hardware accessed bits.
Callers hold the kernel's reclaim lock (see base.py).
"""

from __future__ import annotations

from collections import OrderedDict

from pagemap.kernel.errors import KernelBug
from pagemap.kernel.policy.base import Evictable, Key, Policy, always, check_count


class Clock(Policy):
    __slots__ = ("_q", "_ref")

    name = "clock"

    def __init__(self) -> None:
        super().__init__()
        self._q: OrderedDict[Key, None] = OrderedDict()  # the hand is at the front
        self._ref: dict[Key, bool] = {}  # resident key -> referenced bit

    def insert(self, key: Key) -> None:
        if key in self._ref or key in self._pending:
            raise KernelBug(f"{self.name}: insert() of {key!r}, which is already cached")
        self._q[key] = None
        self._ref[key] = False

    def referenced(self, key: Key) -> None:
        ref = self._ref
        if key in ref:
            ref[key] = True

    def victims(self, n: int, evictable: Evictable = always) -> list[Key]:
        if n < 1:
            check_count(n)
            return []
        out: list[Key] = []
        met: list[Key] = []  # taken from under the hand, in order: victims and pinned
        q, ref, pending = self._q, self._ref, self._pending
        try:
            # Each key is seen at most twice: once to clear its bit, once to decide.
            while len(out) < n and q:
                key = next(iter(q))
                if ref[key]:
                    ref[key] = False
                    q.move_to_end(key)
                    continue
                go = evictable(key)
                del q[key]
                met.append(key)
                if go:
                    del ref[key]
                    pending[key] = 0
                    out.append(key)
        except BaseException:
            for key in out:
                del pending[key]
                ref[key] = False
            out = []  # so that everything met goes back
            raise
        finally:
            if len(met) > len(out):
                handed = set(out)
                for key in reversed(met):  # back under the hand, in their order
                    if key not in handed:
                        q[key] = None
                        q.move_to_end(key, last=False)
        return out

    def lists(self) -> dict[str, list[tuple[Key, int]]]:
        return {"clock": [(k, int(self._ref[k])) for k in self._q]}

    def _nr_resident(self) -> int:
        return len(self._ref)

    def _resident(self, key: object) -> bool:
        return key in self._ref

    def _drop(self, key: Key) -> bool:
        if self._ref.pop(key, None) is None:
            return False
        del self._q[key]
        return True

    def _restore(self, key: Key, origin: int) -> None:
        self._q[key] = None
        self._q.move_to_end(key, last=False)
        self._ref[key] = False
