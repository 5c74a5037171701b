"""The page-map mutants driven by frontrun, for bench_check.py.

frontrun needs its own launcher (it preloads an I/O hook and patches locks),
so bench_check runs this module as `frontrun python -m bench.frontrun_check`
and reads one JSON object per line: {"mutant", "strategy", "found",
"schedules", "seconds"}.

frontrun runs each worker on a real thread against a Machine with the
ThreadExecutor and checks an invariant once all are done, so it can express
the scenarios whose oracle is the final state (durability, readpage counts,
what each loader saw).  It cannot express the mapping mutants: its threads
are not the Machine's tasks, so every access would run on core 0 and there
would be no other core's TLB to go stale.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from pagemap.check.mutants import MUTANTS
from pagemap.hw.memory import PGSIZE
from pagemap.kernel.page import PG_DIRTY, PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.machine import Machine
from pagemap.sync.threads import ThreadExecutor


class Disk:
    def __init__(self) -> None:
        self.blocks = [bytes([1]) * PGSIZE, bytes([1]) * PGSIZE]
        self.shadow = list(self.blocks)
        self.reads = 0
        self.bad: list[str] = []

    def readpage(self, pm: PageMap, page: Page) -> None:
        self.reads += 1
        page.data[:] = self.blocks[page.index]
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        self.blocks[page.index] = bytes(page.data)


class World:
    def __init__(self, preload: bool = True) -> None:
        self.machine = Machine(cores=2, memory=8 * PGSIZE, executor=ThreadExecutor())
        self.disk = Disk()
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


def dirty_world() -> World:
    w = World()
    w.write(9)
    return w


# mutant -> (setup, workers, invariant)
Case = tuple[Callable[[], World], list[Callable[[World], None]], Callable[[World], bool]]
CASES: dict[str, Case] = {
    "lookup-keeps-removal": (World, [writer, remover], World.durable),
    "free-after-reuse": (World, [writer, remover], World.durable),
    "mark-referenced": (World, [writer, remover], World.durable),
    "dirty-cleared-late": (dirty_world, [writer, syncer], World.durable),
    "two-removers": (World, [writer, remover, remover], World.durable),
    "load-skips-recheck": (lambda: World(preload=False), [loader, loader], read_once),
    "load-no-wait": (lambda: World(preload=False), [loader, loader], read_once),
}


def run(name: str, strategy: str, budget: int) -> dict[str, Any]:
    import frontrun  # type: ignore[import-not-found,unused-ignore]

    mutant = next(m for m in MUTANTS if m.name == name)
    setup, workers, invariant = CASES[name]
    extra: dict[str, Any] = (
        {"max_attempts": budget, "seed": 0}
        if strategy == "random"
        else {"max_executions": budget, "preemption_bound": 2}
    )
    t0 = time.perf_counter()
    with mutant.applied():
        result = frontrun.explore(
            setup=setup,
            workers=workers,
            invariant=invariant,
            strategy=strategy,
            detect_io=False,
            reproduce_on_failure=0,
            **extra,
        )
    seconds = time.perf_counter() - t0
    found = not result.property_holds
    return {
        "mutant": name,
        "strategy": strategy,
        "found": found,
        "schedules": int(result.num_explored),
        "seconds": seconds,
    }


def main(argv: list[str]) -> int:
    budget = int(argv[0]) if argv else 2000
    for name in CASES:
        for strategy in ("dpor", "random"):
            print(json.dumps(run(name, strategy, budget)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
