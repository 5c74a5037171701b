"""The real kernel passes every scenario: DPOR with two preemptions, to the end."""

from __future__ import annotations

import pytest

from pagemap.check.explore import explore_model
from pagemap.check.scenarios import registry
from pagemap.kernel.mkwrite import DIRTY_TRACKING
from pagemap.machine import DIRTY_TRACKING_ENV

# The ext2 scenarios cost a mount per schedule; tests/test_ext2_check.py
# runs them (DFS to the end, and their mutant) once, through `pagemap check`.
SCENARIOS = [name for name in registry() if not name.startswith("ext2-")]


@pytest.mark.parametrize("mode", DIRTY_TRACKING)
@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_holds_under_dpor_to_the_end(
    name: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under both dirty-tracking modes (kernel/mkwrite.py): the Machine's
    default comes from $PAGEMAP_DIRTY_TRACKING; a scenario of one mode's race
    pins its own."""
    pinned = registry()[name].dirty_tracking
    if pinned is not None and pinned != mode:
        pytest.skip(f"{name} is a race of dirty_tracking={pinned!r}")
    monkeypatch.setenv(DIRTY_TRACKING_ENV, mode)
    model = registry()[name].model()
    summary = explore_model(model, "dpor", budget=50_000, bound=2)
    assert summary.trace is None, f"{summary.trace.oracle}: {summary.trace.message}"
    assert summary.exhaustive, f"{name} did not finish within the budget"
    assert 0 < summary.distinct <= summary.schedules - summary.redundant


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_holds_under_random_and_pct(name: str) -> None:
    model = registry()[name].model()
    for strategy in ("random", "pct"):
        summary = explore_model(model, strategy, seed=11, budget=100)
        assert summary.trace is None, f"{strategy}: {summary.trace.message}"


def test_reclaim_racing_a_store_and_a_remover_holds_under_dpor_to_the_end() -> None:
    """Direct reclaim, a store through the mapping and a user's remove_contig:
    no spurious OutOfMemory, nothing lost, no stale translation."""
    model = registry()["reclaim-store"].model({"remover": 1})
    summary = explore_model(model, "dpor", budget=50_000, bound=2)
    assert summary.trace is None, f"{summary.trace.oracle}: {summary.trace.message}"
    assert summary.exhaustive
