"""Where DPOR backtracks: the races of a run, each asking for an alternative at
its first step's choice point (source sets), with BPOR's additions under a
preemption bound (check/strategies/search.py explains the algorithm; hb.py
finds the races).

Rules: Backtracks is a part of Search and holds no state of its own: it reads
and sets the search's stack (`backtrack`, `conservative` of its nodes), its
bound and the depth of a subtree's root.  A node at or above that root is
frozen: an alternative wanted there becomes a Request (`_ask`), handed back
by Search.take_requests, never a change to the node.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from operator import attrgetter

from pagemap.check.hb import Footprint, HappensBefore
from pagemap.check.strategies.stack import Node, _tids
from pagemap.check.strategies.subtree import Request
from pagemap.sync.core import RELAX
from pagemap.sync.sim import EventLog

_event = attrgetter("event")  # a node's step, the key the stack is ordered by


class Backtracks:
    """The backtrack points a finished run's races ask for: a part of Search,
    which sets the attributes named here."""

    stack: list[Node]
    branch: int
    bound: int | None
    root: int
    races: int
    requests: list[Request]
    _asked: set[Request]
    _switch_depths: list[int] | None  # _switches' answer for the run, once asked

    def _ask(self, depth: int, tid: int, conservative: bool) -> None:
        req = Request(depth, tid, conservative)
        if req not in self._asked:
            self._asked.add(req)
            self.requests.append(req)

    def _add_pending_backtracks(
        self, log: EventLog, hb: HappensBefore, pending: dict[int, Footprint]
    ) -> None:
        """Bounded DPOR: Flanagan and Godefroid's races with pending steps
        (hb.pending_races), each asking for its task at the racing step, or
        for every task that can go there when it cannot (a persistent set),
        and again at the last context switch before it (BPOR)."""
        switches: list[int] | None = None
        for i, p in hb.new_pending_races(pending):
            found = self._node_at(i)
            if found is None:
                self._before_forced(log, i, p)
                continue
            depth, node = found
            want = 1 << p if node.enabled >> p & 1 else node.enabled
            if depth <= self.root:
                for t in _tids(want & ~node.backtrack):
                    self._ask(depth, t, False)
            else:
                node.backtrack |= want
            if switches is None:
                switches = self._switches(log)
            d = self._switch_before(switches, node.event)
            if d >= 0:
                n = self.stack[d]
                bits = 1 << p if n.enabled >> p & 1 else n.enabled
                if d <= self.root:
                    for t in _tids(bits & ~n.backtrack & ~n.done):
                        self._ask(d, t, True)
                else:
                    n.backtrack |= bits
                    n.conservative |= bits

    def _add_backtracks(self, log: EventLog, hb: HappensBefore) -> None:
        start = self.stack[self.branch].event if self.branch < len(self.stack) else 0
        switches: list[int] | None = None
        for i, j in hb.races(max(start, 0)):
            found = self._node_at(i)
            if found is None:
                self._before_forced(log, i, log.tids[j])
                continue
            depth, node = found
            self.races += 1
            initials = [t for t in sorted(hb.initials(i, j)) if node.enabled >> t & 1]
            if not initials:
                continue  # nobody in the race could go first: not reversible
            want = log.tids[j] if log.tids[j] in initials else initials[0]
            if not any(node.backtrack >> t & 1 for t in initials):
                if depth <= self.root:
                    self._ask(depth, want, False)
                else:
                    node.backtrack |= 1 << want
            if self.bound is not None:
                if switches is None:
                    switches = self._switches(log)
                self._conservative(node, want, switches)

    def _node_at(self, event: int) -> tuple[int, Node] | None:
        """The choice point that took step `event` (the deepest, should a
        step-less choice share its event), with its depth; None if the step
        was no choice.  The stack's events never decrease."""
        d = bisect_right(self.stack, event, key=_event) - 1
        if d >= 0 and self.stack[d].event == event:
            return d, self.stack[d]
        return None

    def _switches(self, log: EventLog) -> list[int]:
        """The depths of the choices where any task may go at no cost, BPOR's
        context switches: the first choice, every choice that ran a task
        other than the one that took the step before it, and every choice
        made when no task could go on (its task blocked or done) or at a
        relax.  The last are free whichever task goes, though the log may
        show the same task on both sides: a task that parks is logged only
        once it resumes (test_reference.py, timed downs at bound 0).
        Made once a run: the stack keeps still while the run's races are
        handled, and Search.finished forgets it before."""
        if self._switch_depths is not None:
            return self._switch_depths
        tids = log.tids
        self._switch_depths = [
            d
            for d, n in enumerate(self.stack)
            if n.event == 0 or tids[n.event] != tids[n.event - 1] or n.current < 0 or n.relax
        ]
        return self._switch_depths

    def _switch_before(self, switches: list[int], event: int) -> int:
        """The depth of the last context switch before step `event`, or -1."""
        stack = self.stack
        k = bisect_left(switches, event, key=lambda d: stack[d].event)  # events never decrease
        return switches[k - 1] if k else -1

    def _before_forced(self, log: EventLog, event: int, tid: int) -> None:
        """Step `event` was no choice: only one task could go.  When that is
        because `tid` had just relaxed (a task that relaxes is not offered
        until another has taken a step, sync/sim.py), which step the relax
        forces depends on where the spinner came in: ask for `tid` at the
        latest choice before the step where it could have gone and this
        schedule chose another, with no sleep set below (programs.RELAX_MISS:
        the relax forced the very load that races the spinner's store).  A
        step forced because the others were blocked is left alone: the races
        of the steps that blocked them reach further back."""
        # The relax is logged as the spinner resumes: the step after the forced one.
        after = event + 1
        if after >= len(log.tids) or log.tids[after] != tid or log.kinds[after] is not RELAX:
            return
        bit = 1 << tid
        for depth in range(len(self.stack) - 1, -1, -1):
            node = self.stack[depth]
            if node.event >= event or not node.enabled & bit or node.tid == tid:
                continue
            if not (node.done | node.backtrack) & bit:
                if depth <= self.root:
                    self._ask(depth, tid, True)
                else:
                    node.backtrack |= bit
                    node.conservative |= bit
            return

    def _conservative(self, node: Node, tid: int, switches: list[int]) -> None:
        """BPOR: also try `tid` at the last context switch before `node`,
        where it may cost no new preemption; explored with no sleep set."""
        depth = self._switch_before(switches, node.event)
        if depth >= 0:
            n = self.stack[depth]
            bit = 1 << tid
            if n.enabled & bit and not n.done & bit:
                if depth <= self.root and not n.backtrack & bit:
                    self._ask(depth, tid, True)
                elif depth >= self.root:
                    n.backtrack |= bit
                    n.conservative |= bit
