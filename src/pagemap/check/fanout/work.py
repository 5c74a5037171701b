"""Running one unit of work, a schedule at a time: the same code in every engine.

`UnitRun.step()` runs the unit's next schedule and returns its Tick, or None
once the unit is over (`end` says how).  The serial engine calls it when the
fixed order asks for that schedule; a worker process or a Dask task runs a
unit to its end with `run_unit`, which hands back Batches as it goes.

Rules: a UnitRun lives in one thread; the Watchdog it is given must outlive
it.  A unit is a function of its fields: run twice (a worker died, the unit
is run again elsewhere), it gives the same Ticks and the same End, except
where a clock decides (`time_limit`, `timeout`, a stop).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

from pagemap.check.fanout.unit import (
    EXHAUSTED,
    OUT_OF_TIME,
    SPENT,
    SPLIT,
    STOPPED,
    TIMED_OUT,
    VIOLATION,
    Batch,
    End,
    Tick,
    Unit,
)
from pagemap.check.runner import Exploration, Model
from pagemap.check.strategies import Search
from pagemap.sync.watchdog import Watchdog

BATCH_SECONDS = 0.2  # a worker reports at least this often while it runs


class UnitRun:
    """One unit, run a schedule at a time."""

    def __init__(self, unit: Unit, dog: Watchdog | None, model: Model | None = None) -> None:
        """`model`: the model the unit names, when it is at hand (else built
        from the unit's names)."""
        t0 = time.perf_counter()
        self.unit = unit
        self.run = Exploration(
            unit.model() if model is None else model,
            unit.strategy,
            unit.seed,
            unit.bound,
            unit.depth,
            unit.max_steps,
            unit.first,
            unit.budget,
            dog,
        )
        explorer = self.run.explorer
        self.search = explorer if isinstance(explorer, Search) else None
        if self.search is not None and not unit.part.whole:
            self.search.restrict(unit.part)
        self.count = 0  # schedules run
        self.end: End | None = None
        self.seconds = time.perf_counter() - t0  # PCT's set-up runs a schedule too

    def step(self) -> Tick | None:
        """Run the next schedule; None once the unit is over."""
        if self.end is not None:
            return None
        s = self.run.summary
        steps, distinct, redundant, races = s.steps, s.distinct, s.redundant, s.races
        t0 = time.perf_counter()
        self.run.run(1)
        self.seconds += time.perf_counter() - t0
        if s.schedules == self.count:
            self.end = End(EXHAUSTED if self.run.explorer.exhausted else SPENT, self.seconds)
            return None
        self.count += 1
        requests = tuple(self.search.take_requests()) if self.search is not None else ()
        tick = Tick(
            s.steps - steps,
            s.distinct > distinct,
            s.redundant > redundant,
            s.races - races,
            requests,
            seconds=time.perf_counter() - t0,
            trace=self.search.last_trace if self.search is not None else None,
        )
        self.end = self._ended()
        return tick._replace(last=True) if self.end is not None else tick

    def stop(self) -> None:
        """End the unit where it is (the exploration was stopped)."""
        if self.end is None:
            self.end = End(STOPPED, self.seconds)

    def _ended(self) -> End | None:
        """How the unit ended with the schedule just run, or None if it goes on."""
        run, unit = self.run, self.unit
        if run.summary.trace is not None:
            return End(VIOLATION, self.seconds, run.summary.trace)
        if run.explorer.exhausted:
            return End(EXHAUSTED, self.seconds)
        if run.end is not None and run.index >= run.end:
            return End(SPENT, self.seconds)
        if self.search is not None and unit.split is not None and self.count >= unit.split:
            parts, frozen = self.search.frontier(self.search.last_log)
            children = tuple(dataclasses.replace(unit, part=p) for p in parts)
            return End(SPLIT, self.seconds, None, children, tuple(frozen))
        if unit.time_limit is not None and self.seconds >= unit.time_limit:
            return End(OUT_OF_TIME, self.seconds)
        if unit.timeout is not None and self.seconds >= unit.timeout:
            return End(TIMED_OUT, self.seconds)
        return None


def run_unit(
    uid: int,
    unit: Unit,
    dog: Watchdog | None,
    stopped: Callable[[], bool] | None = None,
    every: float = BATCH_SECONDS,
) -> Iterator[Batch]:
    """A worker's whole job: run `unit` to its end, yielding a Batch of its
    Ticks at least every `every` seconds, the last one with its End.
    `stopped()` is asked between batches; True ends the unit as STOPPED."""
    work = UnitRun(unit, dog)
    ticks: list[Tick] = []
    first = 0
    last = time.monotonic()
    while True:
        tick = work.step()
        if tick is not None:
            ticks.append(tick)
        now = time.monotonic()
        if work.end is None and now - last < every:
            continue
        if work.end is None and stopped is not None and stopped():
            work.stop()
        yield Batch(uid, first, tuple(ticks), work.end)
        if work.end is not None:
            return
        first += len(ticks)
        ticks = []
        last = now


def run_whole(uid: int, unit: Unit, stopped: Callable[[], bool] | None = None) -> Batch:
    """A unit to its end as one Batch, under a watchdog of its own (a Dask task)."""
    from pagemap.check.runner import DEFAULT_WATCHDOG

    ticks: list[Tick] = []
    with Watchdog(DEFAULT_WATCHDOG) as dog:
        for batch in run_unit(uid, unit, dog, stopped):
            ticks.extend(batch.ticks)
            if batch.end is not None:
                return Batch(uid, 0, tuple(ticks), batch.end)
    raise AssertionError("unreachable: a unit's last batch carries its end")


__all__ = ["BATCH_SECONDS", "UnitRun", "run_unit", "run_whole"]
