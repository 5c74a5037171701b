"""Exploration across processes and machines: speed-up, cost per unit, DPOR's loss when split.

Every timed figure is a ratio against a baseline doing the same work, driven
from the same process, in paired rounds (the harness's rule: each figure the
median of its ROUNDS rounds, each ratio the median of the per-round ratios,
the order of the candidates reversed every other round):

- schedules/s of one exploration (DPOR <= 2 preemptions over the first SCENARIOS scenarios
  to the end, as `pagemap check`'s DPOR pass, split every SPLIT schedules)
  with 2 workers against 1 worker, per engine (local processes, a local Dask
  cluster; goal: at least 1.7x for local processes on two cores), and each
  engine's 1 worker against this process alone.  The engine's start and
  close are left out (explore's own clock).  Beside them, the share of its
  workers' time an engine keeps them inside units (against all of it), and
  the ceiling the machine gives: the same scenarios cut in two halves of
  about as many schedules, each run in a process of its own at once,
  against the whole in one process (on a machine others share, or whose
  two cores are one core's two hyperthreads, no engine can beat it);
- the cost of a unit of work: seconds per unit of one PCT schedule of
  load-remove through each engine (1 worker), against the same units in
  this process; and the rate at which the driver reads schedules' reports
  in the fixed order (the ledger), against the rate one worker runs them;
- DPOR's loss when split (subtrees share no source sets, and a subtree a
  request makes sleeps only what its node had explored when it froze):
  schedules to cover those scenarios split every SPLIT and every 25
  schedules, against DPOR unsplit, under a bound of 2 and with none (with
  none, the scenarios DPOR unsplit covers within UNBOUNDED_CAP schedules).
  These are counts, the same in every run.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor

from bench.harness import Report, Rounds, interleave
from pagemap.check.fanout import SPLIT, Engine, SerialEngine, Unit, explore, run_serial
from pagemap.check.fanout.cluster import DaskEngine
from pagemap.check.fanout.ledger import Ledger
from pagemap.check.fanout.local import LocalEngine
from pagemap.check.fanout.unit import Batch
from pagemap.check.runner import DEFAULT_CAP, DEFAULT_MAX_STEPS
from pagemap.check.scenarios import registry

ROUNDS = 3
BOUND = 2
# The registry's first scenarios (the page map's own), a plan of about 4,000
# schedules: every scenario (some 50) would take `make bench` past its
# half hour on two cores, and the figures are rates and ratios of one plan.
SCENARIOS = 4
TINY_UNITS = 200
UNBOUNDED_CAP = 3000


def _unit(
    name: str,
    strategy: str,
    split: int | None,
    bound: int | None = BOUND,
    first: int = 0,
    budget: int = DEFAULT_CAP,
) -> Unit:
    params = tuple(sorted(registry()[name].model().params.items()))
    bound = bound if strategy == "dpor" else None
    return Unit(name, params, strategy, 0, bound, 3, DEFAULT_MAX_STEPS, first, budget, split=split)


def _names() -> list[str]:
    return list(registry())[:SCENARIOS]


def _whole(split: int | None) -> list[Unit]:
    return [_unit(n, "dpor", split) for n in _names()]


class _Busy:
    """An engine, and the seconds its workers spent inside units."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    def workers(self) -> int:
        return self.inner.workers()

    def submit(self, uid: int, unit: Unit) -> None:
        self.inner.submit(uid, unit)

    def pump(self, want: int | None, timeout: float) -> list[Batch]:
        got = self.inner.pump(want, timeout)
        self.seconds += sum(b.end.seconds for b in got if b.end is not None)
        return got

    def cancel(self, uids: Iterable[int]) -> None:
        self.inner.cancel(uids)

    def halt(self, grace: float) -> list[Batch]:
        return self.inner.halt(grace)

    def close(self) -> None:
        self.inner.close()


def _seconds(plan: list[Unit], engine: Engine, jobs: int = 1) -> tuple[float, float, int]:
    """Seconds of `plan` on `engine` (started already; its close not
    counted), the share of its workers' time spent inside units, and its
    schedules."""
    busy = _Busy(engine)
    done = explore(plan, busy)
    assert all(s.trace is None for s in done.summaries), "the real kernel failed a scenario"
    seconds = done.status.seconds
    return seconds, busy.seconds / (jobs * seconds), done.status.schedules


