"""Deliberately broken checkers: the engine's own mutant table.

The kernel's mutants (check/mutants/) ask whether the scenarios are strong
enough; these ask whether the checker's own tests are.  Each replaces a piece
of the engine (a primitive's footprint, the dependency relation, where DPOR
puts a backtrack point, the preemption count, how a verdict is kept) by a
variant that explores less or reports less, and names the rule it breaks.
A broken engine still finds most kernel bugs (PCT does, before DPOR runs), so
killing the kernel's mutants proves nothing about it:
tests/check/test_engine_mutants.py applies each of these and expects the
engine's judges (the brute-force reference, the pinned trace counts, the
verdict plumbing) to fail, naming which one must.

Rules: a mutant patches for the length of `applied()` and never edits a file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

from pagemap.check import hb
from pagemap.check.runner import Outcome
from pagemap.check.strategies import search
from pagemap.check.strategies.base import Chooser
from pagemap.check.strategies.search import Node, Search
from pagemap.sync.arrays import SimAtomicArray
from pagemap.sync.core import RELAX, WRITE, Task
from pagemap.sync.locks import SimSemaphore


@dataclass(frozen=True)
class EngineMutant:
    name: str
    broken: str  # the rule it breaks
    judge: str  # the test that must catch it: reference, pinned or verdicts
    patches: tuple[tuple[object, str, Callable[..., Any]], ...]

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for target, attr, fn in self.patches:
                stack.enter_context(mock.patch.object(target, attr, fn))
            yield


def _up_unrecorded(self: SimSemaphore) -> None:
    # BUG: the up takes effect with no footprint: it commutes with every down.
    sched = self._sched
    sched.point("up", None, 0)
    self._count += 1
    if self.waiters:
        sched.unpark(self.waiters)


def _array_cas_read(self: SimAtomicArray, i: int, expected: int, new: int) -> bool:
    # BUG: a CAS that succeeds is logged as a read, as a failed one is.
    sched = self._sched
    sched.point("cas", (self.name, i), WRITE)
    words = self.words
    ok = words[i] == expected
    if ok:
        words[i] = new & 0xFFFF_FFFF_FFFF_FFFF
    if sched.recording:
        sched.read_only()
    return ok


def _writes_only(a: hb.Footprint, b: hb.Footprint) -> bool:
    # BUG: a read and a write of one object commute; only two writes conflict.
    return not any(o1 == o2 and a1 & WRITE and a2 & WRITE for o1, a1 in a for o2, a2 in b)


def _backtrack_one_late(self: Search, log: Any, hbefore: hb.HappensBefore) -> None:
    # BUG: the backtrack point a race asks for lands on the next choice, after step i.
    real_at = {node.event: d for d, node in enumerate(self.stack)}
    for i, j in hbefore.races(0):
        depth = real_at.get(i)
        if depth is None or depth + 1 >= len(self.stack):
            continue
        node = self.stack[depth + 1]
        tid = log.tids[j]
        if node.enabled >> tid & 1:
            node.backtrack |= 1 << tid


def _no_pending_races(self: Search, log: Any, hbefore: hb.HappensBefore, pending: Any) -> None:
    """BUG: bounded DPOR takes races between executed steps only."""


def _blocked_switch_costs(self: Node, tid: int) -> int:
    # BUG: a switch away from a task that cannot go on (blocked, done) counts.
    switch = tid != self.current and not self.relax
    return self.preemptions + (1 if switch else 0)


def _chose_counting_blocked(self: Chooser, nxt: Task, current: Task | None, kind: str) -> Task:
    # BUG (with _blocked_switch_costs): the path counts the same switches.
    self.path.choices.append(nxt.tid)
    if nxt is not current and kind is not RELAX:
        self.path.preemptions += 1
    return nxt


_real_finished = Search.finished


def _last_verdict_lost(self: Search, chooser: Chooser, outcome: Outcome) -> None:
    # BUG: the exploration's last schedule is run, but its violation is dropped.
    _real_finished(self, chooser, outcome)
    if self.exhausted:
        outcome.violation = None


ENGINE_MUTANTS = (
    EngineMutant(
        "semaphore-up-unrecorded",
        "a semaphore's up records no footprint",
        "pinned",
        ((SimSemaphore, "up", _up_unrecorded),),
    ),
    EngineMutant(
        "array-cas-read",
        "a successful CAS of a per-frame word is recorded as a read",
        "reference",
        ((SimAtomicArray, "cas", _array_cas_read),),
    ),
    EngineMutant(
        "read-write-commute",
        "sleep sets let a read and a write of one object commute",
        "reference",
        ((search, "independent", _writes_only),),
    ),
    EngineMutant(
        "backtrack-one-late",
        "a race's backtrack point is put on the choice after its first step",
        "reference",
        ((Search, "_add_backtracks", _backtrack_one_late),),
    ),
    EngineMutant(
        "no-pending-races",
        "bounded DPOR ignores races with tasks' pending steps",
        "reference",
        ((Search, "_add_pending_backtracks", _no_pending_races),),
    ),
    EngineMutant(
        "blocked-switch-preempts",
        "a switch away from a blocked or finished task counts as a preemption",
        "reference",
        ((Node, "cost", _blocked_switch_costs), (Chooser, "_chose", _chose_counting_blocked)),
    ),
    EngineMutant(
        "last-verdict-lost",
        "the violation of an exploration's last schedule is dropped",
        "verdicts",
        ((Search, "finished", _last_verdict_lost),),
    ),
)

# The judges a mutant may name.
JUDGES = ("reference", "pinned", "verdicts")

__all__ = ["ENGINE_MUTANTS", "JUDGES", "EngineMutant"]
