"""Uniformly random schedules: at each choice point, any candidate alike.

Schedule i draws from a generator seeded by (seed, i) alone.  It keeps no
tree of what it ran (that costs more than a random schedule is worth), so it
never claims to have covered a space; `distinct` counts distinct schedules.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pagemap.check.strategies.base import Chooser, Explorer
from pagemap.sync.core import RELAX, Task


class RandomChooser(Chooser):
    def __init__(self, rng: random.Random, bound: int | None) -> None:
        super().__init__()
        self.random = rng.random
        self.bound = bound

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        spent = self.bound is not None and self.path.preemptions >= self.bound
        if spent and current is not None and kind is not RELAX and current in runnable:
            return current  # the bound is spent: no more preemptions
        nxt = runnable[int(self.random() * len(runnable))]
        path = self.path
        path.choices.append(nxt.tid)
        if current is not None and nxt is not current and kind is not RELAX:
            path.preemptions += 1
        return nxt


class RandomExplorer(Explorer):
    name = "random"

    def __init__(self, seed: int, bound: int | None = None) -> None:
        super().__init__()
        self.seed = seed
        self.bound = bound
        self._seen: set[int] = set()

    def chooser(self, index: int) -> Chooser:
        chooser = RandomChooser(random.Random(f"random/{self.seed}/{index}"), self.bound)
        chooser.pool = self.pool
        return chooser

    def finished(self, chooser: Chooser, outcome: object) -> None:
        key = hash(tuple(chooser.path.choices))
        if key not in self._seen:
            self._seen.add(key)
            self.distinct += 1
