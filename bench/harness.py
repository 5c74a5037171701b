"""The tiny harness every benchmark module uses.

A benchmark module `bench/bench_*.py` defines `run(report: Report) -> None`
and calls `report.add(...)` once per figure.  `python -m bench` runs them all
(or those named on the command line), prints one table, and writes
bench/results.json: a list of {"name", "value", "unit", "baseline", "ratio"}.

Every speed figure is measured in paired rounds: each round runs the subject
and its baseline (doing the same work) once each, in the same process, the
order alternating from round to round; a figure is the median of the
subject's rounds, its baseline the median of the baseline's, and its ratio
the median of the per-round ratios (not the ratio of two medians, and never
each side's best taken apart: the two sides of one round share whatever else
the machine was doing then).  A figure with no baseline is the median of its
rounds too.  `paired` times two callables; `interleave` runs any number of
self-timed candidates and keeps every round (`Rounds`), for modules whose
rounds measure several things at once.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

ROUNDS = 15


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None


@dataclass(frozen=True)
class Paired:
    """Medians of paired rounds: seconds per operation of each side, and the
    median of the per-round ratios subject / baseline (`ratio`) and
    baseline / subject (`speedup`, the ratio of two rates)."""

    subject: float
    baseline: float
    ratio: float
    speedup: float
    rounds: int


class Report:
    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        baseline: float | None = None,
        ratio: float | None = None,
    ) -> Figure:
        """Record a figure; with a baseline and no ratio given (a count, the
        same every run), ratio = value / baseline."""
        if ratio is None and baseline:
            ratio = value / baseline
        fig = Figure(name, value, unit, baseline, ratio)
        self.figures.append(fig)
        return fig

    def add_time(self, name: str, p: Paired, unit: str, scale: float = 1.0) -> Figure:
        """A paired figure as a time per operation (seconds times `scale`)."""
        return self.add(name, p.subject * scale, unit, p.baseline * scale, p.ratio)

    def add_rate(self, name: str, p: Paired, unit: str, scale: float = 1.0) -> Figure:
        """A paired figure as a rate (`scale` operations per operation timed, per second)."""
        return self.add(name, scale / p.subject, unit, scale / p.baseline, p.speedup)

    def as_json(self) -> list[dict[str, object]]:
        return [asdict(f) for f in self.figures]


@dataclass
class Rounds:
    """Every round's value of each candidate, in round order."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def ratio(self, subject: str, baseline: str) -> float:
        """The median over rounds of subject / baseline in the same round."""
        pairs = zip(self.values[subject], self.values[baseline], strict=True)
        return statistics.median(s / b for s, b in pairs)

    def paired(self, subject: str, baseline: str) -> Paired:
        return Paired(
            self.median(subject),
            self.median(baseline),
            self.ratio(subject, baseline),
            self.ratio(baseline, subject),
            len(self.values[subject]),
        )


def interleave(
    candidates: Mapping[str, Callable[[], float]],
    rounds: int = ROUNDS,
    into: Rounds | None = None,
    progress: str | None = None,
) -> Rounds:
    """Call every candidate once a round, `rounds` rounds, in turn, the order
    reversed every other round (no side always runs first, after the other's
    garbage); each returns the value of its round (seconds, say), kept under
    its name.  A candidate may add values of its own to `into` as well."""
    got = into if into is not None else Rounds()
    names = list(candidates)
    gc.collect()
    for r in range(rounds):
        if progress:
            print(f"  {progress}: round {r + 1}/{rounds}", flush=True)
        for name in names if r % 2 == 0 else reversed(names):
            got.add(name, candidates[name]())
    return got


def timer(
    fn: Callable[[int], object], n: int, setup: Callable[[], object] | None = None
) -> Callable[[], float]:
    """A candidate: seconds per operation of fn(n), which performs n
    operations, with `setup` run before it, outside the clock."""

    def timed() -> float:
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn(n)
        return (time.perf_counter() - t0) / n

    return timed


def paired(
    subject: Callable[[int], object],
    baseline: Callable[[int], object],
    n: int = 1,
    rounds: int = ROUNDS,
    setup: Callable[[], object] | None = None,
    baseline_setup: Callable[[], object] | None = None,
) -> Paired:
    """subject(n) against baseline(n), each performing n operations, in
    paired rounds (the order alternating).  `setup` runs before each side
    (`baseline_setup`, if given, before the baseline instead), outside the
    clock."""
    got = interleave(
        {
            "subject": timer(subject, n, setup),
            "baseline": timer(baseline, n, baseline_setup or setup),
        },
        rounds,
    )
    return got.paired("subject", "baseline")


def median_time(
    fn: Callable[[int], object],
    n: int = 1,
    rounds: int = ROUNDS,
    setup: Callable[[], object] | None = None,
) -> float:
    """Seconds per operation of fn(n), the median of `rounds` rounds (a
    figure with no baseline)."""
    return interleave({"it": timer(fn, n, setup)}, rounds).median("it")
