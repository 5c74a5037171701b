"""The page-map mutants under frontrun and under pagemap check, on one program.

frontrun needs its own launcher (it preloads an I/O hook and patches locks),
so bench_check runs this module as `frontrun python -m bench.frontrun_check
BUDGET ROUNDS` and reads one JSON object per line: {"mutant", "budget",
"frontrun": {"found", "schedules", "seconds"}, "ours": {...}, "ratio"}.

Both sides explore the same program: the same World (a two-page Disk behind
a bare page map), the same worker functions and the same invariant checked
once all are done, under the same mutant, with DPOR at most two preemptions
and the same budget of schedules.  frontrun runs each worker on a real
thread against a Machine with the ThreadExecutor; pagemap check runs them as
tasks of a Machine with the deterministic executor (two cores, eight
frames, as frontrun's).  The seconds are the median of paired rounds (the
harness's rule), both sides in this one process, under frontrun's launcher.

frontrun cannot express the mapping mutants: its threads are not the
Machine's tasks, so every access would run on core 0 and there would be no
other core's TLB to go stale.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import Rounds, interleave
from pagemap.check.explore import explore_model
from pagemap.check.model import model
from pagemap.check.mutants import MUTANTS
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.page import PG_DIRTY, PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.machine import Machine
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor
from pagemap.sync.threads import ThreadExecutor

CORES = 2
MEMORY = 8 * PGSIZE


class Disk:
    """Two blocks.  Each transfer opens with a scheduling point naming its
    block, as docs/writing-a-model.md asks of a page map's ops, so that
    pagemap check may run another task between the page's insertion and its
    bytes' arrival (under frontrun's threads the point is the
    ThreadExecutor's, which does nothing: frontrun switches where it will)."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.blocks = [bytes([1]) * PGSIZE, bytes([1]) * PGSIZE]
        self.shadow = list(self.blocks)
        self.reads = 0
        self.bad: list[str] = []

    def readpage(self, pm: PageMap, page: Page) -> None:
        self.executor.point("disk.read", ("disk", page.index), READ)
        self.reads += 1
        page.data[:] = self.blocks[page.index]
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        self.executor.point("disk.write", ("disk", page.index), WRITE)
        self.blocks[page.index] = bytes(page.data)


class World:
    """The shared state, on `machine` (pagemap check's) or on a fresh
    Machine with the ThreadExecutor (frontrun's)."""

    def __init__(self, machine: Machine | None = None, preload: bool = True) -> None:
        self.machine = machine or Machine(cores=CORES, memory=MEMORY, executor=ThreadExecutor())
        self.disk = Disk(self.machine.executor)
        self.pm = self.machine.page_map(self.disk)
        if preload:
            self.pm.put_page(self.pm.load_page(0))

    def write(self, version: int) -> None:
        page = self.pm.load_page(0)
        page.data[:] = bytes([version]) * PGSIZE
        self.disk.shadow[0] = bytes(page.data)
        page.flags.fetch_or(PG_DIRTY)
        self.pm.put_page(page)

    def durable(self) -> bool:
        self.pm.remove_contig(0, 2)
        return self.disk.blocks == self.disk.shadow and not self.disk.bad


def writer(w: World) -> None:
    w.write(2)
    w.write(3)


def remover(w: World) -> None:
    w.pm.remove_contig(0, 1)


def syncer(w: World) -> None:
    w.pm.writeback(0, 1)


def loader(w: World) -> None:
    page = w.pm.load_page(0)
    if bytes(page.data[:1]) != b"\x01":
        w.disk.bad.append("a loader saw bytes that were never written")
    w.pm.put_page(page)


def read_once(w: World) -> bool:
    return w.disk.reads == 1 and not w.disk.bad


def dirty_world(machine: Machine | None = None) -> World:
    w = World(machine)
    w.write(9)
    return w


def cold_world(machine: Machine | None = None) -> World:
    return World(machine, preload=False)


# mutant -> (setup, workers, invariant)
Case = tuple[Callable[..., World], list[Callable[[World], None]], Callable[[World], bool]]
CASES: dict[str, Case] = {
    "lookup-keeps-removal": (World, [writer, remover], World.durable),
    "free-after-reuse": (World, [writer, remover], World.durable),
    "mark-referenced": (World, [writer, remover], World.durable),
    "dirty-cleared-late": (dirty_world, [writer, syncer], World.durable),
    "two-removers": (World, [writer, remover, remover], World.durable),
    "load-skips-recheck": (cold_world, [loader, loader], read_once),
    "load-no-wait": (cold_world, [loader, loader], read_once),
}


def frontrun_once(name: str, budget: int) -> tuple[bool, int]:
    """(found, schedules) of frontrun's DPOR, at most two preemptions."""
    import frontrun  # type: ignore[import-not-found,unused-ignore]

    setup, workers, invariant = CASES[name]
    result = frontrun.explore(
        setup=setup,
        workers=workers,
        invariant=invariant,
        strategy="dpor",
        detect_io=False,
        reproduce_on_failure=0,
        max_executions=budget,
        preemption_bound=2,
    )
    return not result.property_holds, int(result.num_explored)


def ours_once(name: str, budget: int) -> tuple[bool, int]:
    """(found, schedules) of pagemap check's DPOR, at most two preemptions."""
    setup, workers, invariant = CASES[name]
    m = model(setup, *workers, check=invariant, cores=CORES, memory=MEMORY, name=name)
    s = explore_model(m, "dpor", budget=budget, bound=2, shrink=False)
    return s.trace is not None, s.schedules


def compare(name: str, budget: int, rounds: int) -> dict[str, Any]:
    mutant = next(m for m in MUTANTS if m.name == name)
    got = Rounds()
    found: dict[str, tuple[bool, int]] = {}

    def timed(side: str, fn: Callable[[str, int], tuple[bool, int]]) -> Callable[[], float]:
        def once() -> float:
            t0 = time.perf_counter()
            found[side] = fn(name, budget)
            return time.perf_counter() - t0

        return once

    with mutant.applied():
        interleave(
            {"frontrun": timed("frontrun", frontrun_once), "ours": timed("ours", ours_once)},
            rounds,
            into=got,
        )
    sides = {
        side: {"found": found[side][0], "schedules": found[side][1], "seconds": got.median(side)}
        for side in ("frontrun", "ours")
    }
    return {"mutant": name, "budget": budget, **sides, "ratio": got.ratio("frontrun", "ours")}


def main(argv: list[str]) -> int:
    budget = int(argv[0]) if argv else 500
    rounds = int(argv[1]) if len(argv) > 1 else 3
    for name in CASES:
        print(json.dumps(compare(name, budget, rounds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