def _serial_seconds(plan: list[Unit]) -> float:
    """Seconds of the plan in this process, as `pagemap check` runs it."""
    t0 = time.perf_counter()
    run_serial(plan)
    return time.perf_counter() - t0


def _halves(plan: list[Unit], counts: dict[str, int]) -> list[list[Unit]]:
    """The plan's scenarios in two halves of about as many schedules."""
    halves: list[list[Unit]] = [[], []]
    load = [0, 0]
    for unit in sorted(plan, key=lambda u: -counts[u.scenario]):
        i = load.index(min(load))
        halves[i].append(unit)
        load[i] += counts[unit.scenario]
    return halves


def _ceiling(parts: list[list[Unit]], pool: ProcessPoolExecutor) -> float:
    """Seconds of the parts, each run in a process of its own at once."""
    t0 = time.perf_counter()
    list(pool.map(_serial_seconds, parts))
    return time.perf_counter() - t0


ENGINES: dict[str, Callable[[int], Engine]] = {
    "local processes": LocalEngine,
    "a local Dask cluster": lambda jobs: DaskEngine("local", jobs),
}


def speedup_figures(report: Report) -> None:
    plan = _whole(SPLIT)
    counts = {s.scenario: s.schedules for s in run_serial(plan)}
    count = sum(counts.values())  # the answer is the same on every engine: so is its count
    spawn = multiprocessing.get_context("spawn")
    got = Rounds()  # seconds of each candidate (the same schedules), and the engines' busy share

    def on(name: str, make: Callable[[int], Engine], jobs: int) -> Callable[[], float]:
        def once() -> float:
            engine = make(jobs)
            time.sleep(0.5)  # workers up and imported
            seconds, busy, schedules = _seconds(plan, engine, jobs)
            assert schedules == count, (name, jobs, schedules, count)
            got.add(f"{name} {jobs} busy", busy)
            return seconds

        return once

    with ProcessPoolExecutor(2, mp_context=spawn) as pool:
        list(pool.map(math.sqrt, [1.0, 2.0]))  # both processes up before any timing
        candidates: dict[str, Callable[[], float]] = {
            "this process": lambda: _seconds(plan, SerialEngine())[0]
        }
        for name, make in ENGINES.items():
            for jobs in (1, 2):
                candidates[f"{name} {jobs}"] = on(name, make, jobs)
        candidates["ceiling 1"] = lambda: _ceiling([plan], pool)
        candidates["ceiling 2"] = lambda: _ceiling(_halves(plan, counts), pool)
        interleave(candidates, ROUNDS, into=got, progress="fanout speed-up")
    what = f"DPOR <={BOUND} over {', '.join(_names())}, split every {SPLIT} ({count:,} schedules)"
    report.add_rate(
        f"the machine's ceiling: {what}, its scenarios in 2 halves run at once in 2 processes, "
        "schedules/s (vs the whole in 1 process)",
        got.paired("ceiling 2", "ceiling 1"),
        "schedules/s",
        count,
    )
    for name in ENGINES:
        report.add_rate(
            f"{what}, on {name}, 2 workers: schedules/s (vs 1 worker)",
            got.paired(f"{name} 2", f"{name} 1"),
            "schedules/s",
            count,
        )
        report.add(
            f"{what}, on {name}, 2 workers: seconds inside units (vs 2 x the seconds of the "
            "exploration): how busy the engine keeps its workers",
            got.median(f"{name} 2 busy"),
            "share",
            baseline=1.0,
        )
        report.add_rate(
            f"{what}, on {name}, 1 worker: schedules/s (vs this process alone)",
            got.paired(f"{name} 1", "this process"),
            "schedules/s",
            count,
        )


