"""Exploring your own model, from pytest or anywhere (in the manner of loom).

    def setup(machine):            # build the shared state on the Machine
        return Counter(machine)

    def bump(counter):             # each task function gets that state
        ...

    explore(setup, bump, bump, check=lambda c: c.value == 2)

`explore` runs the tasks on fresh Machines under the SimExecutor with the
same strategies, oracles and traces as `pagemap check`.  A violation (a
failed `check`, an AssertionError or kernel error in a task, a deadlock, the
machine's accounting at the end) raises `CounterexampleFound`, whose message
is the shrunk schedule as a step table.
"""

from __future__ import annotations

import dataclasses
import importlib
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar

from pagemap.check import knobs as settings
from pagemap.check.blocking import check_model
from pagemap.check.context import RunContext
from pagemap.check.database import Database
from pagemap.check.explore import explore_model
from pagemap.check.knobs import FROM_ENV, Knobs
from pagemap.check.modelpath import model_path_args
from pagemap.check.replay import Replay, replay
from pagemap.check.runner import DEFAULT_MAX_STEPS, Summary
from pagemap.check.trace import Trace
from pagemap.hw.memory import parse_size
from pagemap.oracles import ACCOUNTING, Violation

S = TypeVar("S")

CHECK = "check"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


class CounterexampleFound(AssertionError):
    """An exploration found a schedule that breaks an oracle.

    `replay_lines` say how to see it again: the pytest command that replays the
    stored schedule first, and `pagemap replay TRACE --model-path DIR` when the
    model's functions have import paths (DIR: where their modules were found)."""

    def __init__(
        self,
        summary: Summary,
        trace: Trace,
        table: str,
        note: str = "",
        replay_lines: list[str] | None = None,
    ) -> None:
        self.summary = summary
        self.trace = trace
        self.replay_lines = list(replay_lines or [])
        how = note or (
            f"after {summary.schedules} schedule{_s(summary.schedules)} ({trace.strategy}, "
            f"seed {trace.seed})"
        )
        tail = "".join(f"\n{line}" for line in self.replay_lines)
        super().__init__(
            f"{trace.oracle}: {trace.message}\n"
            f"{how}; {trace.steps} step{_s(trace.steps)}, {trace.preemptions} "
            f"preemption{_s(trace.preemptions)}:\n{table}{tail}"
        )


@dataclass(frozen=True)
class FunctionModel(Generic[S]):
    """A model given as functions: setup(machine) -> state; task(state)."""

    name: str
    setup: Callable[[Any], S]
    tasks: tuple[Callable[[S], object], ...]
    check: Callable[[S], object] | None = None
    cores: int = 2
    memory: int = 16 * 4096
    quiescent: bool = True
    params: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """How a trace names this model: import paths, when every function has
        one that leads back to it, so `pagemap replay` can rebuild it."""
        setup = import_path(self.setup)
        tasks = [import_path(fn) for fn in self.tasks]
        check = import_path(self.check) if self.check is not None else None
        names = [setup, *tasks] + ([check] if self.check is not None else [])
        if any(n is None for n in names):
            return {
                "name": self.name,
                "unreplayable": "a function of the model is a lambda, a closure or a local "
                "function, which no import path names; replay it with replay_model()",
            }
        out: dict[str, Any] = {"name": self.name, "setup": setup, "tasks": tasks, "check": check}
        if not self.quiescent:
            out["quiescent"] = False
        return out

    def build(self, ctx: RunContext) -> None:
        state = self.setup(ctx.machine)
        check_model(state, self.tasks)  # a threading.Lock in reach: say so now, not hang
        for i, fn in enumerate(self.tasks):
            ctx.machine.spawn(fn, state, name=f"{getattr(fn, '__name__', 'task')}#{i}")
        if self.check is not None:
            check = self.check
            ctx.at_end(lambda: _verdict(check, state))
        if self.quiescent:
            ctx.at_end(lambda: [Violation(ACCOUNTING, p) for p in ctx.machine.check_quiescent()])


