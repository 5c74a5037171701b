"""Exploration as units of work, run here, in worker processes, or on a Dask cluster.

`pagemap check` turns its plan into units (unit.py): each names a model (a
scenario, or functions by import path), a strategy and its settings, and a
part of the exploration, from names and numbers alone, never code:

- random and PCT split by schedule numbers, since schedule i depends only
  on the seed and i;
- DFS and DPOR split by schedule prefixes: a unit is a subtree of the search
  (check/strategies/subtree.py).  The plan has one unit per scenario, the
  whole tree; a unit that has run `split` schedules without reaching the end
  of its subtree hands back what is left as new units, one per node of its
  stack with alternatives left, and a race that wants an alternative above a
  unit's subtree makes a unit for it.  So the driver explores until the tree
  yields enough subtrees, and a large subtree splits again, whoever runs it.

Engines run the units (serial.py, local.py, cluster.py); the driver
(driver.py) reads what they report in one fixed order (ledger.py), so the
summary and the first counterexample are the same for 1, 2 or 16 workers
and for every engine.  Ctrl-C and SIGTERM stop it (stop.py); the display
(display.py) shows units done, schedules, rate and time left.
"""

from __future__ import annotations

from collections.abc import Sequence

from pagemap.check.fanout.driver import Engine, Explored, Progress, Status, explore
from pagemap.check.fanout.errors import ClusterUnavailable, FanoutError, UnitFailed, WorkerLost
from pagemap.check.fanout.serial import SerialEngine
from pagemap.check.fanout.stop import Stop
from pagemap.check.fanout.unit import ModelRef, Unit
from pagemap.check.runner import Summary

SPLIT = 200  # DFS and DPOR schedules a unit runs before it hands back the rest


def make_engine(jobs: int = 1, scheduler: str | None = None) -> Engine:
    """The engine `pagemap check` options name: a Dask cluster (`scheduler`:
    an address, or "local" for `jobs` workers here), `jobs` worker processes,
    or this process."""
    if scheduler is not None:
        from pagemap.check.fanout.cluster import DaskEngine

        return DaskEngine(scheduler, jobs)
    if jobs > 1:
        from pagemap.check.fanout.local import LocalEngine

        return LocalEngine(jobs)
    return SerialEngine()


def run_serial(units: Sequence[Unit], progress: Progress | None = None) -> list[Summary]:
    """Run the units in this process; the summaries in the fixed order."""
    return explore(units, SerialEngine(), progress).summaries


def merge(parts: Sequence[Summary]) -> Summary:
    """One summary of a scenario's phases, in order (the portfolio's PCT pass,
    then its DPOR): the last phase's settings, every phase's counts."""
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
        out.timed_out += p.timed_out
        out.exhaustive = out.exhaustive or p.exhaustive
        if out.trace is None and p.trace is not None:
            out.trace = p.trace
        if p.strategy != main.strategy:
            out.extra[p.strategy] = out.extra.get(p.strategy, 0) + p.schedules
    out.distinct = sum(p.distinct for p in parts if p.strategy == main.strategy)
    if out.trace is not None:
        out.exhaustive = False
    return out


__all__ = [
    "SPLIT",
    "ClusterUnavailable",
    "Engine",
    "Explored",
    "FanoutError",
    "ModelRef",
    "Progress",
    "SerialEngine",
    "Status",
    "Stop",
    "Unit",
    "UnitFailed",
    "WorkerLost",
    "explore",
    "make_engine",
    "merge",
    "run_serial",
]
