"""Running a plan of units on an engine, and reading the answer in the fixed order.

An *engine* is where units run: `SerialEngine` (this process, one schedule
when the order asks for it), `LocalEngine` (worker processes, `--jobs`),
`DaskEngine` (a Dask cluster, `--scheduler`).  Each answers six calls:

    submit(uid, unit)     run this unit when a worker is free
    pump(want, timeout)   the Batches reported since the last call (waiting
                          at most `timeout` seconds); `want` is the unit the
                          fixed order waits for, which the serial engine runs
    cancel(uids)          nobody will read these units: drop or stop them
    halt(grace)           a stop: drop what has not started, end the running
                          units where they are, and return what they report
                          within `grace` seconds
    close()               stop everything, at once
    workers()             how many run at a time (for the progress display)

`explore` hands the plan's units to the engine, takes what comes back into
the ledger (check/fanout/ledger.py), hands out the units made on the way,
and stops when the ledger's order is over, or at once when `stop` is
requested (Ctrl-C, SIGTERM): then the engine is halted and the answer is
everything explored so far, in no particular order.  Rules: one thread; the
engine is closed on every way out, exceptions included.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pagemap.check.fanout.ledger import Ledger
from pagemap.check.fanout.stop import Stop
from pagemap.check.fanout.unit import Batch, Unit
from pagemap.check.runner import Summary
from pagemap.check.strategies import EXHAUSTIVE

POLL = 0.1  # seconds an engine waits for reports before the driver looks at `stop`
HALT_GRACE = 0.6  # seconds a stop waits for the running units' last reports
PROGRESS_EVERY = 0.1  # seconds between progress reports


class Engine(Protocol):
    name: str

    def workers(self) -> int: ...

    def submit(self, uid: int, unit: Unit) -> None: ...

    def pump(self, want: int | None, timeout: float) -> list[Batch]: ...

    def cancel(self, uids: Iterable[int]) -> None: ...

    def halt(self, grace: float) -> list[Batch]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Status:
    """Where an exploration is, for a progress display."""

    units_done: int
    units: int  # made so far: DFS and DPOR units split as they go
    schedules: int  # run, wherever
    seconds: float
    scenario: str  # the last one the fixed order reached
    planned: int | None  # schedules in all, when the plan fixes it (random, PCT)
    workers: int

    @property
    def rate(self) -> float:
        return self.schedules / self.seconds if self.seconds > 0 else 0.0

    def eta(self) -> tuple[float, bool] | None:
        """Seconds left and whether that is an estimate of the whole (False:
        a lower bound, since DFS and DPOR units may still split)."""
        if self.planned is not None and self.rate > 0:
            return max(self.planned - self.schedules, 0) / self.rate, True
        if self.units_done and self.seconds > 0:
            per_unit = self.seconds / self.units_done
            return (self.units - self.units_done) * per_unit, False
        return None


@dataclass
class Explored:
    """The answer: one summary per scenario and phase; `stopped` if a signal
    cut it short (the summaries then hold what was explored, unordered)."""

    summaries: list[Summary]
    status: Status
    stopped: Stop | None = None


Progress = Callable[[Status], None]


def explore(
    plan: Sequence[Unit],
    engine: Engine,
    progress: Progress | None = None,
    stop: Stop | None = None,
) -> Explored:
    """Run `plan` on `engine`; the engine is closed when this returns."""
    ledger = Ledger(plan)
    clock = _Clock(ledger, engine, _planned(plan))
    try:
        while True:
            _hand_out(ledger, engine)
            want = ledger.settle()
            if progress is not None:
                clock.report(progress, final=want is None)
            if want is None:
                return Explored(ledger.summaries(), clock.status())
            if stop is not None and stop.requested:
                for batch in engine.halt(HALT_GRACE):
                    ledger.take(batch)
                return Explored(ledger.everything(), clock.status(), stop)
            if ledger.capped:
                engine.cancel(ledger.drop_capped())
            for batch in engine.pump(want, POLL):
                ledger.take(batch)
    finally:
        engine.close()


def _hand_out(ledger: Ledger, engine: Engine) -> None:
    for uid in ledger.fresh:
        if not ledger.dead(uid):
            engine.submit(uid, ledger.units[uid])
    ledger.fresh.clear()


def _planned(plan: Sequence[Unit]) -> int | None:
    """Schedules in all, if every unit has a budget of its own."""
    if any(u.strategy in EXHAUSTIVE or u.budget is None for u in plan):
        return None
    return sum(u.budget or 0 for u in plan)


class _Clock:
    def __init__(self, ledger: Ledger, engine: Engine, planned: int | None) -> None:
        self.ledger = ledger
        self.engine = engine
        self.planned = planned
        self.t0 = time.monotonic()
        self.last = -math.inf
        self.workers = engine.workers()

    def status(self) -> Status:
        led = self.ledger
        return Status(
            led.units_done,
            len(led.units),
            led.schedules_run,
            time.monotonic() - self.t0,
            led.last,
            self.planned,
            self.workers,
        )

    def report(self, progress: Progress, final: bool) -> None:
        now = time.monotonic()
        if final or now - self.last >= PROGRESS_EVERY:
            self.last = now
            progress(self.status())


__all__ = ["HALT_GRACE", "POLL", "Engine", "Explored", "Progress", "Status", "explore"]
