"""Subtrees of a DFS or DPOR search: how an exhaustive search is cut into units of work.

A search is a tree whose nodes are choice points (check/strategies/search.py).
A *subtree* is named by the choices down to one node (its prefix) and the
alternatives to try at that node; a search restricted to it replays the
prefix, tries only those alternatives there, and explores everything below
as usual.  The nodes of the prefix and the subtree's own root are *frozen*:
the search never backtracks into them.  check/fanout hands subtrees to
workers and keeps the frozen nodes (`Frozen`) in one place, so that two
workers never explore the same alternative of a node.

What a restricted search cannot do alone, it reports:

- a race whose first step was taken at a frozen node asks for an
  alternative there: the search sends a `Request` (the node's depth, the
  task, whether BPOR's bound asks for it) and check/fanout makes a new
  subtree of it, once, whoever asks;
- after a while (`split` schedules) a search that is not over hands back its
  frontier: one subtree per node on its stack with alternatives left.

**What DPOR loses when split.**  Subtrees share no source sets and only
part of their sleep sets.  Unsplit, a race reversed at a node adds an
alternative only if none of the race's initials is already among the
node's backtrack set; a request from a unit below a frozen node asks for
its one alternative, and check/fanout makes a subtree of it unless that
very alternative was claimed when the node froze, so two units may ask for
two initials of one race where one would do.  A sleep set carries, down a
subtree, the alternatives explored at the nodes above whose step commutes
with everything run since; a subtree cut at a split keeps the sleep set
its root had (the node's own, the alternatives done there, the one in
progress), and a subtree a request makes starts with the same set as its
node had when it froze (`slept`), but not the alternatives handed out as
sibling subtrees or made by other requests: their first step's footprint
is not known until they run, and which of them ran first depends on the
engine.  Both cost redundant schedules, never missed ones.  Under a
preemption bound DPOR has no sleep sets anyway (search.py).
bench/bench_fanout.py counts the cost (schedules to cover every scenario,
split against unsplit): on pagemap's scenarios it is nil, with a bound and
without; docs/cluster.md reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from pagemap.check.hb import Footprint


@dataclass(frozen=True)
class Subtree:
    """A part of a search: the choices down to a node, and the alternatives to
    try there (a bit mask of task ids).  `alts == 0` is the whole tree.
    `sleep`: the tasks asleep at the node, with the footprint of their next
    step; `conservative`: alternatives there that BPOR's bound asked for
    (nothing sleeps below them)."""

    prefix: tuple[int, ...] = ()
    alts: int = 0
    sleep: tuple[tuple[int, Footprint], ...] = ()
    conservative: int = 0

    @property
    def whole(self) -> bool:
        return self.alts == 0

    @property
    def root(self) -> int:
        """The depth of the subtree's root node, -1 for the whole tree."""
        return -1 if self.whole else len(self.prefix)


class Request(NamedTuple):
    """A restricted search asks that `tid` be tried at its frozen node of
    depth `depth` (a race reversed there, or BPOR's conservative point)."""

    depth: int
    tid: int
    conservative: bool


@dataclass
class Frozen:
    """A node above the units of work, as check/fanout keeps it: enough to
    decide whether a request for one of its alternatives makes a new subtree."""

    prefix: tuple[int, ...]
    enabled: int
    current: int
    relax: bool
    preemptions: int
    asleep: int  # the node's own sleep set, as a mask
    claimed: int  # alternatives done, in progress, or handed out when the node froze
    # What a subtree made here by a request starts asleep with: the node's own
    # sleep set and the alternatives done or in progress when it froze, with
    # the footprints of their steps here (DPOR with sleep sets; else empty).
    slept: tuple[tuple[int, Footprint], ...] = ()

    def cost(self, tid: int) -> int:
        switch = self.current >= 0 and tid != self.current and not self.relax
        return self.preemptions + (1 if switch else 0)

    def part(self, tid: int) -> Subtree:
        """The subtree a request for `tid` makes here."""
        return Subtree(self.prefix, 1 << tid, tuple(kv for kv in self.slept if kv[0] != tid))

    def admits(self, tid: int, conservative: bool, bound: int | None) -> bool:
        """Whether a request for `tid` here calls for a subtree of its own: a
        function of the request and of the node as it froze, so the answer
        does not depend on the order in which requests arrive."""
        bit = 1 << tid
        if not self.enabled & bit or self.claimed & bit:
            return False
        if self.asleep & bit and not conservative:
            return False  # DPOR would not try a sleeping task here either
        return bound is None or self.cost(tid) <= bound


__all__ = ["Frozen", "Request", "Subtree"]
