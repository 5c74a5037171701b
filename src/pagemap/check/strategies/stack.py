"""The search's stack: a Node per choice point of the schedule being run, and
the SearchChooser that replays the stack and extends it with default choices
(check/strategies/search.py explains the search).

Rules: a node's task sets are bit masks over task ids (`_tids` reads one
back); `tid` is the candidate chosen in the schedule being run, `done` those
tried, `backtrack` those still asked for.  On replay a choice point must offer
exactly the candidates it offered before, or the run fails with
Nondeterminism; a new choice point is the search's to fill (Search.new_node,
Search.enter for a subtree's frozen nodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pagemap.check.hb import Footprint
from pagemap.check.path import default_pick
from pagemap.check.strategies.base import (
    BoundExceeded,
    Chooser,
    Nondeterminism,
    SleepBlocked,
)
from pagemap.sync.core import Task
from pagemap.sync.sim import SimExecutor


class Search(Protocol):
    """What a chooser asks of the search that made it (search.py's Search):
    the stack of choice points, the bound, where the replayed prefix ends, and
    the two calls that fill a new choice point."""

    stack: list[Node]
    bound: int | None
    root: int

    def new_node(
        self, chooser: SearchChooser, alts: Sequence[Task], current: Task | None, kind: str
    ) -> Node: ...

    def enter(self, chooser: SearchChooser, node: Node, k: int) -> int: ...


class Node:
    """One choice point of the schedule being run."""

    __slots__ = (
        "backtrack",
        "conservative",
        "current",
        "done",
        "done_fp",
        "enabled",
        "event",
        "order",
        "preemptions",
        "relax",
        "sleep",
        "tid",
    )

    def __init__(
        self,
        event: int,
        enabled: int,
        order: tuple[int, ...],
        current: int,
        relax: bool,
        preemptions: int,
    ) -> None:
        self.event = event  # index of the step this choice takes
        self.enabled = enabled  # bit mask of the candidates
        self.order = order  # candidates in the order DFS tries them
        self.current = current  # the task that could have gone on, or -1
        self.relax = relax
        self.preemptions = preemptions  # preemptions before this choice
        self.tid = -1  # the candidate chosen in the schedule being run
        self.backtrack = 0  # candidates to try here
        self.conservative = 0  # those added for the bound's sake (BPOR)
        self.done = 0  # candidates tried here
        self.done_fp: dict[int, Footprint] = {}  # their steps' footprints (DPOR)
        self.sleep: dict[int, Footprint] = {}  # asleep task -> its next step

    def cost(self, tid: int) -> int:
        """Preemptions a schedule has after choosing `tid` here."""
        switch = self.current >= 0 and tid != self.current and not self.relax
        return self.preemptions + (1 if switch else 0)

    def sleep_mask(self) -> int:
        mask = 0
        for t in self.sleep:
            mask |= 1 << t
        return mask


class SearchChooser(Chooser):
    """Replays the explorer's stack, then extends it with default choices."""

    def __init__(self, search: Search) -> None:
        super().__init__()
        self.search = search
        self.k = 0  # index of the next choice point

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        alts = runnable
        k = self.k
        self.k = k + 1
        stack = self.search.stack
        if k < len(stack):
            node = stack[k]
            want = node.tid
            mask = 0
            nxt = None
            for t in alts:  # the candidates, and the node's choice among them, in one pass
                mask |= 1 << t.tid
                if t.tid == want:
                    nxt = t
            if mask != node.enabled:
                self._fail(
                    Nondeterminism(
                        f"choice point {k} offered tasks {_tids(mask)} on replay, "
                        f"but {_tids(node.enabled)} before"
                    )
                )
            assert nxt is not None, "the node's choice is among its candidates"
            return self._chose(nxt, current, kind)
        node = self.search.new_node(self, alts, current, kind)
        if k <= self.search.root:
            node.tid = self.search.enter(self, node, k)
            nxt = next(t for t in alts if t.tid == node.tid)
        else:
            nxt = self._default(node, alts, current, kind)
            node.tid = nxt.tid
            node.backtrack |= 1 << nxt.tid
        stack.append(node)
        return self._chose(nxt, current, kind)

    def _default(self, node: Node, alts: Sequence[Task], current: Task | None, kind: str) -> Task:
        """The non-preemptive choice, among the tasks not asleep."""
        awake = [t for t in alts if t.tid not in node.sleep] if node.sleep else alts
        if not awake:
            self._fail(SleepBlocked())
        nxt = default_pick(awake, current, kind)
        bound = self.search.bound
        if bound is not None and node.cost(nxt.tid) > bound:
            self._fail(BoundExceeded())
        return nxt

    def _fail(self, exc: BaseException) -> None:
        sched = self.sched
        assert isinstance(sched, SimExecutor)
        sched.abort(exc)
        raise exc  # not reached inside a task


def _tids(mask: int) -> list[int]:
    return [t for t in range(mask.bit_length()) if mask >> t & 1]
