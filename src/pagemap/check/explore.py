"""explore_model: an exploration of one model to its end (check/runner.py's
Exploration), then its counterexample shrunk (check/shrink.py).

The runner runs schedules and the shrinker re-runs them, so the two meet
here, above both.
"""

from __future__ import annotations

from pagemap.check.runner import (
    DEFAULT_MAX_STEPS,
    DEFAULT_WATCHDOG,
    Exploration,
    Model,
    Progress,
    Summary,
)
from pagemap.check.shrink import shrink_trace
from pagemap.sync.watchdog import Watchdog


def explore_model(
    model: Model,
    strategy: str = "dpor",
    seed: int = 0,
    budget: int | None = None,
    time_limit: float | None = None,
    bound: int | None = None,
    depth: int = 3,
    max_steps: int = DEFAULT_MAX_STEPS,
    first: int = 0,
    progress: Progress | None = None,
    shrink: bool = True,
    watchdog: float | None = DEFAULT_WATCHDOG,
) -> Summary:
    """Run schedules first, first+1, ... until a violation, the budget, the time
    limit, or (DPOR, DFS) the end of the space."""
    if budget is None and time_limit is None and strategy not in ("dpor", "dfs"):
        raise ValueError(f"a {strategy} exploration needs a budget or a time limit")
    dog = Watchdog(watchdog) if watchdog is not None else None
    try:
        run = Exploration(model, strategy, seed, bound, depth, max_steps, first, budget, dog)
        run.run(None, time_limit, progress)
        summary = run.summary
        if summary.trace is not None and shrink:
            summary.trace = shrink_trace(model, summary.trace, watchdog=dog)
        return summary
    finally:
        if dog is not None:
            dog.close()


__all__ = ["explore_model"]
