"""Which scenarios run which kernel function: the lock mutants' scenarios to try.

A lock mutant (check/mutants/auto.py) can only be killed by a scenario that
runs the function it patches, so each is tried against those alone.  The
map comes from a few schedules of every registered scenario (the default
schedule and RUNS - 1 random ones) under `sys.setprofile`, which sees every
call, in the tasks' greenlets too: per function (its file and first line),
the scenarios that call it, and how many of their tasks do.  A scenario
where two tasks run the function races it most directly, so the scenarios are
ranked by that count, then in the registry's order.  Computed once per run
of `pagemap check --mutants --auto` (a second or so); never cached on disk,
so it cannot go stale.  The same runs, and as many more random ones as it
asks for, feed the census of the lock sites' sections
(check/mutants/auto_census.py) when one is given.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from greenlet import getcurrent

from pagemap.check.context import RunContext
from pagemap.check.runner import run_schedule
from pagemap.check.scenario import Scenario
from pagemap.check.strategies import SwitchChooser, make_explorer

RUNS = 3  # schedules per scenario: the default one and two random ones
Key = tuple[str, int]  # a function: its file, its first line


def calls(
    scenario: Scenario,
    runs: int = RUNS,
    observe: Callable[[RunContext], None] | None = None,
    observed: int = 0,
) -> dict[Key, int]:
    """Function -> how many tasks (greenlets other than the set-up's) called
    it, most over `runs` schedules of `scenario`'s defaults.  `observe` is
    given each run's context before its tasks start, over max(runs,
    `observed`) schedules: the first `runs` of them are the map's."""
    model = scenario.model()
    main = getcurrent()
    seen: dict[Key, set[int]] = {}

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            who = getcurrent()
            seen.setdefault((code.co_filename, code.co_firstlineno), set()).add(
                0 if who is main else id(who)
            )

    explorer = make_explorer("random", 0)
    out: dict[Key, int] = {}
    for index in range(max(runs, observed if observe is not None else 0)):
        chooser = SwitchChooser({}) if index == 0 else explorer.chooser(index)
        if chooser is None:
            break
        if index >= runs:
            run_schedule(model, chooser, observe=observe)
            continue
        seen.clear()
        sys.setprofile(profile)
        try:
            run_schedule(model, chooser, observe=observe)
        finally:
            sys.setprofile(None)
        for key, tasks in seen.items():
            out[key] = max(out.get(key, 0), len(tasks - {0}))
    return out


def scenario_map(
    scenarios: Mapping[str, Scenario],
    observe: Callable[[RunContext], None] | None = None,
    observed: int = 0,
) -> dict[Key, list[str]]:
    """Function -> the scenarios that call it, most tasks first (a function
    only the set-up calls still counts: its scenario runs it); `observe`,
    `observed`: as calls' (the census's runs)."""
    ranked: dict[Key, list[tuple[int, int, str]]] = {}
    for i, (name, scenario) in enumerate(scenarios.items()):
        for key, tasks in calls(scenario, RUNS, observe, observed).items():
            ranked.setdefault(key, []).append((-tasks, i, name))
    return {key: [name for _, _, name in sorted(rows)] for key, rows in ranked.items()}


__all__ = ["RUNS", "calls", "scenario_map"]
