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
   deletes again, while either makes the schedule shorter.

Every candidate is re-run; an edit is kept only when the same oracle fails
and (preemptions, switches, steps) went down.  The trace says "shrunk from"
only when it did.  A step-budget violation (a livelock) also gets the length
of the steps before its cycle and of one turn of it, for replay to show.
"""

from __future__ import annotations

from dataclasses import replace

from pagemap.check.runner import DEFAULT_WATCHDOG, Model, Outcome, run_schedule
from pagemap.check.strategies import FollowChooser, Search, SwitchChooser
from pagemap.check.trace import Trace
from pagemap.oracles import LIVENESS
from pagemap.sync.watchdog import Watchdog

Key = tuple[int, int, int]
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
    if _key(best) < _key(start):
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
