"""Shrinking a counterexample to fewer preemptions and fewer steps.

A schedule is edited as its *switches*: the choice points where it departs
from the default, non-preemptive choice (check/path.py).  Deleting switches
always leaves a schedule that runs, so the shrinker:

1. deletes switches by delta debugging (Zeller and Hildebrandt's ddmin:
   halves, then quarters, ..., then one at a time), keeping a deletion only
   if the run still breaks the same oracle;
2. looks for the same violation with fewer preemptions still, by a small DFS
   with preemption bound 0, then 1 (as CHESS does), within the run budget;
3. moves each remaining switch earlier, one choice point at a time, and
   deletes again, while either makes the schedule shorter;
4. cuts steps a task runs before the violation that the violation does not
   need: adds one switch at a time (to another task of the run, at a
   choice point before the violation), kept when the same oracle fails in
   fewer steps at the cost of at most one preemption more, then deletes
   the switches that the shorter schedule no longer needs.

Every candidate is re-run; in 1 to 3 an edit is kept only when the same
oracle fails and (preemptions, switches, steps) went down, in 4 only when
(steps, preemptions, switches) did.  The trace says "shrunk from" only when one did.  A
step-budget violation (a livelock) also gets the length of the steps
before its cycle and of one turn of it, for replay to show (its steps are
the budget's, so step 4 leaves it alone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pagemap.check.runner import DEFAULT_WATCHDOG, Model, Outcome, run_schedule
from pagemap.check.strategies import FollowChooser, Search, SwitchChooser
from pagemap.check.trace import Trace
from pagemap.oracles import LIVENESS
from pagemap.sync.core import Task
from pagemap.sync.watchdog import Watchdog

Key = tuple[int, int, int]
# Runs step 4 may take of the budget.
SHORTEN_RUNS = 300
Found = tuple[Outcome, dict[int, int]]


def _key(found: Found) -> Key:
    outcome, switches = found
    return (outcome.preemptions, len(switches), outcome.steps)


class _Shrinker:
    def __init__(
        self, model: Model, oracle: str, max_steps: int, max_runs: int, dog: Watchdog | None
    ) -> None:
        self.dog = dog
        self.model = model
        self.oracle = oracle
        self.max_steps = max_steps
        self.runs_left = max_runs

    def attempt(self, switches: dict[int, int]) -> Found | None:
        """Run `switches`; the outcome and the switches that took effect, if
        the same oracle still fails."""
        if self.runs_left <= 0:
            return None
        self.runs_left -= 1
        chooser = SwitchChooser(switches)
        outcome = run_schedule(self.model, chooser, self.max_steps, watchdog=self.dog)
        if outcome.violation is None or outcome.violation.oracle != self.oracle:
            return None
        return outcome, chooser.applied

    def better(self, switches: dict[int, int], than: Found) -> Found | None:
        got = self.attempt(switches)
        return got if got is not None and _key(got) < _key(than) else None

    def shrink(self, found: Found) -> Found:
        found = self.ddmin(found)
        fewer = self.fewer_preemptions(found)
        if fewer is not None:
            found = self.ddmin(fewer)
        while self.runs_left > 0:
            moved = self.move_earlier(found)
            if moved is None:
                break
            found = self.ddmin(moved)
        if self.oracle != LIVENESS:  # a livelock's length is the step budget's
            found = self.shorten(found)
        return found

    def ddmin(self, found: Found) -> Found:
        """Delete as many switches as still fail the same oracle."""
        parts = 2
        while self.runs_left > 0:
            keys = sorted(found[1])
            if not keys:
                return found
            parts = min(parts, len(keys))
            size = -(-len(keys) // parts)
            chunks = [set(keys[i : i + size]) for i in range(0, len(keys), size)]
            for chunk in chunks:
                cand = {k: v for k, v in found[1].items() if k not in chunk}
                got = self.better(cand, found)
                if got is not None:
                    found = got
                    parts = max(parts - 1, 2)
                    break
            else:
                if parts >= len(keys):
                    return found
                parts = min(len(keys), parts * 2)
        return found

    def fewer_preemptions(self, found: Found) -> Found | None:
        """The same violation under a DFS with a smaller preemption bound
        (0, then 1), within the run budget."""
        for bound in range(min(found[0].preemptions, 2)):
            search = Search(False, bound)
            budget = min(self.runs_left, 300)
            while budget > 0 and not search.exhausted:
                chooser = search.chooser(0)
                if chooser is None:
                    break
                budget -= 1
                self.runs_left -= 1
                outcome = run_schedule(self.model, chooser, self.max_steps, watchdog=self.dog)
                search.finished(chooser, outcome)
                v = outcome.violation
                if v is not None and v.oracle == self.oracle:
                    follow = FollowChooser(outcome.path.choices)
                    again = run_schedule(self.model, follow, self.max_steps, watchdog=self.dog)
                    got = (again, follow.switches)
                    return got if _key(got) < _key(found) else None
        return None

    def move_earlier(self, found: Found) -> Found | None:
        switches = found[1]
        for k in sorted(switches):
            if k == 0 or k - 1 in switches:
                continue
            cand = dict(switches)
            cand[k - 1] = cand.pop(k)
            got = self.better(cand, found)
            if got is not None:
                return got
            if self.runs_left <= 0:
                return None
        return None

    def shorter(self, switches: dict[int, int], than: Found, preemptions: int) -> Found | None:
        got = self.attempt(switches)
        if got is None or got[0].preemptions > preemptions:
            return None
        return got if _steps_key(got) < _steps_key(than) else None

    def shorten(self, found: Found) -> Found:
        """Fewer steps before the violation: another task's steps that it
        does not need put off past it, one added switch at a time, for at
        most one preemption more than `found` has."""
        most = found[0].preemptions + 1
        # Bounded as the DFS of step 2 is: a long trace has many choice points.
        floor = self.runs_left - min(self.runs_left, SHORTEN_RUNS)
        improved = True
        while improved and self.runs_left > floor:
            improved = False
            for k, tid in self.departures(found):
                if self.runs_left <= floor:
                    break
                got = self.shorter({**found[1], k: tid}, found, most)
                if got is not None:
                    found = self.drop_unneeded(got, most)
                    improved = True
                    break
        return found

    def departures(self, found: Found) -> list[tuple[int, int]]:
        """(choice point, task) for every other task that could have gone at
        each choice point of `found`'s schedule (one run, to see them)."""
        self.runs_left -= 1
        chooser = _Noting(found[1])
        run_schedule(self.model, chooser, self.max_steps, watchdog=self.dog)
        return [
            (k, tid)
            for k, (chosen, alts) in enumerate(zip(chooser.path.choices, chooser.alts, strict=True))
            for tid in alts
            if tid != chosen
        ]

    def drop_unneeded(self, found: Found, most: int) -> Found:
        """Each switch deleted that the schedule does not need to stay as short."""
        for k in sorted(found[1]):
            if k not in found[1] or self.runs_left <= 0:
                continue
            cand = {j: v for j, v in found[1].items() if j != k}
            got = self.shorter(cand, found, most)
            if got is not None:
                found = got
        return found