def import_path(obj: object) -> str | None:
    """ "pkg.mod:Qual.name" if importing it gives `obj` back, else None."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is obj else None


def resolve(path: str) -> Any:
    """The object an import path names (ValueError saying why it cannot).  Only
    for import paths this program made itself (a unit of work, check/fanout): a
    trace's are loaded through check/modelpath.py, which refuses code the user did
    not allow."""
    module, _, qualname = path.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except ImportError as exc:
        raise ValueError(f"cannot import {module} (for {path}): {exc}") from None
    except AttributeError:
        raise ValueError(f"{module} has no {qualname} (for {path})") from None
    return found


def _verdict(check: Callable[[S], object], state: S) -> list[Violation]:
    """A check may return False, a list of complaints, or raise AssertionError."""
    try:
        result = check(state)
    except AssertionError as exc:
        return [Violation(CHECK, str(exc) or "the check's assertion failed")]
    if result is False:
        return [Violation(CHECK, "the check returned False")]
    if isinstance(result, list | tuple):
        return [Violation(CHECK, str(p)) for p in result]
    return []


def model(
    setup: Callable[[Any], S],
    *tasks: Callable[[S], object],
    check: Callable[[S], object] | None = None,
    cores: int | None = None,
    memory: int | str = "64KiB",
    name: str | None = None,
) -> FunctionModel[S]:
    if not tasks:
        raise ValueError("a model needs at least one task function")
    return FunctionModel(
        str(name or getattr(setup, "__name__", "model")),
        setup,
        tuple(tasks),
        check,
        cores if cores is not None else len(tasks),
        parse_size(memory),
    )


def explore(
    setup: Callable[[Any], S],
    *tasks: Callable[[S], object],
    check: Callable[[S], object] | None = None,
    strategy: str | None = None,
    budget: int | None = None,
    seed: int | None = None,
    preemptions: int | None = FROM_ENV,
    depth: int = 3,
    cores: int | None = None,
    memory: int | str = "64KiB",
    max_steps: int = DEFAULT_MAX_STEPS,
    shrink: bool = True,
    trace_dir: str | Path | None = None,
) -> Summary:
    """Explore the interleavings of `tasks` over the state `setup` builds.

    The defaults are `pagemap check`'s: DPOR with at most two preemptions, to the
    end of the space (at most 200,000 schedules); random and PCT run 1000.  A
    setting left out is read from PAGEMAP_STRATEGY, PAGEMAP_BUDGET,
    PAGEMAP_PREEMPTIONS ("none": no bound), PAGEMAP_SEED and PAGEMAP_TRACE_DIR
    (check/knobs.py).  Returns the summary when every schedule passes; raises
    CounterexampleFound (an AssertionError, so pytest shows it at the test's line)
    otherwise, after writing the trace to `trace_dir` if there is one.

    Inside a pytest test, with the database on (check/database.py), a schedule that
    failed in an earlier run is replayed first, and a new failing one is stored.
    """
    __tracebackhide__ = True  # pytest points at the test that called explore
    knobs = settings.resolve(strategy, budget, preemptions, seed, trace_dir)
    m = model(setup, *tasks, check=check, cores=cores, memory=memory)
    db = Database.for_current_test()
    if db is not None:
        _replay_stored(db, m, knobs)
    summary = explore_model(
        m,
        knobs.strategy,
        knobs.seed,
        knobs.budget,
        None,
        knobs.preemptions,
        depth,
        max_steps,
        shrink=shrink,
    )
    if summary.trace is None:
        if db is not None:
            db.discard(m)
        return summary
    _found(m, summary, summary.trace, knobs, db, "")


def _replay_stored(db: Database, m: FunctionModel[Any], knobs: Knobs) -> None:
    """Raise CounterexampleFound if the schedule stored for `m` fails again; forget
    it if it no longer does (fixed) or no longer fits the model (changed)."""
    __tracebackhide__ = True
    trace = db.load(m)
    if trace is None:
        return
    # The stored file gives the schedule only: it runs on this test's own functions,
    # and is stored again naming them, whatever model the file named.
    trace.model = m.describe()
    if (trace.cores, trace.memory) == (m.cores, m.memory):
        result = replay(m, trace)
        if result.followed and result.violation is not None:
            trace.oracle, trace.message = result.violation.oracle, result.violation.message
            summary = Summary(m.name, {}, trace.strategy, trace.seed, trace.preemption_bound)
            note = (
                f"the schedule stored for this test in {db.path(m)} fails again (replayed "
                "before exploring; it stays stored until it passes)"
            )
            _found(m, summary, trace, knobs, db, note, result)
    db.discard(m)


def _found(
    m: FunctionModel[Any],
    summary: Summary,
    trace: Trace,
    knobs: Knobs,
    db: Database | None,
    note: str,
    result: Replay | None = None,
) -> NoReturn:
    """Store and write the counterexample, and raise it with the lines that replay it."""
    __tracebackhide__ = True
    how: list[str] = []
    stored = db.save(m, trace) if db is not None else None
    if db is not None:
        how.append(f"replay it: pytest {shlex.quote(db.test)}  (the stored schedule runs first)")
    written = trace.save(knobs.trace_dir) if knobs.trace_dir is not None else None
    # replay imports a model only from a directory named on its command line, so the
    # line names the ones this model's modules were imported from.
    functions = [m.setup, *m.tasks] + ([m.check] if m.check is not None else [])
    model_path = model_path_args(functions) if "setup" in trace.model else None
    for path in (written, stored):
        if path is not None and model_path is not None:
            command = shlex.join(["pagemap", "replay", str(path), *model_path])
            how.append(f"{'or' if how else 'replay it'}: {command}")
            break
    if result is None:
        result = replay(m, trace, explain=True)
    raise CounterexampleFound(summary, trace, render(trace, result), note, how)


def replay_model(
    setup: Callable[[Any], S],
    *tasks: Callable[[S], object],
    trace: Trace,
    check: Callable[[S], object] | None = None,
    cores: int | None = None,
    memory: int | str = "64KiB",
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Replay:
    """Re-run a trace of a model given as functions, one row per step."""
    m = model(setup, *tasks, check=check, cores=cores, memory=memory)
    if max_steps != DEFAULT_MAX_STEPS:
        trace = dataclasses.replace(trace, max_steps=max_steps)
    return replay(m, trace)


def render(trace: Trace, result: Replay, command: str = "") -> str:
    """The counterexample as text for an exception message: a timeline as wide as
    the terminal (80 to 160 columns; narrow at 80)."""
    from pagemap.check.counterexample import as_text, timeline_of

    width = min(max(shutil.get_terminal_size((100, 24)).columns, 80), 160)
    return as_text(timeline_of(trace, result, command), width)
