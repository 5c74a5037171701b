"""Running schedules: one at a time (`run_schedule`) and many (`Exploration`;
`explore_model` in check/explore.py adds the shrinking of a counterexample).

Every schedule gets a fresh Machine whose executor is a SimExecutor driven
by one chooser of the exploration's strategy (check/strategies/), so the only
state carried from one schedule to the next is the strategy's own (the DFS
or DPOR stack).  The SimExecutor runs with its idle clock: virtual time moves
only when no task can run, so no step depends on how many steps came before
it, as partial-order reduction requires.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pagemap.check.blocking import HiddenBlocking
from pagemap.check.context import RunContext
from pagemap.check.footprints import FOOTPRINT, VALIDATE_ENV, FootprintValidator
from pagemap.check.hidden import HiddenStateDetector
from pagemap.check.outcome import Model as Model
from pagemap.check.outcome import Outcome as Outcome
from pagemap.check.strategies import (
    BoundExceeded,
    Chooser,
    Nondeterminism,
    PCTExplorer,
    SleepBlocked,
    SwitchChooser,
    make_explorer,
)
from pagemap.check.trace import Trace
from pagemap.machine import Machine, default_dirty_tracking
from pagemap.oracles import ASSERTION, CRASH, LIVENESS, Violation
from pagemap.sync.core import Deadlock, StepBudgetExceeded, TaskStuck
from pagemap.sync.sim import EventLog, SimExecutor, Site
from pagemap.sync.watchdog import Watchdog

DEFAULT_MAX_STEPS = 20_000
# Seconds a task may run without reaching a scheduling point before the
# watchdog ends the schedule as a liveness violation.
DEFAULT_WATCHDOG = 10.0
# An exhaustive strategy stops here if the space is larger (and says so).
DEFAULT_CAP = 200_000


def run_schedule(
    model: Model,
    chooser: Chooser,
    max_steps: int = DEFAULT_MAX_STEPS,
    record: bool = False,
    watchdog: Watchdog | float | None = None,
    observe: Callable[[RunContext], None] | None = None,
    keep_objects: bool = False,
    validate: bool | None = None,
    sites: Site | None = None,
    dirty_tracking: str | None = None,
) -> Outcome:
    """Build the model on a fresh Machine and run it under `chooser`.

    `record`: log every step (footprints included) into the outcome's
    `log`.  `observe(ctx)` is called once the model is built, before any task
    runs (replay uses it to watch the steps).  `watchdog`: seconds a task may
    go without a point (or a Watchdog shared by an exploration's runs).
    `keep_objects`: the log keeps every object the run makes (replay reads the
    machine's state from them).  `validate`: compare every step's effect
    with its footprint (check/footprints.py), a violation when a step changed
    what it did not declare; None: as PAGEMAP_VALIDATE=1 says.  `sites`: the
    log names the code of each step's point (check/races.py).
    `dirty_tracking`: the Machine's mode where the model names none (None:
    as the Machine's default says); an exploration reads the environment once
    for its schedules rather than once a schedule."""
    return _schedule(
        model,
        chooser,
        max_steps,
        record,
        watchdog,
        observe,
        keep_objects,
        validate,
        sites,
        dirty_tracking,
    )[0]


def _schedule(
    model: Model,
    chooser: Chooser,
    max_steps: int,
    record: bool,
    watchdog: Watchdog | float | None,
    observe: Callable[[RunContext], None] | None,
    keep_objects: bool,
    validate: bool | None,
    sites: Site | None,
    dirty_tracking: str | None,
) -> tuple[Outcome, RunContext]:
    """run_schedule, and the context the run was made in (for `_dismantle`)."""
    if validate is None:
        validate = os.environ.get(VALIDATE_ENV, "") == "1"
    sched = SimExecutor(chooser, max_steps, clock="idle", watchdog=watchdog)
    log = EventLog(keep_objects or validate, sites) if record or validate else None
    sched.record(log)
    machine = Machine(
        cores=model.cores,
        memory=model.memory,
        executor=sched,
        dirty_tracking=getattr(model, "dirty_tracking", None) or dirty_tracking,
    )
    ctx = RunContext(machine, sched)
    chooser.start(sched)
    validator = FootprintValidator(sched, machine.memory.view) if validate else None
    hidden = HiddenStateDetector(sched) if validate else None
    if validator is not None:
        observe = _validating(validator, observe)
    stopped: BaseException | None = None
    try:
        violation: Violation | None
        try:
            if hidden is not None:
                hidden.install()
            violation = _run(ctx, model, observe)
        except (SleepBlocked, BoundExceeded) as exc:
            violation, stopped = None, exc
        finally:
            if hidden is not None:
                hidden.uninstall()
        if validator is not None and hidden is not None:
            if violation is None and stopped is None:
                # Only a run whose tasks all finished: unwinding a task stopped
                # mid-step releases its locks with no point, which is no step's.
                validator.finish()
                hidden.finish()
            problems = [*map(str, validator.problems), *map(str, hidden.problems)]
            if problems:  # found before anything else went wrong
                violation = Violation(FOOTPRINT, problems[0])
        if violation is None and stopped is None:
            violation = _end_checks(ctx)
    finally:
        for fn in reversed(ctx.cleanups):
            fn()
    path = chooser.path
    path.steps = sched.steps
    path.log = log
    return Outcome(violation, path, sched.steps, log, stopped), ctx


def _dismantle(ctx: RunContext) -> None:
    """Break the reference cycles of a finished run's world (its Machine, the
    scheduler that ran it, its context), so that it is freed at once rather
    than by the cycle collector, which otherwise takes a tenth of an
    exploration's time.  Only once nothing reads the run again: its end checks
    and cleanups done, the explorer told, no violation kept.  The outcome's
    path and log are left whole (the log's objects are the scheduler's words
    and locks, which hold their own fields)."""
    ctx.machine.dismantle()
    for part in (ctx.memory, ctx.sched, ctx):
        fields = getattr(part, "__dict__", None)  # None: __slots__ only, left to the collector
        if fields is not None:
            fields.clear()


def _validating(
    validator: FootprintValidator, observe: Callable[[RunContext], None] | None
) -> Callable[[RunContext], None]:
    """`observe`, and the validator's start once the model is built: its first
    state is the one the tasks start from."""

    def start(ctx: RunContext) -> None:
        if observe is not None:
            observe(ctx)
        validator.start()
        chained = ctx.sched.on_event

        def event(i: int) -> None:
            validator.event(i)
            if chained is not None:
                chained(i)

        ctx.sched.on_event = event

    return start


def _run(
    ctx: RunContext, model: Model, observe: Callable[[RunContext], None] | None
) -> Violation | None:
    sched = ctx.sched
    try:
        model.build(ctx)
        if observe is not None:
            observe(ctx)
        ctx.machine.run()
    except Violation as exc:
        return exc
    except (Nondeterminism, SleepBlocked, BoundExceeded, HiddenBlocking):
        raise
    except (Deadlock, StepBudgetExceeded) as exc:
        return Violation(LIVENESS, str(exc))
    except TaskStuck as exc:
        if exc.blocked_on:
            # Not a schedule's fault: every schedule that reaches the lock stops there.
            raise HiddenBlocking(str(exc)) from None
        return Violation(LIVENESS, str(exc))
    except Exception as exc:
        who = next((t.name for t in sched.tasks if t.exc is exc), "set-up")
        oracle = ASSERTION if isinstance(exc, AssertionError) else CRASH
        return Violation(oracle, f"{who} raised {_describe(exc)}")
    return ctx.violation


def _end_checks(ctx: RunContext) -> Violation | None:
    try:
        problems = ctx.finish()
    except Violation as exc:
        problems = [exc]
    except Exception as exc:
        problems = [Violation(CRASH, f"the end-of-run checks raised {_describe(exc)}")]
    return problems[0] if problems else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Summary:
    """What an exploration did, and the counterexample if it found one.

    `distinct`: Mazurkiewicz traces for DPOR (every schedule it runs to the
    end is one), distinct schedules otherwise.  `redundant`: schedules DPOR
    cut short as reorderings of explored ones, or because the bound left no
    continuation.  `exhaustive`: the strategy covered its whole space (within
    the preemption bound)."""

    scenario: str
    params: dict[str, int]
    strategy: str
    seed: int
    bound: int | None
    max_steps: int = DEFAULT_MAX_STEPS
    schedules: int = 0
    distinct: int = 0
    redundant: int = 0
    exhaustive: bool = False
    steps: int = 0
    seconds: float = 0.0
    trace: Trace | None = None
    races: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    timed_out: int = 0  # units of work that ran past the unit timeout (check/fanout)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    @property
    def schedules_per_second(self) -> float:
        return self.schedules / self.seconds if self.seconds > 0 else 0.0


Progress = Callable[[int], None]


def pct_length(model: Model, max_steps: int) -> tuple[int, Outcome]:
    """PCT's k: the steps of the schedule that never preempts (a function of
    the model alone, so schedule i is the same in every worker process), and
    how that run ended: it is a run like any other, and may fail."""
    outcome = run_schedule(model, SwitchChooser({}), max_steps)
    return max(outcome.steps, 1), outcome


class Exploration:
    """One strategy exploring one model, a slice at a time.

    `run(count)` runs up to `count` more schedules (None: until the end) and
    says whether the exploration is over: a violation was found, the space
    was covered, or the budget is spent.  The portfolio of `pagemap check`
    interleaves explorations of many scenarios this way.
    """

    def __init__(
        self,
        model: Model,
        strategy: str = "dpor",
        seed: int = 0,
        bound: int | None = None,
        depth: int = 3,
        max_steps: int = DEFAULT_MAX_STEPS,
        first: int = 0,
        budget: int | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.explorer = make_explorer(strategy, seed, bound, depth)
        self.max_steps = max_steps
        self.index = first
        self.end = None if budget is None else first + budget
        self.dog = watchdog
        self.summary = Summary(model.name, dict(model.params), strategy, seed, bound, max_steps)
        self.outcome: Outcome | None = None  # the failing schedule's, once found
        self.done = False
        if isinstance(self.explorer, PCTExplorer):
            length, learned = pct_length(model, max_steps)
            self.explorer.learn_length(length)
            if learned.violation is not None and (budget is None or budget > 0):
                # Its verdict is this exploration's first: a failure seen is
                # never dropped (test_verdicts.py), whichever run saw it.
                self.summary.schedules += 1
                self.summary.steps += learned.steps
                self._found(learned)

    def run(
        self,
        count: int | None = None,
        time_limit: float | None = None,
        progress: Progress | None = None,
    ) -> bool:
        """Run up to `count` schedules (or for `time_limit` seconds); True once over."""
        summary, explorer = self.summary, self.explorer
        t0 = time.perf_counter()
        ran = 0
        # What run_schedule and Machine would read from the environment for
        # every schedule, read once for this slice of them: the same for each,
        # since a model that patches it (a mutant's, check/mutants/base.py)
        # does so in build, after its Machine is made, and undoes it at the end.
        validate = os.environ.get(VALIDATE_ENV, "") == "1"
        dirty_tracking = default_dirty_tracking()
        while not self.done and (count is None or ran < count):
            if self.end is not None and self.index >= self.end:
                self.done = True
                break
            if time_limit is not None and time.perf_counter() - t0 >= time_limit:
                break
            chooser = explorer.chooser(self.index)
            if chooser is None:
                self.done = True
                break
            outcome, ctx = _schedule(
                self.model,
                chooser,
                self.max_steps,
                explorer.records_steps,
                self.dog,
                None,
                False,
                validate,
                None,
                dirty_tracking,
            )
            explorer.finished(chooser, outcome)
            if outcome.violation is None:
                _dismantle(ctx)
            ran += 1
            summary.schedules += 1
            summary.steps += outcome.steps
            if progress is not None:
                progress(1)
            if outcome.violation is not None:
                self._found(outcome)
            self.index += 1
        summary.seconds += time.perf_counter() - t0
        summary.exhaustive = explorer.exhausted and summary.trace is None
        summary.distinct = explorer.distinct
        summary.redundant = explorer.redundant
        summary.races = getattr(explorer, "races", 0)
        return self.done

    def _found(self, outcome: Outcome) -> None:
        """A counterexample at schedule `index`: the exploration is over."""
        summary = self.summary
        self.outcome = outcome
        summary.trace = Trace.from_outcome(
            self.model,
            self.strategy,
            summary.seed,
            self.index,
            summary.bound,
            self.max_steps,
            outcome,
        )
        self.done = True
