"""Happens-before kept along the search path equals happens-before computed afresh.

DPOR computes the happens-before of each run from the first step it does
not share with the run before (hb.py `rebase`: the steps after the branch
point undone, the new ones added).  That is only a saving if it is exact:
after every schedule of a DPOR exploration (bounded and not), every field
the search reads (clocks, direct predecessors, program order, footprints, the
acquisitions' races, the release-acquire pairs) and the trace's normal form
must equal those of a HappensBefore built from the run's log alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from pagemap.check.explore import explore_model
from pagemap.check.hb import HappensBefore
from pagemap.check.scenarios import lookup
from pagemap.check.strategies.search import Search
from tests.check import programs

SCENARIOS = ("store-remove", "writeback-remove", "munmap-remove", "ext2-append-truncate")


def _fields(hb: HappensBefore) -> tuple[Any, ...]:
    # A kept clock may be wider than the run needs (a task of an earlier run,
    # with no step in this one): those components must be 0, and are left out.
    width = max(hb.log.tids, default=-1) + 1
    assert all(not any(clock[width:]) for clock in hb.vc)
    return (
        [clock[:width] for clock in hb.vc],
        hb.preds,
        hb.local,
        hb.prev,
        hb.fps,
        hb.acquired_after,
        hb.no_race,
        hb.signature(),
    )


class _Compared:
    """Wraps Search.finished: after each schedule, the kept happens-before
    against a fresh one of the same log."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        self.rebased = 0
        finished = Search.finished

        def checked(search: Search, chooser: Any, outcome: Any) -> None:
            finished(search, chooser, outcome)
            hb, log = search.hb, search.last_log
            if hb is None or log is None:
                return
            fresh = HappensBefore(log, release_races=search.bound is not None)
            assert _fields(hb) == _fields(fresh), f"schedule {self.runs}"
            self.runs += 1

        monkeypatch.setattr(Search, "finished", checked)
        rebase = HappensBefore.rebase

        def counted(hb: HappensBefore, log: Any, keep: int) -> None:
            self.rebased += keep > 0
            rebase(hb, log, keep)

        monkeypatch.setattr(HappensBefore, "rebase", counted)


@pytest.mark.parametrize("bound", [None, 2])
@pytest.mark.parametrize("name", SCENARIOS)
def test_kept_happens_before_equals_a_fresh_one(
    monkeypatch: pytest.MonkeyPatch, name: str, bound: int | None
) -> None:
    compared = _Compared(monkeypatch)
    model = lookup(name).model()
    summary = explore_model(model, "dpor", bound=bound, budget=300, shrink=False)
    assert summary.trace is None
    assert compared.runs == summary.schedules > 1
    assert compared.rebased > 0  # the prefix was kept, not recomputed every time


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs.programs(max_points_2=10, max_points_3=7))
# Three tasks, the third's steps only after a schedule ran two: a kept clock
# wider than a fresh one (found by this test).
@example(
    (
        (("", (("up", 0, 0, 0),)), ("", (("load", 0, 0, 0),))),
        (("", (("load", 0, 0, 0),)),),
        (("", (("down", 0, 0, 0),)), ("", (("load", 2, 0, 0),))),
    )
)
def test_on_generated_programs(program: programs.Program) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        compared = _Compared(monkeypatch)
        for bound in (None, 1):
            model = programs.build_model(program, set())
            explore_model(model, "dpor", bound=bound, budget=200, shrink=False)
        assert compared.runs > 0
