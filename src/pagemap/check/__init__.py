"""The checker: explore interleavings of the kernel and prove it race by race.

`pagemap check` explores the named scenarios (check/scenarios/); `explore`
does the same for a model of your own, from pytest or anywhere.
"""

from pagemap.check.context import RunContext
from pagemap.check.explore import explore_model
from pagemap.check.model import CounterexampleFound, explore, model, replay_model
from pagemap.check.runner import Summary, run_schedule
from pagemap.check.strategies import STRATEGIES
from pagemap.check.trace import Trace
from pagemap.oracles import Violation

__all__ = [
    "STRATEGIES",
    "CounterexampleFound",
    "RunContext",
    "Summary",
    "Trace",
    "Violation",
    "explore",
    "explore_model",
    "model",
    "replay_model",
    "run_schedule",
]
