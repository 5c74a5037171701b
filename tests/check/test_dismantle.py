"""An exploration frees each schedule's world by reference counting
(Machine.dismantle, check/runner.py `_dismantle`): the cycle collector finds
nothing of it, and the exploration reaches the verdict and the schedules it
reaches without (tests/check/test_pinned.py holds the schedules)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pagemap.check.explore import explore_model
from pagemap.check.scenarios import lookup


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.parametrize("strategy, bound", [("random", None), ("dpor", 2)])
def test_a_finished_schedule_leaves_no_cycle(
    no_collector: None, strategy: str, bound: int | None
) -> None:
    model = lookup("store-remove").model()
    explore_model(model, strategy, bound=bound, budget=20)  # the explorer's own state made
    gc.collect()
    summary = explore_model(model, strategy, bound=bound, budget=20)
    assert summary.schedules == 20 and summary.trace is None
    # Before dismantling, each schedule left about 175 objects in cycles.
    assert gc.collect() < 20
