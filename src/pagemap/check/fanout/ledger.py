"""The exploration in its fixed order: every unit, what it reported, and the one answer.

Units run wherever and whenever an engine runs them (worker processes, a
Dask cluster) or one schedule at a time when the order asks (the serial
engine).  The answer is defined as though every schedule had run here, in
this order:

- phase by phase (the portfolio's PCT pass, then the rest);
- within a phase, round robin over the scenarios, one schedule a turn, so
  that every scenario gets an early look;
- within a scenario, unit after unit from a queue: the units of the plan,
  then the units a split hands back (queued when the order reaches the
  splitting unit's last schedule) and the units a request makes (queued
  when the order reaches the first request for them).

The first violation in this order ends the exploration; a DFS or DPOR
scenario's budget ends that scenario at the schedule that reaches it;
whatever a worker ran past those points is dropped.  So the summary
(schedules, distinct traces, what was covered) and the counterexample are
the same whichever engine ran the units and however many workers it had:
a unit is a function of its fields (check/fanout/work.py), and what it
hands back (its Ticks, its End) is read only in this order.

Reports that arrive early wait here (`take`); `settle` follows the order
as far as they go and names the unit it waits for.  Units made on the way
(a split's, a request's) are made when their report arrives, not when the
order reaches it, so that engines can start them early (`fresh`); a
request makes a unit once, whoever asks (check/strategies/subtree.py says
why that answer does not depend on the order of arrival).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from pagemap.check.fanout.unit import (
    EXHAUSTED,
    SPLIT,
    STOPPED,
    TIMED_OUT,
    VIOLATION,
    Batch,
    End,
    Tick,
    Unit,
)
from pagemap.check.runner import Summary
from pagemap.check.strategies import EXHAUSTIVE
from pagemap.check.strategies.subtree import Frozen, Request
from pagemap.check.trace import Trace


@dataclass
class Tree:
    """The frozen nodes of one DFS or DPOR exploration, and the units its
    requests made, by (node's prefix, task)."""

    nodes: dict[tuple[int, ...], Frozen] = field(default_factory=dict)
    made: dict[tuple[tuple[int, ...], int], int] = field(default_factory=dict)


@dataclass
class Tally:
    """One scenario in one phase, as far as the order has reached."""

    unit: Unit  # its first unit: the settings every unit of it shares
    queue: deque[int] = field(default_factory=deque)
    schedules: int = 0
    distinct: int = 0
    redundant: int = 0
    races: int = 0
    steps: int = 0
    seconds: float = 0.0
    trace: Trace | None = None
    complete: bool = True  # every unit so far covered its part to the end
    capped: bool = False  # the budget ended it
    timed_out: int = 0  # units that ran past the unit timeout
    traces: set[int] = field(default_factory=set)  # DPOR: the trace keys met

    @property
    def budget(self) -> int | None:
        """A DFS or DPOR scenario's budget of schedules (random and PCT units
        carry their own)."""
        return self.unit.budget if self.unit.strategy in EXHAUSTIVE else None

    def count(self, tick: Tick) -> None:
        self.schedules += 1
        self.steps += tick.steps
        if tick.trace is not None:
            self.traces.add(tick.trace)
            self.distinct = len(self.traces)
        else:
            self.distinct += tick.fresh
        self.redundant += tick.redundant
        self.races += tick.races
        self.seconds += tick.seconds

    def summary(self) -> Summary:
        u = self.unit
        model_params = dict(u.params)
        out = Summary(u.scenario, model_params, u.strategy, u.seed, u.bound, u.max_steps)
        out.schedules, out.distinct, out.redundant = self.schedules, self.distinct, self.redundant
        out.races, out.steps, out.seconds = self.races, self.steps, self.seconds
        out.trace = self.trace
        out.timed_out = self.timed_out
        out.exhaustive = (
            u.strategy in EXHAUSTIVE
            and self.complete
            and not self.capped
            and not self.queue
            and self.trace is None
        )
        return out


class Ledger:
    """Every unit of one exploration and what it reported."""

    def __init__(self, plan: Sequence[Unit]) -> None:
        self.units: list[Unit] = []
        self.ticks: list[list[Tick]] = []
        self.ends: list[End | None] = []
        self.tree_of: list[Tree | None] = []
        self.tally_of: list[Tally] = []
        self.children: dict[int, list[int]] = {}
        self.fresh: list[int] = []  # made, not yet handed to an engine
        self.phases: list[dict[str, Tally]] = []
        names = list(dict.fromkeys(u.phase for u in plan))
        for phase in names:
            tallies: dict[str, Tally] = {}
            for unit in (u for u in plan if u.phase == phase):
                tally = tallies.setdefault(unit.scenario, Tally(unit))
                tree = Tree() if unit.strategy in EXHAUSTIVE else None
                tally.queue.append(self._make(unit, tree, tally))
            self.phases.append(tallies)
        self.queued: set[int] = {uid for t in self._tallies() for uid in t.queue}
        self.phase = 0
        self.turn = 0  # the tally of the phase whose turn it is
        self.settled: dict[int, int] = {}  # uid -> its ticks the order has reached
        self.over = not self.units
        self.cut: Tally | None = None  # the scenario whose violation ended it
        self.capped: list[Tally] = []  # scenarios the budget ended, their units not yet dropped
        self.last = ""  # the scenario the order reached last (progress)
        self.units_done = 0
        self.schedules_run = 0

    # -- what units report --------------------------------------------------------
    def take(self, batch: Batch) -> None:
        """A report from wherever the unit ran; a re-run's repeats are dropped."""
        uid = batch.uid
        if self.ends[uid] is not None:
            return
        got = self.ticks[uid]
        skip = len(got) - batch.first
        if skip < 0:
            raise AssertionError(f"unit {uid} reported schedule {batch.first} after {len(got)}")
        for tick in batch.ticks[skip:]:
            got.append(tick)
            self.schedules_run += 1
            for req in tick.requests:
                self._request(uid, req, make=True)
        end = batch.end
        if end is not None:
            self.ends[uid] = end
            self.units_done += end.reason != STOPPED
            tree = self.tree_of[uid]
            if tree is not None:
                for node in end.frozen:
                    tree.nodes[node.prefix] = node
            tally = self.tally_of[uid]
            self.children[uid] = [self._make(c, tree, tally) for c in end.children]

    def _make(self, unit: Unit, tree: Tree | None, tally: Tally) -> int:
        uid = len(self.units)
        self.units.append(unit)
        self.ticks.append([])
        self.ends.append(None)
        self.tree_of.append(tree)
        self.tally_of.append(tally)
        self.fresh.append(uid)
        return uid

    def _request(self, uid: int, req: Request, make: bool) -> int | None:
        """The unit a request names: made on arrival (`make`), looked up when
        the order reaches it; None if the node needs no new unit for it."""
        unit, tree = self.units[uid], self.tree_of[uid]
        assert tree is not None, "only DFS and DPOR units send requests"
        prefix = unit.part.prefix[: req.depth]
        node = tree.nodes[prefix]
        if not node.admits(req.tid, req.conservative, unit.bound):
            return None
        key = (prefix, req.tid)
        if key not in tree.made:
            assert make, "a request is taken before the order reaches it"
            tree.made[key] = self._make(
                dataclasses.replace(unit, part=node.part(req.tid)), tree, self.tally_of[uid]
            )
        return tree.made[key]

    # -- the order ------------------------------------------------------------------
    def settle(self) -> int | None:
        """Follow the order as far as the reports go: the unit it waits for,
        or None once the exploration is over."""
        while not self.over:
            tally = self._next_tally()
            if tally is None:
                continue
            uid = tally.queue[0]
            n = self.settled.get(uid, 0)
            ticks, end = self.ticks[uid], self.ends[uid]
            if n == len(ticks):
                if end is None:
                    return uid
                self._finish(tally, end, uid)
                continue
            if ticks[n].last and end is None:
                return uid  # how it ended (a violation? the rest handed back?) decides what follows
            self.settled[uid] = n + 1
            self._count(tally, uid, ticks[n])
            if end is not None and n + 1 == len(ticks):
                self._finish(tally, end, uid)
            budget = tally.budget
            if budget is not None and tally.schedules >= budget and tally.queue:
                tally.capped = True
                tally.queue.clear()
                self.capped.append(tally)
            self.turn += 1
        return None

    def _next_tally(self) -> Tally | None:
        """The scenario whose turn it is; None after moving to the next phase."""
        tallies = list(self.phases[self.phase].values())
        for k in range(len(tallies)):
            i = (self.turn + k) % len(tallies)
            if tallies[i].queue:
                self.turn = i
                return tallies[i]
        self.phase += 1
        self.turn = 0
        self.over = self.phase == len(self.phases)
        return None

    def _count(self, tally: Tally, uid: int, tick: Tick) -> None:
        tally.count(tick)
        self.last = tally.unit.scenario
        for req in tick.requests:
            made = self._request(uid, req, make=False)
            if made is not None and made not in self.queued:
                self.queued.add(made)
                tally.queue.append(made)

    def _finish(self, tally: Tally, end: End, uid: int) -> None:
        tally.queue.popleft()
        if end.reason == VIOLATION:
            assert end.trace is not None
            trace = end.trace
            if tally.unit.strategy in EXHAUSTIVE:
                # A unit numbers its own schedules; the order numbers the scenario's.
                trace = dataclasses.replace(trace, schedule_index=tally.schedules - 1)
            tally.trace = trace
            self.cut = tally
            self.over = True
            return
        if end.reason == SPLIT:
            for child in self.children[uid]:
                self.queued.add(child)
                tally.queue.append(child)
        elif end.reason != EXHAUSTED:
            tally.complete = False
            tally.timed_out += end.reason == TIMED_OUT

    # -- answers ------------------------------------------------------------------
    def dead(self, uid: int) -> bool:
        """Nothing the unit reports can be read any more."""
        return self.over or self.tally_of[uid].capped

    def drop_capped(self) -> list[int]:
        """The units still running for scenarios the budget ended."""
        ended = {id(t) for t in self.capped}
        self.capped = []
        return [
            uid
            for uid, end in enumerate(self.ends)
            if end is None and id(self.tally_of[uid]) in ended
        ]

    def summaries(self) -> list[Summary]:
        """The answer: one summary per scenario and phase the order reached."""
        return [t.summary() for t in self._tallies() if t.schedules or t.trace is not None]

    def everything(self) -> list[Summary]:
        """What was explored, in no order (an interrupted exploration): every
        schedule reported, settled or not; never marked covered, and with no
        counterexample: a violation the order had not reached need not be the
        first, and the first may lie in what was never run."""
        out: dict[int, Tally] = {}
        for uid, base in enumerate(self.tally_of):
            tally = out.setdefault(id(base), Tally(base.unit))
            for tick in self.ticks[uid]:
                tally.count(tick)
            end = self.ends[uid]
            if end is not None:
                tally.timed_out += end.reason == TIMED_OUT
        results = []
        for base in self._tallies():
            found = out.get(id(base))
            if found is not None and found.schedules:
                found.complete = False
                results.append(found.summary())
        return results

    def _tallies(self) -> list[Tally]:
        return [t for phase in self.phases for t in phase.values()]


__all__ = ["Ledger", "Tally", "Tree"]
