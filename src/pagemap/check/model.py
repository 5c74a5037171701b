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
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pagemap.check.context import RunContext
from pagemap.check.oracles import ACCOUNTING, Violation
from pagemap.check.replay import Replay, replay
from pagemap.check.runner import DEFAULT_CAP, DEFAULT_MAX_STEPS, Summary, explore_model
from pagemap.check.strategies import DEFAULT_BOUND, DEFAULT_STRATEGY, EXHAUSTIVE
from pagemap.check.trace import Trace
from pagemap.hw.memory import parse_size

S = TypeVar("S")

CHECK = "check"


class CounterexampleFound(AssertionError):
    """An exploration found a schedule that breaks an oracle."""

    def __init__(self, summary: Summary, trace: Trace, table: str) -> None:
        self.summary = summary
        self.trace = trace
        super().__init__(
            f"{trace.oracle}: {trace.message}\n"
            f"after {summary.schedules} schedule(s) ({trace.strategy}, seed {trace.seed}); "
            f"{trace.steps} steps, {trace.preemptions} preemptions:\n{table}"
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
    """The object an import path names (ValueError saying why it cannot)."""
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
    strategy: str = DEFAULT_STRATEGY,
    budget: int | None = None,
    seed: int = 0,
    preemptions: int | None = DEFAULT_BOUND,
    depth: int = 3,
    cores: int | None = None,
    memory: int | str = "64KiB",
    max_steps: int = DEFAULT_MAX_STEPS,
    shrink: bool = True,
    trace_dir: str | Path | None = None,
) -> Summary:
    """Explore the interleavings of `tasks` over the state `setup` builds.

    The defaults are `pagemap check`'s: DPOR with at most two preemptions,
    to the end of the space (or `budget` schedules; at most 200,000 when no
    budget is given).  Random and PCT need a budget.  Returns the summary when
    every schedule passes; raises CounterexampleFound (an AssertionError, so
    pytest shows it) otherwise, after writing the trace to `trace_dir` if one
    is given.
    """
    m = model(setup, *tasks, check=check, cores=cores, memory=memory)
    if budget is None and strategy in EXHAUSTIVE:
        budget = DEFAULT_CAP
    if strategy not in EXHAUSTIVE:
        preemptions = None if preemptions == DEFAULT_BOUND else preemptions
    summary = explore_model(
        m, strategy, seed, budget, None, preemptions, depth, max_steps, shrink=shrink
    )
    if summary.trace is None:
        return summary
    trace = summary.trace
    command = ""
    if trace_dir is not None:
        path = trace.save(trace_dir)
        if "setup" in trace.model:
            command = f"pagemap replay {path}"
    result = replay(m, trace)
    raise CounterexampleFound(summary, trace, render(trace, result, command))


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
