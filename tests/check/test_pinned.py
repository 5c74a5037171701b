"""Per-scenario exploration pinned: DPOR at bound 2 covers no fewer traces than recorded.

tests/check/pinned_traces.json holds, for every built-in scenario, the number
of distinct traces (the Summary's `distinct`: Mazurkiewicz traces run to their end) that
`explore_model(model, "dpor", bound=2)` covers.  A change that makes DPOR
explore less (a footprint dropped from a primitive, a dependency relaxed, a
backtrack point lost) fails here even when every oracle still holds.  A
count may rise (a more careful engine); then regenerate the file in the same
change:

    .venv/bin/python -m tests.check.test_pinned               # every scenario
    .venv/bin/python -m tests.check.test_pinned load-race     # some, the rest kept

Scenarios whose exploration takes more than a minute of CPU are listed
under "skipped" with the reason, and not run here.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pagemap.check.explore import explore_model
from pagemap.check.scenarios import registry

PINNED = Path(__file__).with_name("pinned_traces.json")
BOUND = 2
LIMIT = 60.0  # seconds of CPU; a scenario slower than this (when pinned) is skipped


def pinned() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PINNED.read_text())
    return data


class OverLimit(Exception):
    """The exploration used more than LIMIT seconds of CPU."""

    def __init__(self, schedules: int) -> None:
        self.schedules = schedules
        super().__init__(f"{schedules} schedules")


def explore(name: str, cpu_limit: float | None) -> dict[str, Any]:
    """DPOR at bound 2 on scenario `name`, to its end; OverLimit past
    `cpu_limit` seconds of this process's CPU (not of the clock: the
    machine may be shared, and the list of skipped scenarios must not
    depend on how busy it was)."""
    model = registry()[name].model()
    t0 = time.process_time()
    ran = [0]

    def progress(n: int) -> None:
        ran[0] += n
        if cpu_limit is not None and time.process_time() - t0 > cpu_limit:
            raise OverLimit(ran[0])

    s = explore_model(model, "dpor", bound=BOUND, shrink=False, progress=progress)
    return {
        "distinct": s.distinct,
        "schedules": s.schedules,
        "exhaustive": s.exhaustive,
        "violation": None if s.trace is None else s.trace.oracle,
        "cpu_seconds": round(time.process_time() - t0, 1),
    }


@pytest.mark.parametrize("name", sorted(registry()))
def test_dpor_covers_no_fewer_traces_than_pinned(name: str) -> None:
    data = pinned()
    if name in data["skipped"]:
        pytest.skip(data["skipped"][name])
    want = data["scenarios"].get(name)
    assert want is not None, f"{name} is not pinned: regenerate {PINNED.name} (see its module doc)"
    # No time limit: a scenario pinned as exhaustive must still be explored to its end.
    got = explore(name, None)
    assert got["violation"] == want["violation"], got
    assert got["exhaustive"] == want["exhaustive"], got
    assert got["distinct"] >= want["distinct"], (
        f"{name}: DPOR at bound {BOUND} covers {got['distinct']} traces, "
        f"{want['distinct']} pinned: the engine explores less than it did"
    )


def test_every_scenario_is_pinned_or_skipped_with_a_reason() -> None:
    data = pinned()
    names = set(registry())
    assert set(data["scenarios"]) | set(data["skipped"]) == names
    assert not set(data["scenarios"]) & set(data["skipped"])
    assert all(reason for reason in data["skipped"].values())


def regenerate(names: list[str]) -> None:
    """Explore the scenarios `names` (every scenario if none), each up to LIMIT
    seconds, and write the file, keeping what it says of the others."""
    known = registry()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
    old: dict[str, Any] = pinned() if names and PINNED.exists() else {}
    scenarios = {k: v for k, v in old.get("scenarios", {}).items() if k in known}
    skipped = {k: v for k, v in old.get("skipped", {}).items() if k in known}
    for name in names or sorted(known):
        scenarios.pop(name, None)
        skipped.pop(name, None)
        try:
            got: dict[str, Any] = explore(name, LIMIT)
        except OverLimit as over:
            skipped[name] = (
                f"DPOR at bound {BOUND} did not finish within {LIMIT:g} s of CPU "
                f"({over.schedules} schedules by then)"
            )
            print(name, skipped[name], file=sys.stderr, flush=True)
            continue
        scenarios[name] = got
        print(name, got, file=sys.stderr, flush=True)
    data = {
        "about": "distinct traces DPOR covers at bound 2 per built-in scenario; "
        "tests/check/test_pinned.py fails when one drops; regenerate with "
        "`.venv/bin/python -m tests.check.test_pinned [SCENARIO ...]`",
        "strategy": "dpor",
        "bound": BOUND,
        "limit_seconds": LIMIT,
        "scenarios": scenarios,
        "skipped": skipped,
    }
    PINNED.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    regenerate(sys.argv[1:])
