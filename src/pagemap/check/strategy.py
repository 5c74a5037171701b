"""How the checker chooses schedules: random, PCT, and bounded-exhaustive DFS.

A *policy* lives for a whole exploration and says, schedule after schedule,
which task to run at each choice point.  A `Chooser` is the per-schedule
`Strategy` the SimExecutor calls: it works out the alternatives at a choice
(all runnable tasks, or only the current one once the preemption bound is
spent), asks the policy, and counts preemptions.

A preemption is a switch away from a task that could have gone on.  A switch
at a task's `relax()` (a spin-retry loop waiting for others) is not one: the
task asked to let others run, and counting it would make every spin loop
exhaust the bound at once (CHESS's fair scheduling does the same).

Each policy is reproducible from its seed alone: schedule number i of a
random or PCT exploration depends only on (seed, i), so worker processes can
split an exploration by schedule numbers and still agree with a serial run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from pagemap.sync.executor import SimExecutor, Strategy, Task

STRATEGIES = ("random", "pct", "dfs")


class Nondeterminism(Exception):
    """A schedule prefix replayed differently: the scenario depends on
    something other than the schedule (a clock, an unseeded random source)."""


class Policy:
    """Chooses among the alternatives at each choice point, across schedules."""

    name = "abstract"

    def begin(self, index: int) -> None:
        """Schedule number `index` is about to run."""

    def choose(self, alts: Sequence[Task], current: Task | None, step: int) -> int:
        """Index into `alts` (current task first, if it may go on)."""
        raise NotImplementedError

    def end(self) -> None:
        """The schedule just run is over."""

    @property
    def exhausted(self) -> bool:
        """True once the policy has nothing new left to try."""
        return False


class RandomPolicy(Policy):
    """Uniformly random among the alternatives, seeded by (seed, schedule)."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(0)

    def begin(self, index: int) -> None:
        self.rng = random.Random(f"random/{self.seed}/{index}")

    def choose(self, alts: Sequence[Task], current: Task | None, step: int) -> int:
        return self.rng.randrange(len(alts))