class _Noting(SwitchChooser):
    """A SwitchChooser that notes the tasks that could go at each choice point."""

    def __init__(self, switches: dict[int, int]) -> None:
        super().__init__(switches)
        self.alts: list[list[int]] = []

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        self.alts.append([t.tid for t in runnable])
        return super().pick(runnable, current, kind)


def _steps_key(found: Found) -> Key:
    outcome, switches = found
    return (outcome.steps, outcome.preemptions, len(switches))


def shrink_trace(
    model: Model, trace: Trace, max_runs: int = 1000, watchdog: Watchdog | None = None
) -> Trace:
    """A trace violating the same oracle with fewer preemptions and steps, if
    the shrinker finds one within `max_runs` schedules; else `trace` itself."""
    if watchdog is None:
        with Watchdog(DEFAULT_WATCHDOG) as dog:
            return shrink_trace(model, trace, max_runs, dog)
    follow = FollowChooser(trace.schedule)
    outcome = run_schedule(model, follow, trace.max_steps, watchdog=watchdog)
    if outcome.violation is None or outcome.violation.oracle != trace.oracle:
        return trace
    start: Found = (outcome, follow.switches)
    shrinker = _Shrinker(model, trace.oracle, trace.max_steps, max_runs, watchdog)
    best = shrinker.shrink(start)
    out = trace
    if _key(best) < _key(start) or best[0].steps < start[0].steps:
        outcome = best[0]
        assert outcome.violation is not None
        out = replace(
            trace,
            schedule=list(outcome.path.choices),
            steps=outcome.steps,
            preemptions=outcome.preemptions,
            message=outcome.violation.message,
            shrunk_from={"steps": trace.steps, "preemptions": trace.preemptions},
        )
    if out.oracle == LIVENESS:
        out = _with_cycle(model, out)
    return out


def _with_cycle(model: Model, trace: Trace) -> Trace:
    from pagemap.check.replay import replay

    result = replay(model, trace, None)
    if result.cycle is None:
        return trace
    prefix, period = result.cycle
    return replace(trace, livelock={"prefix": prefix, "period": period})
