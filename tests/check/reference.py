"""A brute-force reference for the checker's exhaustive strategies.

It enumerates every interleaving of a generated program (tests/check/programs.py)
by re-running it from scratch, on a fresh Machine each time, with a strategy
of its own that follows a given prefix of choices and then never preempts;
every other candidate at every choice point past the prefix becomes a new
prefix to run.  Each schedule is run exactly once, and its final state kept
with its number of preemptions.

It shares no code with check/strategies, check/path.py or check/runner.py:
only the SimExecutor (the thing being scheduled) and the bare Strategy
protocol of sync/core.py.  Its own definitions:

- a *choice point* is a call of `pick`: the SimExecutor offers a choice only
  where two or more tasks may go;
- a choice is a *preemption* when the task at the point could have gone on
  (it is among the candidates) and another is chosen.  At a relax point the
  spinning task is not among the candidates (it asked to let others go
  first, sync/sim.py), and after a task blocks or ends there is no task at
  the point: neither is a preemption;
- under a bound, a prefix whose choices cost more preemptions than the
  bound is never run (its continuation never preempts, so every run stays
  within the bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pagemap.machine import Machine
from pagemap.sync.core import RELAX, Strategy, Task
from pagemap.sync.sim import SimExecutor
from tests.check.programs import CORES_MEMORY, Final, Program, final_state, setup_world
from tests.check.programs import task_functions as _tasks

MAX_STEPS = 5_000
MAX_SCHEDULES = 2_000_000


class ReplayDiverged(AssertionError):
    """A prefix ran differently the second time: the program is not a function of its schedule."""


@dataclass
class Choice:
    """One choice point of a run: the candidates (task ids, in order), the
    task that could have gone on (-1: none), and the one chosen."""

    candidates: tuple[int, ...]
    could_go_on: int
    chosen: int


@dataclass
class Run:
    choices: list[Choice] = field(default_factory=list)
    preemptions: int = 0
    final: Final | None = None


class FollowThenStay(Strategy):
    """Chooses `prefix[k]` at choice point k, then keeps the task that could
    go on (or, when none can, the lowest candidate): no preemption after
    the prefix."""

    def __init__(self, prefix: Sequence[int], expected: Sequence[tuple[int, ...]]) -> None:
        self.prefix = prefix
        self.expected = expected  # the candidates the prefix's points had when first run
        self.run = Run()

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        k = len(self.run.choices)
        candidates = tuple(t.tid for t in runnable)
        stays = current is not None and kind != RELAX and any(t is current for t in runnable)
        could_go_on = current.tid if stays and current is not None else -1
        if k < len(self.prefix):
            if k < len(self.expected) and candidates != self.expected[k]:
                raise ReplayDiverged(
                    f"choice point {k}: candidates {candidates}, before {self.expected[k]}"
                )
            want = self.prefix[k]
        else:
            want = could_go_on if could_go_on >= 0 else candidates[0]
        chosen = next(t for t in runnable if t.tid == want)
        if could_go_on >= 0 and want != could_go_on:
            self.run.preemptions += 1
        self.run.choices.append(Choice(candidates, could_go_on, want))
        return chosen


def run_once(
    program: Program, prefix: Sequence[int], expected: Sequence[tuple[int, ...]] = ()
) -> Run:
    """One schedule of `program` on a fresh Machine, as the checker runs one:
    the SimExecutor with its idle clock (timed waits give up only when no
    task can run)."""
    strategy = FollowThenStay(prefix, expected)
    sched = SimExecutor(strategy, MAX_STEPS, clock="idle")
    machine = Machine(cores=len(program), memory=CORES_MEMORY, executor=sched)
    world = setup_world(machine, len(program))
    for i, fn in enumerate(_tasks(program)):
        machine.spawn(fn, world, name=f"t{i}")
    machine.run()  # a generated program never fails: anything raised is a bug here
    strategy.run.final = final_state(world)
    return strategy.run


@dataclass
class Enumeration:
    """Every final state with the fewest preemptions any schedule reaching it
    took, and the number of schedules run."""

    fewest: dict[Final, int]
    schedules: int

    def finals(self, bound: int | None) -> set[Final]:
        return {s for s, p in self.fewest.items() if bound is None or p <= bound}


def enumerate_schedules(program: Program, bound: int | None = None) -> Enumeration:
    """Run every schedule of `program` with at most `bound` preemptions (None:
    all of them), each once."""
    fewest: dict[Final, int] = {}
    todo: list[tuple[tuple[int, ...], tuple[tuple[int, ...], ...], int]] = [((), (), 0)]
    schedules = 0
    while todo:
        prefix, expected, cost = todo.pop()
        run = run_once(program, prefix, expected)
        schedules += 1
        if schedules > MAX_SCHEDULES:
            raise RuntimeError(f"more than {MAX_SCHEDULES} schedules: the program is too large")
        assert run.preemptions == cost, (prefix, run.preemptions, cost)
        assert run.final is not None
        if run.final not in fewest or run.preemptions < fewest[run.final]:
            fewest[run.final] = run.preemptions
        # Preemptions of the run before each choice point past the prefix (the
        # continuation never preempts, so it is the prefix's cost throughout).
        seen = tuple(c.candidates for c in run.choices)
        taken = tuple(c.chosen for c in run.choices)
        for k in range(len(prefix), len(run.choices)):
            point = run.choices[k]
            for tid in point.candidates:
                if tid == point.chosen:
                    continue
                more = 1 if point.could_go_on >= 0 and tid != point.could_go_on else 0
                if bound is not None and cost + more > bound:
                    continue  # past the bound: never run
                todo.append(((*taken[:k], tid), seen[: k + 1], cost + more))
    return Enumeration(fewest, schedules)


BOUNDS: tuple[int | None, ...] = (0, 1, 2, None)


def reference_finals(program: Program) -> dict[int | None, set[Final]]:
    """The final states at bounds 0, 1, 2 and none, from one unbounded
    enumeration: a final state is reached within bound b exactly when some
    schedule reaching it has at most b preemptions."""
    every = enumerate_schedules(program, None)
    return {b: every.finals(b) for b in BOUNDS}


__all__ = [
    "BOUNDS",
    "Enumeration",
    "FollowThenStay",
    "ReplayDiverged",
    "enumerate_schedules",
    "reference_finals",
    "run_once",
]
