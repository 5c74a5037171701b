"""Shrinking a counterexample to fewer preemptions and fewer steps.

First, iterative preemption bounding: a DFS with no preemption, then one,
and so on below the trace's count, looks for the same violation with fewer
preemptions (as CHESS does).  Then the schedule is edited as a set of
*switches*: the choice points where it departs from the default (keep the
running task; when it cannot go on, the lowest task id).  Deleting
switches always leaves a schedule that runs, so the shrinker deletes them,
halves first and then one at a time (delta debugging), and moves each
remaining switch earlier, keeping any edit whose run still violates the
same oracle with fewer preemptions, fewer switches or fewer steps.  The
result is re-recorded as a plain schedule.
"""

from __future__ import annotations

from dataclasses import replace

from pagemap.check.runner import Model, Outcome, run_schedule
from pagemap.check.strategy import Chooser, DFSPolicy, FollowStrategy, SwitchStrategy
from pagemap.check.trace import Trace

Key = tuple[int, int, int]


def _key(outcome: Outcome, switches: dict[int, int]) -> Key:
    return (outcome.preemptions, len(switches), outcome.steps)


class _Shrinker:
    def __init__(self, model: Model, oracle: str, max_steps: int, max_runs: int) -> None:
        self.model = model
        self.oracle = oracle
        self.max_steps = max_steps
        self.runs_left = max_runs

    def attempt(self, switches: dict[int, int]) -> tuple[Outcome, dict[int, int]] | None:
        """Run `switches`; the outcome and the switches that took effect, if
        the same oracle still fails."""
        if self.runs_left <= 0:
            return None
        self.runs_left -= 1
        strategy = SwitchStrategy(switches)
        outcome = run_schedule(self.model, strategy, self.max_steps)
        if outcome.violation is None or outcome.violation.oracle != self.oracle:
            return None
        return outcome, strategy.applied

    def shrink(self, outcome: Outcome, switches: dict[int, int]) -> tuple[Outcome, dict[int, int]]:
        best = (outcome, switches)
        fewer = self._bounded_search(outcome.preemptions)
        if fewer is not None:
            best = fewer
        while self.runs_left > 0:
            better = self._delete_some(*best) or self._move_earlier(*best)
            if better is None:
                break
            best = better
        return best

    def _bounded_search(self, preemptions: int) -> tuple[Outcome, dict[int, int]] | None:
        """Iterative preemption bounding: DFS with bound 0, 1, ... below the
        trace's count, within the run budget; the first failure found."""
        for bound in range(preemptions):
            policy = DFSPolicy()
            while not policy.exhausted and self.runs_left > 0:
                self.runs_left -= 1
                policy.begin(0)
                outcome = run_schedule(self.model, Chooser(policy, bound, None), self.max_steps)
                policy.end()
                v = outcome.violation
                if v is not None and v.oracle == self.oracle:
                    follow = FollowStrategy(outcome.schedule)
                    again = run_schedule(self.model, follow, self.max_steps)
                    return again, follow.switches
            if self.runs_left <= 0:
                break
        return None

    def _better(self, cand: dict[int, int], than: Key) -> tuple[Outcome, dict[int, int]] | None:
        got = self.attempt(cand)
        if got is not None and _key(*got) < than:
            return got
        return None

    def _delete_some(
        self, outcome: Outcome, switches: dict[int, int]
    ) -> tuple[Outcome, dict[int, int]] | None:
        keys = sorted(switches)
        best = _key(outcome, switches)
        chunk = max(len(keys) // 2, 1)
        while keys and chunk >= 1:
            for start in range(0, len(keys), chunk):
                gone = set(keys[start : start + chunk])
                cand = {k: v for k, v in switches.items() if k not in gone}
                got = self._better(cand, best)
                if got is not None:
                    return got
                if self.runs_left <= 0:
                    return None
            chunk //= 2
        return None

    def _move_earlier(
        self, outcome: Outcome, switches: dict[int, int]
    ) -> tuple[Outcome, dict[int, int]] | None:
        best = _key(outcome, switches)
        for k in sorted(switches):
            if k == 0 or k - 1 in switches:
                continue
            cand = dict(switches)
            cand[k - 1] = cand.pop(k)
            got = self._better(cand, best)
            if got is not None:
                return got
            if self.runs_left <= 0:
                return None
        return None


def shrink_trace(model: Model, trace: Trace, max_steps: int, max_runs: int = 1000) -> Trace:
    """A trace violating the same oracle with fewer preemptions and steps, if
    the shrinker finds one within `max_runs` schedules; else `trace`."""
    follow = FollowStrategy(trace.schedule)
    outcome = run_schedule(model, follow, max_steps)
    if outcome.violation is None or outcome.violation.oracle != trace.oracle:
        return trace
    shrinker = _Shrinker(model, trace.oracle, max_steps, max_runs)
    best, _ = shrinker.shrink(outcome, follow.switches)
    assert best.violation is not None
    return replace(
        trace,
        schedule=best.schedule,
        steps=best.steps,
        preemptions=best.preemptions,
        message=best.violation.message,
        original={"steps": trace.steps, "preemptions": trace.preemptions},
    )
