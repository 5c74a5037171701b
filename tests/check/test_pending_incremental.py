"""Races with pending steps, kept along the search path, equal a fresh computation.

Bounded DPOR takes the races of every task's pending step (hb.py
`pending_races`).  The happens-before it keeps finds them as each step is
added and keeps them with the step, so a run pays only for its steps past
the branch point, and the search is handed only those (`new_pending_races`).
Both are savings only if exact:

- after every schedule, the kept object's pending races equal those of the
  run's log computed afresh, by the flat scan of each object's whole history
  below (the algorithm as first written, with no segments and nothing kept);
- a search handed only the new races makes the same choices, run by run, as
  one handed all of them every time: every node's backtrack, conservative and
  done sets, and the trace of each run.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from pagemap.check.explore import explore_model
from pagemap.check.hb import Footprint, HappensBefore
from pagemap.check.scenarios import lookup
from pagemap.check.strategies.search import Search
from pagemap.sync.core import WRITE
from tests.check import programs


def flat_pending_races(hb: HappensBefore, pending: dict[int, Footprint]) -> list[tuple[int, int]]:
    """pending_races from scratch: one pass over the steps with each
    object's history as a flat list of (step, access)."""
    tids, vc, local = hb.log.tids, hb.vc, hb.local
    history: dict[object, list[tuple[int, int]]] = {}
    last_of = [-1] * max(hb.ntasks, max(pending, default=-1) + 1)
    out: set[tuple[int, int]] = set()
    work: list[tuple[int, int, Any]] = [(tids[j], j, hb.fps[j]) for j in range(len(tids))]
    work.extend((p, -1, fp) for p, fp in pending.items())
    for p, j, fp in work:
        prev = last_of[p]
        seen_by_p = vc[prev] if prev >= 0 else None
        for obj, acc in fp:
            for i, a in reversed(history.get(obj, [])):
                t = tids[i]
                if seen_by_p is not None and (t == p or seen_by_p[t] > local[i]):
                    if a & WRITE:
                        break
                    continue
                if not (a | acc) & WRITE:
                    continue
                out.add((i, p))
                if i < prev:
                    break
        if j >= 0:
            for obj, acc in fp:
                history.setdefault(obj, []).append((j, acc))
            last_of[p] = j
    return sorted(out)


def _checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """After each bounded schedule: the kept pending races against the flat scan."""
    runs = [0]
    finished = Search.finished

    def checked(search: Search, chooser: Any, outcome: Any) -> None:
        log = outcome.log
        pending = search._pending(chooser, log) if log is not None else {}
        finished(search, chooser, outcome)
        hb = search.hb
        if hb is None or log is None or search.bound is None:
            return
        assert hb.tracks_pending
        fresh = HappensBefore(log, release_races=True)
        assert hb.pending_races(pending) == flat_pending_races(fresh, pending)
        runs[0] += 1

    monkeypatch.setattr(Search, "finished", checked)
    return runs


def _decisions(
    monkeypatch: pytest.MonkeyPatch, model_of: Any, bound: int, every_time: bool
) -> list[Any]:
    """Each run's trace and every node's sets, with the search handed only
    the new pending races, or all of them every time."""
    seen: list[Any] = []
    finished = Search.finished

    def recorded(search: Search, chooser: Any, outcome: Any) -> None:
        finished(search, chooser, outcome)
        nodes = [(n.event, n.tid, n.backtrack, n.conservative, n.done) for n in search.stack]
        seen.append((tuple(chooser.path.choices), search.last_trace, nodes))

    with monkeypatch.context() as m:
        m.setattr(Search, "finished", recorded)
        if every_time:
            m.setattr(HappensBefore, "new_pending_races", HappensBefore.pending_races)
        explore_model(model_of(), "dpor", bound=bound, budget=300, shrink=False)
    return seen


@pytest.mark.parametrize("name", ["store-remove", "munmap-remove", "ext2-append-truncate"])
def test_kept_pending_races_equal_a_fresh_scan(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    runs = _checked(monkeypatch)
    summary = explore_model(lookup(name).model(), "dpor", bound=2, budget=300, shrink=False)
    assert runs[0] == summary.schedules > 1


@pytest.mark.parametrize("name", ["store-remove", "write-remove"])
def test_the_new_races_only_make_the_same_search(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    model_of = lookup(name).model
    new = _decisions(monkeypatch, model_of, 2, every_time=False)
    every = _decisions(monkeypatch, model_of, 2, every_time=True)
    assert len(new) > 1
    assert new == every


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs.programs(max_points_2=10, max_points_3=7))
def test_on_generated_programs(program: programs.Program) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        runs = _checked(monkeypatch)
        for bound in (0, 1):
            model = programs.build_model(program, set())
            explore_model(model, "dpor", bound=bound, budget=200, shrink=False)
        assert runs[0] > 0

        def model_of() -> Any:
            return programs.build_model(program, set())

        for bound in (0, 1):
            new = _decisions(monkeypatch, model_of, bound, every_time=False)
            assert new == _decisions(monkeypatch, model_of, bound, every_time=True)
