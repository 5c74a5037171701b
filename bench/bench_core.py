"""The kernel core: the page-cache hit path, and the SimExecutor's step rate.

Each figure is paired with its baseline, median of paired rounds (harness):
a cached page's load_page+put_page against a 4 KiB os.pread of a
host-cached file, as many of each; and the SimExecutor's scheduling steps
against as many bare greenlet switches.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import greenlet

from bench.harness import Paired, Report, paired
from pagemap import PG_UPTODATE, PGSIZE, Machine, Page, PageMap

N_PAGES = 64


class MemoryOps:
    def readpage(self, pm: PageMap, page: Page) -> None:
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        pass


def hit_path(executor: str, fd: int) -> Paired:
    """Seconds per load_page + put_page of a cached page, against per 4 KiB
    os.pread of a host-cached file."""
    machine = Machine(cores=1, memory=(N_PAGES + 1) * PGSIZE, executor=executor)
    pm = machine.page_map(MemoryOps())
    for i in range(N_PAGES):
        pm.put_page(pm.load_page(i))

    def loop(n: int) -> None:
        load, put = pm.load_page, pm.put_page
        for i in range(n):
            put(load(i & (N_PAGES - 1)))

    return paired(loop, host_preads(fd), 50_000)


def host_preads(fd: int) -> Callable[[int], None]:
    def loop(n: int) -> None:
        pread = os.pread
        for i in range(n):
            pread(fd, PGSIZE, (i & (N_PAGES - 1)) * PGSIZE)

    return loop


def hit_path_in_sim_task(fd: int) -> Paired:
    """The same, inside a SimExecutor task racing another, so every
    scheduling point consults the strategy (against as many preads)."""
    machine = Machine(cores=2, memory=(N_PAGES + 1) * PGSIZE, executor="sim", seed=1)
    pm = machine.page_map(MemoryOps())
    for i in range(N_PAGES):
        pm.put_page(pm.load_page(i))
    n = 20_000

    def loader() -> None:
        for i in range(n):
            pm.put_page(pm.load_page(i & (N_PAGES - 1)))

    def once(_: int) -> None:
        m2 = machine
        m2.spawn(loader)
        m2.spawn(loader)
        m2.run()

    return paired(once, host_preads(fd), 2 * n, rounds=5)


def sim_steps() -> Paired:
    """Seconds per scheduling step with 4 tasks hammering atomics, against
    per greenlet switch (as many switches as steps)."""
    machine = Machine(cores=4, memory="64KiB", executor="sim", seed=3)
    word = machine.executor.atomic(0, "w")
    n = 25_000

    def hammer() -> None:
        for _ in range(n):
            word.fetch_add(1)

    def run(_: int) -> None:
        for _ in range(4):
            machine.spawn(hammer)
        machine.run()

    def pingpong(switches: int) -> None:
        trips = switches // 2  # two switches per round trip
        other: greenlet.greenlet

        def bounce() -> None:
            for _ in range(trips):
                main.switch()

        main = greenlet.getcurrent()
        other = greenlet.greenlet(bounce)
        for _ in range(trips):
            other.switch()

    return paired(run, pingpong, 4 * n, rounds=5)


def run(report: Report) -> None:
    with tempfile.NamedTemporaryFile() as f:
        f.write(os.urandom(N_PAGES * PGSIZE))
        f.flush()
        fd = f.fileno()
        os.pread(fd, N_PAGES * PGSIZE, 0)  # warm the host cache
        for executor in ("threads", "sim"):
            hit = hit_path(executor, fd)
            where = "threads executor" if executor == "threads" else "sim, outside tasks"
            report.add("os.pread 4 KiB, warm (baseline of the next)", hit.baseline * 1e6, "us/op")
            report.add_time(f"load_page+put_page hit, {where}", hit, "us/op", 1e6)
        report.add_time(
            "load_page+put_page hit, sim, 2 racing tasks (vs as many os.pread 4 KiB)",
            hit_path_in_sim_task(fd),
            "us/op",
            1e6,
        )
    steps = sim_steps()
    report.add("greenlet switches/s (baseline)", 1 / steps.baseline, "switch/s")
    report.add_rate(
        "SimExecutor steps/s, 4 tasks, random strategy (vs as many greenlet switches)",
        steps,
        "step/s",
    )
