"""The checker's strategies: how schedules are chosen.

dpor     partial-order reduction to the end (check/strategies/search.py); the default
dfs      bounded-exhaustive depth-first search
pct      probabilistic concurrency testing
random   uniform random choices
"""

from __future__ import annotations

from pagemap.check.strategies.base import (
    BoundExceeded,
    Chooser,
    Explorer,
    Nondeterminism,
    SleepBlocked,
)
from pagemap.check.strategies.follow import FollowChooser, SwitchChooser
from pagemap.check.strategies.pct import PCTExplorer
from pagemap.check.strategies.random import RandomExplorer
from pagemap.check.strategies.search import Search

STRATEGIES = ("dpor", "dfs", "pct", "random")
EXHAUSTIVE = ("dpor", "dfs")
DEFAULT_STRATEGY = "dpor"
DEFAULT_BOUND = 2  # preemptions, for dpor and dfs


def make_explorer(name: str, seed: int = 0, bound: int | None = None, depth: int = 3) -> Explorer:
    """The explorer called `name`; ValueError naming the choices otherwise."""
    if name == "dpor":
        # Under a bound, no sleep sets: a sleeping task may be the one whose
        # blocking gives the free switch a bounded trace needs (search.py).
        return Search(True, bound, seed, sleep_sets=bound is None)
    if name == "dfs":
        return Search(False, bound, seed)
    if name == "pct":
        return PCTExplorer(seed, depth, bound=bound)
    if name == "random":
        return RandomExplorer(seed, bound)
    raise ValueError(f"unknown strategy {name!r}: choose one of {', '.join(STRATEGIES)}")


__all__ = [
    "DEFAULT_BOUND",
    "DEFAULT_STRATEGY",
    "EXHAUSTIVE",
    "STRATEGIES",
    "BoundExceeded",
    "Chooser",
    "Explorer",
    "FollowChooser",
    "Nondeterminism",
    "PCTExplorer",
    "RandomExplorer",
    "Search",
    "SleepBlocked",
    "SwitchChooser",
    "make_explorer",
]
