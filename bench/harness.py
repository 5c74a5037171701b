"""The tiny harness every benchmark module uses.

A benchmark module `bench/bench_*.py` defines `run(report: Report) -> None`
and calls `report.add(...)` once per figure.  `python -m bench` runs them all
(or those named on the command line), prints one table, and writes
bench/results.json: a list of {"name", "value", "unit", "baseline", "ratio"}.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None


class Report:
    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def add(self, name: str, value: float, unit: str, baseline: float | None = None) -> Figure:
        """Record a figure; with a baseline, ratio = value / baseline."""
        ratio = value / baseline if baseline else None
        fig = Figure(name, value, unit, baseline, ratio)
        self.figures.append(fig)
        return fig

    def as_json(self) -> list[dict[str, object]]:
        return [asdict(f) for f in self.figures]


def best_time(fn: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """The fastest of `repeat` runs of `number` calls, in seconds per call.

    The minimum is the figure least disturbed by a shared, noisy machine.
    """
    best = float("inf")
    gc.collect()
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def per_op(fn: Callable[[int], object], n: int, repeat: int = 5) -> float:
    """Seconds per operation of fn(n), which performs n operations."""
    return best_time(lambda: fn(n), repeat=repeat) / n


ROUNDS = 15


def interleaved(
    subject: Callable[[int], object],
    baseline: Callable[[int], object],
    n: int,
    rounds: int = ROUNDS,
    setup: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """(seconds per operation of subject(n), of baseline(n)), each the best of
    `rounds`, the two run in turn within each round: whatever else the machine
    is doing at a moment weighs on both alike.  `setup`, if given, runs
    before each of them, outside the clock."""
    best_s = best_b = float("inf")
    gc.collect()
    for _ in range(rounds):
        for which in (0, 1):
            if setup is not None:
                setup()
            fn = subject if which == 0 else baseline
            t0 = time.perf_counter()
            fn(n)
            took = (time.perf_counter() - t0) / n
            if which == 0:
                best_s = min(best_s, took)
            else:
                best_b = min(best_b, took)
    return best_s, best_b
