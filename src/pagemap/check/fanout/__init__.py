"""Exploration as a queue of units of work, run here or in other processes.

A *unit* names everything a worker needs to run part of an exploration on
its own, from a scenario name and parameters alone (never pickled code): the
scenario, the strategy and its settings, and which schedules (random and PCT
split by schedule numbers, since schedule i depends only on the seed and i;
DPOR and DFS run a whole scenario).  `pagemap check` turns its plan into one
queue of units; `run_serial` interleaves them in slices in this process,
`run_local` hands them to worker processes.  Either way the results are
merged in the queue's order, so the summary and the first counterexample do
not depend on how many workers there were.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

from pagemap.check.runner import DEFAULT_WATCHDOG, Exploration, Summary
from pagemap.check.scenarios import lookup
from pagemap.sync.watchdog import Watchdog

SLICE = 25  # schedules a serial queue runs of one unit before moving to the next


@dataclass(frozen=True)
class Unit:
    """Part of an exploration a worker can run from names and numbers alone."""

    scenario: str
    params: tuple[tuple[str, int], ...]
    strategy: str
    seed: int
    bound: int | None
    depth: int
    max_steps: int
    first: int = 0
    budget: int | None = None
    time_limit: float | None = None
    phase: str = ""  # "pct" for the portfolio's first pass, "" otherwise

    def exploration(self, dog: Watchdog | None) -> Exploration:
        model = lookup(self.scenario).model(dict(self.params))
        return Exploration(
            model,
            self.strategy,
            self.seed,
            self.bound,
            self.depth,
            self.max_steps,
            self.first,
            self.budget,
            dog,
        )


Progress = Callable[[Unit, Summary, bool], None]  # (unit, its summary so far, unit done)


def run_serial(units: Sequence[Unit], progress: Progress | None = None) -> list[Summary]:
    """Run the units here, interleaved: a slice of each unit of a phase in
    turn, so that every scenario gets an early look before any is explored
    to the end.  Stops at the first violation."""
    results: list[Summary | None] = [None] * len(units)
    with Watchdog(DEFAULT_WATCHDOG) as dog:
        for phase in dict.fromkeys(u.phase for u in units):
            live = [(i, u, u.exploration(dog)) for i, u in enumerate(units) if u.phase == phase]
            while live:
                still = []
                for i, unit, run in live:
                    done = run.run(SLICE, unit.time_limit)
                    results[i] = run.summary
                    if progress is not None:
                        progress(unit, run.summary, done)
                    if run.summary.trace is not None:
                        return [r for r in results if r is not None]
                    if not done and not _out_of_time(unit, run.summary):
                        still.append((i, unit, run))
                live = still
    return [r for r in results if r is not None]


def _out_of_time(unit: Unit, summary: Summary) -> bool:
    return unit.time_limit is not None and summary.seconds >= unit.time_limit


def run_unit(unit: Unit) -> Summary:
    """A worker's whole job: one unit, to its end."""
    with Watchdog(DEFAULT_WATCHDOG) as dog:
        run = unit.exploration(dog)
        run.run(None, unit.time_limit)
        return run.summary


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_local(units: Sequence[Unit], jobs: int, progress: Progress | None = None) -> list[Summary]:
    """Run the units in `jobs` worker processes; on the first violation, the
    units queued after it are cancelled and the running ones are stopped.
    The results come back in queue order."""
    results: dict[int, Summary] = {}
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init)
    futures: dict[Future[Summary], int] = {}
    finished = False
    try:
        for i, unit in enumerate(units):
            futures[pool.submit(run_unit, unit)] = i
        pending = set(futures)
        stop = False
        while pending and not stop:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                if fut.cancelled():
                    continue
                i = futures[fut]
                summary = fut.result()
                results[i] = summary
                if progress is not None:
                    progress(units[i], summary, True)
                if summary.trace is not None:
                    stop = True
        if stop:
            # A unit earlier in the queue may still find its own violation; the
            # first in queue order is the one reported, so wait for those only.
            first_bad = min(i for i, s in results.items() if s.trace is not None)
            for fut in pending:
                if futures[fut] > first_bad:
                    fut.cancel()
            for fut in pending:
                if not fut.cancelled() and futures[fut] < first_bad:
                    results[futures[fut]] = fut.result()
        finished = not stop
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            # Stopped early (a violation, Ctrl-C): workers still running a
            # unit nobody waits for are ended, not waited for.
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in workers:
                if proc.is_alive():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGTERM)
    return [results[i] for i in sorted(results)]


def merge(parts: Sequence[Summary]) -> Summary:
    """One summary of several units of the same scenario, in queue order."""
    first = parts[0]
    main = parts[-1]  # the last phase's settings (the exhaustive pass, if any)
    out = Summary(first.scenario, first.params, main.strategy, main.seed, main.bound)
    out.max_steps = main.max_steps
    for p in parts:
        out.schedules += p.schedules
        out.steps += p.steps
        out.seconds += p.seconds
        out.redundant += p.redundant
        out.races += p.races
        out.exhaustive = out.exhaustive or p.exhaustive
        if out.trace is None and p.trace is not None:
            out.trace = p.trace
        if p.strategy != main.strategy:
            out.extra[p.strategy] = out.extra.get(p.strategy, 0) + p.schedules
    out.distinct = sum(p.distinct for p in parts if p.strategy == main.strategy)
    if out.trace is not None:
        out.exhaustive = False
    return out


__all__ = ["SLICE", "Unit", "merge", "run_local", "run_serial", "run_unit"]