class PCTPolicy(Policy):
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010).

    Each task gets a random priority; the highest-priority alternative runs.
    At d - 1 random steps (of an estimated k) the running task drops below
    every initial priority.  A bug of depth d is found in each schedule with
    probability at least 1 / (n * k**(d - 1)).  Tasks may be spawned mid-run,
    so priorities are drawn when a task is first seen.
    """

    name = "pct"

    def __init__(self, seed: int, depth: int = 3, steps_hint: int = 0) -> None:
        if depth < 1:
            raise ValueError(f"PCT depth must be at least 1, not {depth}")
        self.seed = seed
        self.depth = depth
        self.k = max(steps_hint, 1)
        self.rng = random.Random(0)
        self.priority: dict[int, float] = {}
        self.change_points: list[int] = []
        self.changed = 0

    def begin(self, index: int) -> None:
        self.rng = random.Random(f"pct/{self.seed}/{index}/{self.k}")
        self.priority = {}
        self.change_points = sorted(
            self.rng.randrange(1, self.k + 1) for _ in range(self.depth - 1)
        )
        self.changed = 0

    def learn_length(self, steps: int) -> None:
        """Widen k to the longest schedule seen so far."""
        self.k = max(self.k, steps)

    def choose(self, alts: Sequence[Task], current: Task | None, step: int) -> int:
        prio = self.priority
        for task in alts:
            if task.tid not in prio:
                # Initial priorities sit above every change-point priority (< depth).
                prio[task.tid] = self.depth + self.rng.random()
        cps = self.change_points
        while self.changed < len(cps) and cps[self.changed] <= step:
            self.changed += 1
            if current is not None:
                prio[current.tid] = self.depth - self.changed - self.rng.random() * 0.5
        best = 0
        for i in range(1, len(alts)):
            if prio[alts[i].tid] > prio[alts[best].tid]:
                best = i
        return best


@dataclass
class _Node:
    """One choice point on the DFS stack."""

    alts: tuple[int, ...]  # task ids, in the order they are tried
    pos: int = 0


class DFSPolicy(Policy):
    """Bounded-exhaustive depth-first search over the choice points.

    The stack holds the choices of the schedule being run; the next schedule
    replays the stack up to its deepest choice with an untried alternative
    and takes that one.  The first alternative is always "keep the current
    task", so the first schedule is the non-preemptive one and preemptions
    are added only as the search backtracks.  With a preemption bound the
    space is finite; `exhausted` says when it has all been run.
    """

    name = "dfs"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.stack: list[_Node] = []
        self.depth = 0
        self._done = False

    def begin(self, index: int) -> None:
        self.depth = 0

    def _order(self, alts: Sequence[Task]) -> tuple[int, ...]:
        tids = tuple(t.tid for t in alts)
        if self.seed and len(tids) > 2:
            # A seeded order of the alternatives after the first: another
            # path through the same space, found as reproducibly.
            rest = list(tids[1:])
            random.Random(f"dfs/{self.seed}/{len(self.stack)}").shuffle(rest)
            tids = (tids[0], *rest)
        return tids

    def choose(self, alts: Sequence[Task], current: Task | None, step: int) -> int:
        d = self.depth
        self.depth += 1
        if d < len(self.stack):
            node = self.stack[d]
            if len(node.alts) != len(alts) or {t.tid for t in alts} != set(node.alts):
                raise Nondeterminism(
                    f"choice {d} offered tasks {sorted(t.tid for t in alts)} on replay, "
                    f"but {sorted(node.alts)} before"
                )
        else:
            node = _Node(self._order(alts))
            self.stack.append(node)
        want = node.alts[node.pos]
        for i, task in enumerate(alts):
            if task.tid == want:
                return i
        raise AssertionError("unreachable: want is among alts")

    def end(self) -> None:
        # A run that stopped early (a violation) leaves a deeper stack than it
        # used; choices past `depth` were never made in this schedule.
        del self.stack[self.depth :]
        while self.stack and self.stack[-1].pos + 1 >= len(self.stack[-1].alts):
            self.stack.pop()
        if self.stack:
            self.stack[-1].pos += 1
        else:
            self._done = True

    @property
    def exhausted(self) -> bool:
        return self._done


def make_policy(name: str, seed: int, depth: int = 3) -> Policy:
    if name == "random":
        return RandomPolicy(seed)
    if name == "pct":
        return PCTPolicy(seed, depth)
    if name == "dfs":
        return DFSPolicy(seed)
    raise ValueError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")


class Coverage:
    """The tree of schedules run so far, collapsing subtrees once complete.

    A node is a list with one entry per alternative: None (untried), a child
    node, or DONE (every schedule below it was run).  When the root is DONE
    the whole space (within the preemption bound) has been covered.  A
    schedule is distinct unless it ran into a DONE subtree.  Past `limit`
    nodes the tree stops growing and coverage is no longer claimed.
    """

    DONE: ClassVar[tuple[()]] = ()

    def __init__(self, limit: int = 500_000) -> None:
        self.root: list[object] | tuple[()] = []
        self.nodes = 1
        self.limit = limit
        self.overflow = False
        self._path: list[tuple[list[object], int]] = []
        self._cur: list[object] | tuple[()] = self.root
        self._repeat = False

    @property
    def complete(self) -> bool:
        return self.root is Coverage.DONE and not self.overflow

    def begin(self) -> None:
        self._path = []
        self._cur = self.root
        self._repeat = self.root is Coverage.DONE

    def step(self, n_alts: int, i: int) -> None:
        if self._repeat or self.overflow:
            return
        node = self._cur
        if not isinstance(node, list):
            self._repeat = True  # a DONE subtree: this schedule was run before
            return
        if not node:
            node.extend([None] * n_alts)
        elif len(node) != n_alts:
            raise Nondeterminism(f"a choice point had {len(node)} alternatives, now {n_alts}")
        child = node[i]
        if child is None:
            self.nodes += 1
            if self.nodes > self.limit:
                self.overflow = True
                return
            child = node[i] = []
        self._path.append((node, i))
        self._cur = child  # type: ignore[assignment]

    def end(self) -> bool:
        """Close the schedule; True if it was not run before."""
        if self._repeat:
            return False
        if self.overflow:
            return True
        if self._cur:
            raise Nondeterminism("a schedule ended where an earlier one went on choosing")
        if not self._path:
            self.root = Coverage.DONE  # no choice at all: one schedule is the space
            return True
        node, i = self._path[-1]
        node[i] = Coverage.DONE
        for depth in range(len(self._path) - 1, -1, -1):
            node, i = self._path[depth]
            if any(c is not Coverage.DONE for c in node):
                break
            if depth == 0:
                self.root = Coverage.DONE
            else:
                parent, j = self._path[depth - 1]
                parent[j] = Coverage.DONE
        return True


def default_pick(runnable: Sequence[Task], current: Task | None, last_kind: str) -> Task:
    """The choice that costs no preemption: keep the current task, unless it
    is relaxing (then the next task after it, round robin) or cannot go on
    (then the lowest task id)."""
    if current is None:
        return runnable[0]
    if last_kind == "relax":
        for task in runnable:
            if task.tid > current.tid:
                return task
        return runnable[0]
    return current


class CheckStrategy(Strategy):
    """A Strategy that counts preemptions.  `last_kind` is set by the run's
    step hook just before each pick, so a switch at `relax` is known free."""

    def __init__(self) -> None:
        self.preemptions = 0
        self.last_kind = ""


class Chooser(CheckStrategy):
    """The per-schedule Strategy: alternatives, preemption bound, coverage."""

    def __init__(self, policy: Policy, bound: int | None, coverage: Coverage | None) -> None:
        super().__init__()
        self.policy = policy
        self.bound = bound
        self.coverage = coverage
        self.sched: SimExecutor | None = None

    def start(self, sched: SimExecutor) -> None:
        self.sched = sched

    def pick(self, runnable: Sequence[Task], current: Task | None) -> Task:
        alts = self._alternatives(runnable, current)
        if len(alts) == 1:
            return alts[0]
        steps = self.sched.steps if self.sched is not None else 0
        try:
            i = self.policy.choose(alts, current, steps)
            if self.coverage is not None:
                self.coverage.step(len(alts), i)
        except Nondeterminism as exc:
            # Straight out of the run: kernel code between here and the
            # scheduler must not catch it as if it were its own error.
            if self.sched is None:
                raise
            self.sched.abort(exc)
            raise
        nxt = alts[i]
        if current is not None and nxt is not current and self.last_kind != "relax":
            self.preemptions += 1
        return nxt

    def _alternatives(self, runnable: Sequence[Task], current: Task | None) -> Sequence[Task]:
        if current is None:
            return runnable
        first = default_pick(runnable, current, self.last_kind)
        if first is current and self.bound is not None and self.preemptions >= self.bound:
            return [current]
        return [first, *(t for t in runnable if t is not first)]


class SwitchStrategy(CheckStrategy):
    """Runs the default schedule except at the listed choice points, where it
    switches to the listed task: the form in which the shrinker edits
    schedules, since deleting a switch always leaves a valid schedule."""

    def __init__(self, switches: dict[int, int]) -> None:
        super().__init__()
        self.switches = switches
        self.applied: dict[int, int] = {}  # the switches that changed the schedule
        self.choice = 0

    def pick(self, runnable: Sequence[Task], current: Task | None) -> Task:
        k = self.choice
        self.choice += 1
        nxt = default_pick(runnable, current, self.last_kind)
        want = self.switches.get(k)
        if want is not None:
            for task in runnable:
                if task.tid == want:
                    if task is not nxt:
                        self.applied[k] = want
                        nxt = task
                    break
        if current is not None and nxt is not current and self.last_kind != "relax":
            self.preemptions += 1
        return nxt


class FollowStrategy(CheckStrategy):
    """Follows a recorded schedule (one task id per choice), then the default;
    records where that schedule departs from the default, as switches."""

    def __init__(self, schedule: Sequence[int]) -> None:
        super().__init__()
        self.schedule = list(schedule)
        self.choice = 0
        self.diverged = False
        self.switches: dict[int, int] = {}

    def pick(self, runnable: Sequence[Task], current: Task | None) -> Task:
        k = self.choice
        self.choice += 1
        default = default_pick(runnable, current, self.last_kind)
        nxt = default
        if k < len(self.schedule):
            want = self.schedule[k]
            for task in runnable:
                if task.tid == want:
                    nxt = task
                    break
            else:
                self.diverged = True
        if nxt is not default:
            self.switches[k] = nxt.tid
        if current is not None and nxt is not current and self.last_kind != "relax":
            self.preemptions += 1
        return nxt
