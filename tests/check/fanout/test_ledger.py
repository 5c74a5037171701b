"""The answer does not depend on where or when units run.

An engine that runs the units in a seeded random order, hands their reports
back in random pieces and orders, and sometimes twice (a unit run again
after its worker died), gets, over many seeds, exactly the summaries and the
counterexample the serial engine gets: the ledger reads reports in its own
fixed order only.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from pagemap.check.fanout import ModelRef, SerialEngine, Unit, explore
from pagemap.check.fanout.unit import Batch, Tick
from pagemap.check.fanout.work import UnitRun
from pagemap.check.runner import Summary
from tests.check.fanout.models import LATE, PAIR, RACY, SAFE

SEEDS = range(25)


def unit(
    m: ModelRef,
    strategy: str,
    first: int = 0,
    budget: int | None = 100_000,
    phase: str = "",
    split: int | None = 3,
) -> Unit:
    bound = 2 if strategy in ("dpor", "dfs") else None
    return Unit(
        m.name, (), strategy, 0, bound, 3, 20_000, first, budget, phase=phase, split=split,
        functions=m,
    )  # fmt: skip


PLANS = {
    "dpor, a violation late": [unit(SAFE, "dpor"), unit(LATE, "dpor")],
    "dpor, a budget": [unit(SAFE, "dpor", budget=25), unit(PAIR, "dpor")],
    "dfs to the end": [unit(SAFE, "dfs", split=2)],
    "portfolio": [unit(m, "pct", f, 2, "pct", None) for f in (0, 2, 4) for m in (SAFE, LATE)]
    + [unit(SAFE, "dpor"), unit(LATE, "dpor")],
    "random": [unit(m, "random", f, 3, "", None) for f in (0, 3, 6) for m in (SAFE, RACY)],
}


class Shuffled:
    """Runs a random waiting unit to its end each time it is pumped, and
    delivers random pieces of what units reported, in order within a unit."""

    name = "shuffled"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.waiting: list[tuple[int, Unit]] = []
        self.outbox: dict[int, list[Batch]] = {}

    def workers(self) -> int:
        return 4

    def submit(self, uid: int, unit: Unit) -> None:
        self.waiting.append((uid, unit))

    def pump(self, want: int | None, timeout: float) -> list[Batch]:
        if self.waiting:
            uid, u = self.waiting.pop(self.rng.randrange(len(self.waiting)))
            self.outbox[uid] = self._run(uid, u)
            if self.rng.random() < 0.2:
                self.outbox[uid] += self._run(uid, u)  # run again, as after a lost worker
        out = []
        for uid in self.rng.sample(sorted(self.outbox), k=len(self.outbox)):
            queue = self.outbox[uid]
            for _ in range(self.rng.randint(0, len(queue))):
                out.append(queue.pop(0))
            if not queue:
                del self.outbox[uid]
        return out

    def _run(self, uid: int, u: Unit) -> list[Batch]:
        run = UnitRun(u, None)
        ticks: list[Tick] = []
        while (tick := run.step()) is not None:
            ticks.append(tick)
        assert run.end is not None
        batches, first = [], 0
        while first < len(ticks):
            piece = tuple(ticks[first : first + self.rng.randint(1, 4)])
            batches.append(Batch(uid, first, piece))
            first += len(piece)
        return [*batches, Batch(uid, first, (), run.end)]

    def cancel(self, uids: Iterable[int]) -> None:
        gone = set(uids)
        self.waiting = [(u, w) for u, w in self.waiting if u not in gone]

    def halt(self, grace: float) -> list[Batch]:
        self.waiting.clear()
        return []

    def close(self) -> None:
        self.waiting.clear()


def answer(summaries: list[Summary]) -> list[tuple[object, ...]]:
    """Everything but the seconds."""
    return [
        (
            s.scenario, s.strategy, s.schedules, s.distinct, s.redundant, s.races, s.steps,
            s.exhaustive,
            None if s.trace is None else (s.trace.oracle, s.trace.schedule, s.trace.schedule_index),
        )
        for s in summaries
    ]  # fmt: skip


@pytest.mark.parametrize("name", sorted(PLANS))
def test_any_order_of_reports_gives_the_serial_answer(name: str) -> None:
    plan = PLANS[name]
    want = answer(explore(plan, SerialEngine()).summaries)
    for seed in SEEDS:
        assert answer(explore(plan, Shuffled(seed)).summaries) == want, f"seed {seed}"


def test_the_plans_show_what_they_are_named_for() -> None:
    late = explore(PLANS["dpor, a violation late"], SerialEngine())
    (safe, found) = late.summaries
    assert found.trace is not None and found.trace.schedule_index == 6
    assert safe.schedules > 1 and late.status.units > 2  # interleaved, and split
    capped, pair = explore(PLANS["dpor, a budget"], SerialEngine()).summaries
    assert capped.schedules == 25 and not capped.exhaustive and pair.exhaustive
    (dfs,) = explore(PLANS["dfs to the end"], SerialEngine()).summaries
    assert dfs.exhaustive and dfs.trace is None
