"""Running schedules: one at a time (`run_schedule`) and many (`explore_model`).

Every schedule gets a fresh Machine whose executor is a SimExecutor driven
by a checker strategy, so the only state carried from one schedule to the
next is the strategy's own (the DFS stack, the coverage tree).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pagemap.check.oracle import ASSERTION, CRASH, LIVENESS, RunContext, Violation
from pagemap.check.strategy import (
    CheckStrategy,
    Chooser,
    Coverage,
    Nondeterminism,
    PCTPolicy,
    SwitchStrategy,
    make_policy,
)
from pagemap.check.trace import Trace
from pagemap.machine import Machine
from pagemap.sync.executor import Deadlock, SimExecutor, StepBudgetExceeded, StepHook

DEFAULT_MAX_STEPS = 20_000


class Model(Protocol):
    """What the runner explores: a scenario with its parameters, or a user's model."""

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> dict[str, int]: ...

    @property
    def cores(self) -> int: ...

    @property
    def memory(self) -> int: ...

    def build(self, ctx: RunContext) -> None: ...


@dataclass
class Outcome:
    """How one schedule ended."""

    violation: Violation | None
    schedule: list[int]
    steps: int
    preemptions: int


def run_schedule(
    model: Model,
    strategy: CheckStrategy,
    max_steps: int = DEFAULT_MAX_STEPS,
    recorder: StepHook | None = None,
) -> Outcome:
    """Build the model on a fresh Machine and run it under `strategy`."""
    sched = SimExecutor(strategy, max_steps)
    machine = Machine(cores=model.cores, memory=model.memory, executor=sched)
    ctx = RunContext(machine, sched)
    ctx.chooser = strategy
    ctx.recorder = recorder
    sched.on_step = ctx.on_step
    strategy.start(sched)
    try:
        violation = _run(ctx, model)
        if violation is None:
            try:
                problems = ctx.finish()
            except Violation as exc:
                problems = [exc]
            except Exception as exc:
                problems = [Violation(CRASH, f"the end-of-run checks raised {_describe(exc)}")]
            violation = problems[0] if problems else None
    finally:
        for fn in reversed(ctx.cleanups):
            fn()
    return Outcome(violation, list(sched.schedule), sched.steps, strategy.preemptions)


def _run(ctx: RunContext, model: Model) -> Violation | None:
    sched = ctx.sched
    try:
        model.build(ctx)
        ctx.machine.run()
    except Violation as exc:
        return exc
    except Nondeterminism:
        raise
    except (Deadlock, StepBudgetExceeded) as exc:
        return Violation(LIVENESS, str(exc))
    except Exception as exc:
        who = next((t.name for t in sched.tasks if t.exc is exc), "set-up")
        oracle = ASSERTION if isinstance(exc, AssertionError) else CRASH
        return Violation(oracle, f"{who} raised {_describe(exc)}")
    return ctx.violation


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Summary:
    """What an exploration did, and the counterexample if it found one."""

    scenario: str
    params: dict[str, int]
    strategy: str
    seed: int
    bound: int | None
    schedules: int = 0
    distinct: int = 0
    exhaustive: bool = False
    steps: int = 0
    seconds: float = 0.0
    trace: Trace | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    @property
    def schedules_per_second(self) -> float:
        return self.schedules / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int], None]


def pct_length(model: Model, max_steps: int) -> int:
    """PCT's k: the steps of the schedule that never preempts.  A function of
    the model alone, so schedule i is the same in every worker process."""
    return max(run_schedule(model, SwitchStrategy({}), max_steps).steps, 1)


def explore_model(
    model: Model,
    strategy: str = "random",
    seed: int = 0,
    budget: int | None = 1000,
    time_limit: float | None = None,
    bound: int | None = None,
    depth: int = 3,
    max_steps: int = DEFAULT_MAX_STEPS,
    first: int = 0,
    progress: Progress | None = None,
    shrink: bool = True,
) -> Summary:
    """Run schedules first, first+1, ... until a violation, the budget, the time
    limit, or (for DFS, or any strategy on a small enough space) exhaustion."""
    from pagemap.check.shrink import shrink_trace

    if budget is None and time_limit is None and strategy != "dfs":
        raise ValueError("an exploration needs a budget or a time limit (or --strategy dfs)")
    policy = make_policy(strategy, seed, depth)
    if isinstance(policy, PCTPolicy):
        policy.learn_length(pct_length(model, max_steps))
    coverage = Coverage()
    summary = Summary(model.name, dict(model.params), strategy, seed, bound)
    t0 = time.perf_counter()
    index = first
    while budget is None or index < first + budget:
        if time_limit is not None and time.perf_counter() - t0 >= time_limit:
            break
        policy.begin(index)
        coverage.begin()
        chooser = Chooser(policy, bound, coverage)
        outcome = run_schedule(model, chooser, max_steps)
        policy.end()
        summary.distinct += coverage.end()
        summary.schedules += 1
        summary.steps += outcome.steps
        if progress is not None:
            progress(1)
        if outcome.violation is not None:
            trace = Trace.from_outcome(model, strategy, seed, index, bound, outcome)
            summary.seconds = time.perf_counter() - t0
            summary.trace = shrink_trace(model, trace, max_steps) if shrink else trace
            return summary
        if policy.exhausted or coverage.complete:
            summary.exhaustive = True
            break
        index += 1
    summary.seconds = time.perf_counter() - t0
    return summary
