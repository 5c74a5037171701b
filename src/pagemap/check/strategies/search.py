"""Exhaustive search over choice points: bounded DFS, and DPOR.

Both keep the exploration as a stack of nodes, one per choice point of the
schedule being run (the path record's choices, with the candidates each one
had).  The next schedule replays the stack up to its deepest node with an
alternative left, takes that alternative, and goes on with the default,
non-preemptive choice (check/path.py) from there, pushing new nodes.

**DFS** tries every candidate at every node: the first schedule is the one
that never preempts, and preemptions are added as the search backtracks.

**DPOR** tries at each node only what a race asks for: source sets with sleep
sets (Abdulla, Aronis, Jonsson, Sagonas, "Optimal dynamic partial order
reduction", POPL 2014, Algorithm 1).  After each run, every race (i, j) in
it (check/hb.py) whose first step i was a choice point asks that some task of
initials(i, j) be tried at i, unless one already is; tasks that cannot go at
i (blocked on a lock held there) do not count, and a race none of whose
initials can go at i is not reversible.  A node's sleep set holds the tasks
already explored from an ancestor whose next step commutes with everything
run since: scheduling one would only reorder a schedule already run, so a
run whose every candidate sleeps is cut short (`redundant`).  Every run that
is not cut short is a distinct Mazurkiewicz trace.

**The preemption bound.**  DFS prunes any alternative that would take a
schedule past the bound.  Pruning alone is unsound for DPOR: the bound makes
steps dependent that commute otherwise, since the linearisation DPOR picks
for a trace may cost more preemptions than another of the same trace
(Coons, Musuvathi, McKinley, "Bounded partial-order reduction", OOPSLA
2013).  So, under a bound, DPOR here does what their BPOR does:

- each backtrack point a race asks for is also added, conservatively, at the
  last context switch before it (the latest choice point before i where the
  running task changed), where scheduling the task may cost no new
  preemption;
- a lock's release races the next acquire of it (hb.py `release_races`):
  running the acquirer's task before the release makes it block, which is a
  free switch back, and may be the only linearisation of a trace within the
  bound;
- there are no sleep sets: a task asleep (its next step explored from an
  ancestor) may be the very task whose blocking gives that free switch, and
  the ancestor's exploration of it may have been cut by the bound;
- races are also taken with every task's *pending* step, at every state of
  the run, as Flanagan and Godefroid's DPOR does (hb.py `pending_races`):
  the task if it can go at the racing step, every task that can otherwise,
  and the same again at the last context switch before it.  BPOR is built on
  that algorithm, and needs it: a race reversing an acquisition may be
  direct only in a schedule past the bound, while a task blocked on the lock
  shows it at once (test_dpor_soundness.py's ACQUIRE_TWICE).

tests/check/test_dpor_soundness.py checks, over generated programs with
locks, that DPOR reaches exactly the final states DFS reaches, bounded and
not, with no more schedules.  Without a bound DPOR keeps its sleep sets and
counts each schedule it runs to the end as one Mazurkiewicz trace; under a
bound `distinct` counts schedules (some may share a trace).

**Subtrees.**  `restrict(part)` confines a search to one subtree
(check/strategies/subtree.py): the nodes of its prefix and its root are
frozen, a race that wants an alternative at one of them becomes a `Request`,
and `frontier()` hands back the work left as subtrees.  check/fanout cuts
an exploration into units of work that way.

Rules: Search is the explorer (strategies/base.py); its stack's nodes and the
chooser that replays them are in strategies/stack.py, the backtrack points a
run's races ask for in strategies/backtrack.py (a part of Search's class).
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pagemap.check.hb import Footprint, HappensBefore, footprint, independent
from pagemap.check.path import default_pick
from pagemap.check.strategies.backtrack import Backtracks
from pagemap.check.strategies.base import (
    BoundExceeded,
    Chooser,
    Explorer,
    Nondeterminism,
    SleepBlocked,
)
from pagemap.check.strategies.stack import Node as Node
from pagemap.check.strategies.stack import SearchChooser as SearchChooser
from pagemap.check.strategies.stack import _tids
from pagemap.check.strategies.subtree import Frozen, Request, Subtree
from pagemap.sync.core import RELAX, Task
from pagemap.sync.sim import EventLog, SimExecutor

if TYPE_CHECKING:
    from pagemap.check.outcome import Outcome


class Search(Explorer, Backtracks):
    """Bounded DFS (`reduce=False`) or DPOR (`reduce=True`)."""

    def __init__(
        self, reduce: bool, bound: int | None, seed: int = 0, sleep_sets: bool = True
    ) -> None:
        super().__init__()
        self.reduce = reduce
        self.sleep_sets = reduce and sleep_sets
        self.name = "dpor" if reduce else "dfs"
        self.records_steps = reduce
        self.counts_traces = reduce
        self.bound = bound
        self.seed = seed
        self.stack: list[Node] = []
        self.branch = 0  # the node the current schedule departs at
        self.races = 0
        self._started = False
        self._traces: set[int] = set()
        self.last_trace: int | None = None  # the last schedule's trace key (DPOR), if run whole
        # A subtree (restrict): the depth of its root node, -1 for the whole tree.
        self.part = Subtree()
        self.root = -1
        self.requests: list[Request] = []  # asked of frozen nodes, since last taken
        self.last_log: EventLog | None = None  # the last schedule's steps (DPOR)
        self.hb: HappensBefore | None = None  # the last schedule's happens-before (DPOR)
        self._asked: set[Request] = set()
        self._switch_depths: list[int] | None = None

    # -- a subtree ----------------------------------------------------------------
    def restrict(self, part: Subtree) -> None:
        """Explore only `part`: replay its prefix, try its alternatives at its root."""
        assert not self._started, "restrict a search before its first schedule"
        self.part = part
        self.root = part.root
        self.branch = max(self.root, 0)

    def enter(self, chooser: SearchChooser, node: Node, k: int) -> int:
        """The choice at frozen node `k` (the prefix's, or the root's first
        alternative within the bound), with the root's sleep set."""
        part = self.part
        if k < self.root:
            want = 1 << part.prefix[k]
        else:
            want = part.alts
            node.sleep = dict(part.sleep)
            node.conservative = part.conservative & want
        if node.enabled & want != want:
            chooser._fail(
                Nondeterminism(
                    f"choice point {k} offered tasks {_tids(node.enabled)} on replay, "
                    f"but the subtree asks for {_tids(want)}"
                )
            )
        node.backtrack = want
        for tid in node.order:
            if want >> tid & 1 and (k < self.root or self._within(node, tid)):
                return tid
        raise ValueError(f"no alternative of the subtree at depth {k} is within the bound")

    def _within(self, node: Node, tid: int) -> bool:
        return self.bound is None or node.cost(tid) <= self.bound

    def take_requests(self) -> list[Request]:
        out, self.requests = self.requests, []
        return out

    # -- schedules --------------------------------------------------------------
    def chooser(self, index: int) -> Chooser | None:
        if self.exhausted:
            return None
        self._started = True
        chooser = SearchChooser(self)
        chooser.pool = self.pool
        return chooser

    def new_node(
        self, chooser: SearchChooser, alts: Sequence[Task], current: Task | None, kind: str
    ) -> Node:
        mask = 0
        for t in alts:
            mask |= 1 << t.tid
        log = self._log(chooser)
        event = len(log.tids) if log is not None else -1
        cur = current.tid if current is not None else -1
        node = Node(
            event,
            mask,
            self._order(alts, current, kind),
            cur,
            kind is RELAX,
            chooser.path.preemptions,
        )
        if self.sleep_sets:
            assert log is not None
            node.sleep = self._sleep_for(node, log, chooser)
        return node

    def _order(self, alts: Sequence[Task], current: Task | None, kind: str) -> tuple[int, ...]:
        first = default_pick(alts, current, kind)
        rest = [t.tid for t in alts if t is not first]
        if self.seed and len(rest) > 1:
            # A seeded order of the alternatives after the first: another path
            # through the same space, found as reproducibly.
            random.Random(f"dfs/{self.seed}/{len(self.stack)}").shuffle(rest)
        return (first.tid, *rest)

    def _sleep_for(self, node: Node, log: EventLog, chooser: SearchChooser) -> dict[int, Footprint]:
        """The sleep set at a new node: the parent's sleepers and explored
        siblings whose steps commute with every step run since the parent.
        Below a choice made for the bound's sake, nothing sleeps (BPOR)."""
        if not self.stack:
            return {}
        parent = self.stack[-1]
        if parent.conservative >> parent.tid & 1:
            return {}  # only reached when sleep sets are on, i.e. with no bound
        asleep: dict[int, Footprint] = dict(parent.sleep)
        for tid, fp in parent.done_fp.items():
            if tid != parent.tid:
                asleep[tid] = fp
        if not asleep:
            return {}
        for e in range(parent.event, node.event):
            t = log.tids[e]
            if t in asleep:
                # A sleeping task ran (it was the only one that could): this
                # schedule is a reordering of one explored before.
                chooser._fail(SleepBlocked())
            fp = footprint(log, e)
            for q in [q for q, qfp in asleep.items() if not independent(qfp, fp)]:
                del asleep[q]
        return asleep

    @staticmethod
    def _log(chooser: SearchChooser) -> EventLog | None:
        sched = chooser.sched
        return sched.log if isinstance(sched, SimExecutor) else None

    # -- after a schedule -----------------------------------------------------------
    def finished(self, chooser: Chooser, outcome: Outcome) -> None:
        assert isinstance(chooser, SearchChooser)
        cut = isinstance(outcome.stopped, SleepBlocked | BoundExceeded)
        if cut:
            self.redundant += 1
        elif not self.reduce:
            self.distinct += 1
        # This run replayed the last one up to its branch node: the steps
        # before that node's are the last run's, and happens-before keeps them.
        branch = self.stack[self.branch] if self.branch < len(self.stack) else None
        shared = branch.event if branch is not None and self.last_log is not None else 0
        # A run cut short made fewer choices than the stack may hold.
        del self.stack[chooser.k :]
        log = outcome.log
        self.last_log = log
        self.last_trace = None
        if self.reduce and log is not None:
            self._switch_depths = None  # this run's, made on demand (backtrack.py)
            hb = self._happens_before(log, shared)
            if not cut:
                # Its Mazurkiewicz trace, named by its normal form: under a
                # bound two schedules may share one.  The key is the same in
                # every process, so that check/fanout counts traces across
                # units of work.
                self.last_trace = trace_key(hb.signature())
                self._traces.add(self.last_trace)
                self.distinct = len(self._traces)
            self._add_backtracks(log, hb)
            if self.bound is not None:
                self._add_pending_backtracks(log, hb, self._pending(chooser, log))
        self._advance(log)

    def _happens_before(self, log: EventLog, shared: int) -> HappensBefore:
        """The run's happens-before, computed from the first step it does not
        share with the last run (hb.py `rebase`)."""
        if self.hb is None:
            bounded = self.bound is not None
            self.hb = HappensBefore(log, release_races=bounded, pending=bounded)
        else:
            self.hb.rebase(log, shared)
        return self.hb

    @staticmethod
    def _pending(chooser: SearchChooser, log: EventLog) -> dict[int, Footprint]:
        """The step each unfinished task was about to take when the run stopped."""
        sched = chooser.sched
        out: dict[int, Footprint] = {}
        if not isinstance(sched, SimExecutor):
            return out
        for task in sched.tasks:
            if not task.done and task.access and task.obj is not None:
                out[task.tid] = ((log.key(task.obj), task.access),)
        return out

    def _advance(self, log: EventLog | None) -> None:
        """Mark what was just run as done, deepest node first, and set up the
        next alternative; exhausted when none is left."""
        stack = self.stack
        floor = max(self.root, 0)  # frozen nodes above a subtree's root are not revisited
        while len(stack) > floor:
            node = stack[-1]
            bit = 1 << node.tid
            if not node.done & bit:
                node.done |= bit
                if self.sleep_sets and log is not None and node.event < len(log.tids):
                    # Read only to put tasks to sleep (_sleep_for, _carried).
                    node.done_fp[node.tid] = footprint(log, node.event)
            todo = self._todo(node, len(stack) - 1)
            for tid in node.order if todo else ():  # most nodes left have nothing to do
                if not todo >> tid & 1:
                    continue
                if self.bound is not None and node.cost(tid) > self.bound:
                    node.done |= 1 << tid  # pruned: past the bound
                    continue
                node.tid = tid
                self.branch = len(stack) - 1
                return
            stack.pop()
        self.exhausted = True

    def _todo(self, node: Node, depth: int) -> int:
        """Candidates not yet tried at `node`: DFS every one, DPOR those its
        races asked for and not asleep; at a subtree's root, its own only."""
        todo = (node.enabled if not self.reduce else node.backtrack) & ~node.done
        if self.reduce and node.sleep:  # (no sleeper masks nothing)
            todo &= ~node.sleep_mask() | node.conservative
        if depth == self.root:
            todo &= self.part.alts
        return todo

    # -- handing back the work left -------------------------------------------------
    def frontier(self, log: EventLog | None) -> tuple[list[Subtree], list[Frozen]]:
        """The work left after the last schedule, as subtrees (deepest first,
        the next schedule's own first), and the nodes they freeze.  `log`:
        the last schedule's steps (DPOR), for the sleep sets the subtrees
        keep.  The search is over afterwards."""
        parts: list[Subtree] = []
        frozen: list[Frozen] = []
        stack, floor = self.stack, max(self.root, 0)
        prefix = tuple(n.tid for n in stack)
        for depth in range(floor, self.branch + 1) if not self.exhausted else ():
            node = stack[depth]
            nxt = depth == self.branch  # node.tid is the next to run, not one in progress
            left = self._left(node, depth) & ~(0 if nxt else 1 << node.tid)
            sleep = self._carried(node, log, nxt)
            if depth > self.root:
                claimed = node.done | 1 << node.tid | left
                frozen.append(
                    Frozen(
                        prefix[:depth],
                        node.enabled,
                        node.current,
                        node.relax,
                        node.preemptions,
                        node.sleep_mask(),
                        claimed,
                        sleep,
                    )
                )
            if left:
                parts.append(Subtree(prefix[:depth], left, sleep, node.conservative & left))
        self.exhausted = True
        parts.reverse()
        return parts, frozen

    def _left(self, node: Node, depth: int) -> int:
        """The alternatives still to try at `node`, within the bound."""
        todo = self._todo(node, depth)
        left = 0
        for tid in node.order:
            if todo >> tid & 1 and self._within(node, tid):
                left |= 1 << tid
        return left

    def _carried(
        self, node: Node, log: EventLog | None, nxt: bool
    ) -> tuple[tuple[int, Footprint], ...]:
        """The sleep set a subtree of `node` starts with: the node's own and
        the alternatives explored there (done, or in progress below it), each
        with its step's footprint: all explored before the subtree's, so a
        strict order, as sleep sets need."""
        if not self.sleep_sets:
            return ()
        asleep = dict(node.sleep)
        asleep.update(node.done_fp)
        if not nxt and log is not None and node.event < len(log.tids):
            asleep[node.tid] = footprint(log, node.event)
        return tuple(sorted(asleep.items(), key=lambda kv: kv[0]))


def trace_key(signature: Sequence[int]) -> int:
    """A 64-bit name for a trace's normal form, the same on every machine."""
    raw = struct.pack(f"<{len(signature)}I", *signature)  # each tid as 4 bytes, little-endian
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


__all__ = ["Node", "Search", "SearchChooser"]