class _Recorder:
    """The serial engine, keeping every Batch it hands back."""

    name = "recorder"

    def __init__(self) -> None:
        self.inner = SerialEngine()
        self.batches: list[Batch] = []

    def workers(self) -> int:
        return 1

    def submit(self, uid: int, unit: Unit) -> None:
        self.inner.submit(uid, unit)

    def pump(self, want: int | None, timeout: float) -> list[Batch]:
        got = self.inner.pump(want, timeout)
        self.batches += got
        return got

    def cancel(self, uids: Iterable[int]) -> None:
        self.inner.cancel(uids)

    def halt(self, grace: float) -> list[Batch]:
        return []

    def close(self) -> None:
        self.inner.close()


def _read(plan: list[Unit], batches: list[Batch]) -> float:
    """Seconds for the driver to read `batches` in the fixed order."""
    t0 = time.perf_counter()
    ledger = Ledger(plan)
    for batch in batches:
        ledger.take(batch)
        ledger.settle()
    assert ledger.settle() is None
    return time.perf_counter() - t0


def unit_cost_figures(report: Report) -> None:
    tiny = [_unit("load-remove", "pct", None, None, i, 1) for i in range(TINY_UNITS)]
    plan = _whole(SPLIT)
    got = Rounds()

    def here() -> float:
        t0 = time.perf_counter()
        explore(tiny, SerialEngine())
        return (time.perf_counter() - t0) / TINY_UNITS

    def on(make: Callable[[int], Engine]) -> Callable[[], float]:
        def once() -> float:
            engine = make(1)
            time.sleep(0.5)
            return explore(tiny, engine).status.seconds / TINY_UNITS

        return once

    def run_and_read() -> float:
        """Seconds per schedule one worker runs; and (kept apart) per
        schedule the driver reads, of the same batches."""
        recorder = _Recorder()
        t0 = time.perf_counter()
        done = explore(plan, recorder)
        seconds = time.perf_counter() - t0
        count = done.status.schedules
        got.add("read", _read(plan, recorder.batches) / count)
        return seconds / count

    candidates = {"this process": here} | {name: on(make) for name, make in ENGINES.items()}
    interleave(candidates | {"run": run_and_read}, ROUNDS, into=got, progress="fanout unit cost")
    for name in ENGINES:
        report.add_time(
            f"a unit of work (one PCT schedule of load-remove) on {name}, 1 worker: "
            "seconds per unit (vs the same unit in this process)",
            got.paired(name, "this process"),
            "s",
        )
    report.add_rate(
        "schedules/s the driver reads in the fixed order, on one core (vs schedules/s one "
        f"worker runs; DPOR <={BOUND} over the first {SCENARIOS} scenarios): the workers one "
        "driver keeps up with",
        got.paired("read", "run"),
        "schedules/s",
    )


def _schedules(plan: list[Unit]) -> tuple[int, int, bool]:
    """Schedules, units and whether every scenario was covered to the end."""
    done = explore(plan, SerialEngine())
    covered = all(s.exhaustive for s in done.summaries)
    return sum(s.schedules for s in done.summaries), done.status.units, covered


def split_figures(report: Report) -> None:
    for bound in (BOUND, None):
        names = _names()
        if bound is None:
            # The scenarios DPOR unsplit covers within the cap, and their schedules.
            tried = {
                n: _schedules([_unit(n, "dpor", None, None, budget=UNBOUNDED_CAP)]) for n in names
            }
            names = [n for n, (_, _, covered) in tried.items() if covered]
            whole = sum(tried[n][0] for n in names)
        else:
            whole, _, covered = _schedules([_unit(n, "dpor", None, bound) for n in names])
            assert covered
        said = f"<={bound} preemptions" if bound is not None else "no preemption bound"
        for split in (SPLIT, 25):
            parts, units, covered = _schedules([_unit(n, "dpor", split, bound) for n in names])
            assert covered
            report.add(
                f"DPOR, {said}, split every {split} schedules ({units} units): schedules to "
                f"cover {len(names)} scenarios (vs unsplit)",
                parts,
                "schedules",
                baseline=whole,
            )


def run(report: Report) -> None:
    print(f"  DPOR split and unsplit over {', '.join(_names())}", flush=True)
    split_figures(report)
    unit_cost_figures(report)
    speedup_figures(report)
