"""An exploration frees each schedule's world by reference counting
(Machine.dismantle, check/runner.py `_dismantle`): the cycle collector finds
nothing of it, and the exploration reaches the verdict and the schedules it
reaches without (tests/check/test_pinned.py holds the schedules)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pagemap import MAP_SHARED, PGSIZE, PROT_READ, PROT_WRITE, Machine
from pagemap.check.explore import explore_model
from pagemap.check.memdisk import MemInode
from pagemap.check.scenarios import lookup
from pagemap.kernel.vfs import File


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


def test_a_dismantled_machine_is_freed_as_it_is_dropped(no_collector: None) -> None:
    """Machine.dismantle: a machine that mapped a file, faulted and stored
    leaves nothing to the cycle collector once dropped (under threads, whose
    executor keeps no cycle of its own); without it, hundreds of objects."""

    def use(dismantle: bool) -> None:
        m = Machine(cores=2, memory=8 * PGSIZE, executor="threads")
        inode = MemInode(m.executor, m.page_map, "f", bytes(2 * PGSIZE))
        f = File(inode, "f", "r+", True, True)
        p = m.process()
        va = p.mmap(2 * PGSIZE, PROT_READ | PROT_WRITE, MAP_SHARED, file=f)
        m.spawn(lambda: p.store(va, b"stamped!"))
        m.run()
        assert p.load(va, 8) == b"stamped!"
        if dismantle:
            m.dismantle()

    use(False)
    assert gc.collect() > 100
    use(True)
    assert gc.collect() == 0
