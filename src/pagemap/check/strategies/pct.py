"""Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

Each task gets a random priority; the highest-priority candidate runs.  At
d - 1 random steps (of an estimated k, the length of the schedule that never
preempts) the running task drops below every initial priority.  A bug of
depth d is found in each schedule with probability at least 1 / (n k^(d-1)).
Tasks may be spawned mid-run, so priorities are drawn when a task is first
seen.  Schedule i depends on (seed, i, k) alone; k is a function of the model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pagemap.check.strategies.base import Chooser, Explorer
from pagemap.sync.core import RELAX, Task


class PCTChooser(Chooser):
    def __init__(self, rng: random.Random, depth: int, k: int, bound: int | None) -> None:
        super().__init__()
        self.bound = bound
        self.rng = rng
        self.depth = depth
        self.priority: dict[int, float] = {}
        self.change_points = sorted(rng.randrange(1, k + 1) for _ in range(depth - 1))
        self.changed = 0

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        alts = runnable
        spent = self.bound is not None and self.path.preemptions >= self.bound
        if spent and current is not None and kind is not RELAX and current in alts:
            return current  # the bound is spent: no more preemptions
        prio = self.priority
        for task in alts:
            if task.tid not in prio:
                # Initial priorities sit above every change-point priority (< depth).
                prio[task.tid] = self.depth + self.rng.random()
        step = self.sched.steps  # type: ignore[attr-defined]
        cps = self.change_points
        while self.changed < len(cps) and cps[self.changed] <= step:
            self.changed += 1
            if current is not None:
                prio[current.tid] = self.depth - self.changed - self.rng.random() * 0.5
        best = alts[0]
        for task in alts:
            if prio[task.tid] > prio[best.tid]:
                best = task
        return self._chose(best, current, kind)


class PCTExplorer(Explorer):
    name = "pct"

    def __init__(
        self, seed: int, depth: int = 3, steps_hint: int = 1, bound: int | None = None
    ) -> None:
        super().__init__()
        self.bound = bound
        if depth < 1:
            raise ValueError(f"PCT depth must be at least 1, not {depth}")
        self.seed = seed
        self.depth = depth
        self.k = max(steps_hint, 1)
        self._seen: set[int] = set()

    def learn_length(self, steps: int) -> None:
        """Widen k to the length of a schedule (the model's non-preemptive run)."""
        self.k = max(self.k, steps)

    def chooser(self, index: int) -> Chooser:
        rng = random.Random(f"pct/{self.seed}/{index}/{self.k}")
        chooser = PCTChooser(rng, self.depth, self.k, self.bound)
        chooser.pool = self.pool
        return chooser

    def finished(self, chooser: Chooser, outcome: object) -> None:
        key = hash(tuple(chooser.path.choices))
        if key not in self._seen:
            self._seen.add(key)
            self.distinct += 1
