"""The final state of a schedule, as one hash: what DPOR and DFS must agree on.

A schedule's final state is everything an oracle could look at once the run is
over: every word, lock, semaphore and TLB the run's executor made (named, since
two equivalent schedules may make them in another order), every per-frame word,
the bytes of every frame, the host files of the scenario's scratch directory
(all taken once the tasks are done, before the scenario's end checks run),
and the verdict (the violation's oracle and message, or none).  Two schedules
of one Mazurkiewicz trace end in the same state, so an exploration that covers
every trace DFS covers reaches exactly DFS's set of final states.

`explore_states(model, strategy, bound)` explores like `explore_model` (same
explorers, same runner) and collects that set.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from pagemap.check.context import RunContext
from pagemap.check.decode import name_of
from pagemap.check.runner import DEFAULT_MAX_STEPS, Model, run_schedule
from pagemap.check.strategies import make_explorer
from pagemap.hw.mmu import TLB
from pagemap.oracles import Violation
from pagemap.sync.arrays import AtomicArray
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import Semaphore, SpinLock


@dataclass
class States:
    """What one exploration reached."""

    finals: set[str] = field(default_factory=set)
    schedules: int = 0
    exhaustive: bool = False


def state_hash(ctx: RunContext, violation: Violation | None) -> str:
    """The run's final state, hashed (see the module docstring)."""
    h = hashlib.blake2b(digest_size=16)
    log = ctx.sched.log
    assert log is not None and log.objects is not None, "record with keep_objects"
    rows = sorted(row for obj in log.objects if (row := _row(obj)) is not None)
    for row in rows:
        h.update(row.encode())
    for name in sorted(ctx.sched.keyed):
        table = ctx.sched.keyed[name]
        if isinstance(table, AtomicArray):
            h.update(name.encode())
            h.update(table.words.tobytes())
    h.update(bytes(ctx.machine.memory.view))
    scratch = ctx._scratch
    if scratch is not None and os.path.isdir(scratch):
        for entry in sorted(os.listdir(scratch)):
            path = os.path.join(scratch, entry)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    h.update(entry.encode())
                    h.update(f.read())
    h.update(b"ok" if violation is None else f"{violation.oracle}: {violation}".encode())
    return h.hexdigest()


def _row(obj: object) -> str | None:
    if isinstance(obj, AtomicWord):
        return f"{name_of(obj)}={obj.value}"
    if isinstance(obj, SpinLock):
        return f"{name_of(obj)}:{obj.held}"
    if isinstance(obj, Semaphore):
        return f"{name_of(obj)}#{obj.count}"
    if isinstance(obj, TLB):
        return f"{obj.name}{sorted(obj.entries())}"
    return None


def explore_states(
    model: Model,
    strategy: str,
    bound: int | None,
    cap: int = 100_000,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> States:
    """Run `strategy` over `model` to the end of its space (or `cap` schedules)
    and collect the final state of every schedule it runs whole."""
    explorer = make_explorer(strategy, 0, bound)
    out = States()
    index = 0
    while out.schedules < cap:
        chooser = explorer.chooser(index)
        if chooser is None:
            out.exhaustive = True
            break
        seen: list[str] = []
        errors: list[Exception] = []

        def observe(ctx: RunContext) -> None:
            def at_end() -> list[Violation]:
                try:
                    seen.append(state_hash(ctx, None))
                except Exception as exc:  # a bug here, not in the model: never a verdict
                    errors.append(exc)
                return []

            # First among the end checks: the state the tasks left, before any
            # judge runs.  A judge that memoises its verdict (e2fsck, a
            # read-back) does its work in some runs and not others; what it
            # leaves behind is the process's history, not the schedule's.
            ctx.end_checks.insert(0, at_end)

        outcome = run_schedule(
            model, chooser, max_steps, record=True, observe=observe, keep_objects=True
        )
        if errors:
            raise errors[0]
        explorer.finished(chooser, outcome)
        out.schedules += 1
        index += 1
        if outcome.stopped is not None:
            continue  # cut short by DPOR: a reordering of a schedule already run
        if outcome.violation is not None:
            out.finals.add(f"violation {outcome.violation.oracle}: {outcome.violation}")
        elif seen:
            out.finals.add(seen[0])
    return out
