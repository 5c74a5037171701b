"""The kernel core: the page-cache hit path, and the SimExecutor's step rate."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import greenlet

from bench.harness import Report, interleaved, per_op
from pagemap import PG_UPTODATE, PGSIZE, Machine, Page, PageMap

N_PAGES = 64


class MemoryOps:
    def readpage(self, pm: PageMap, page: Page) -> None:
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        pass


def hit_path(executor: str, fd: int) -> tuple[float, float]:
    """(seconds per load_page + put_page of a cached page, per 4 KiB os.pread
    of a host-cached file), interleaved."""
    machine = Machine(cores=1, memory=(N_PAGES + 1) * PGSIZE, executor=executor)
    pm = machine.page_map(MemoryOps())
    for i in range(N_PAGES):
        pm.put_page(pm.load_page(i))

    def loop(n: int) -> None:
        load, put = pm.load_page, pm.put_page
        for i in range(n):
            put(load(i & (N_PAGES - 1)))

    return interleaved(loop, host_preads(fd), 50_000)


def host_preads(fd: int) -> Callable[[int], None]:
    def loop(n: int) -> None:
        pread = os.pread
        for i in range(n):
            pread(fd, PGSIZE, (i & (N_PAGES - 1)) * PGSIZE)

    return loop


def hit_path_in_sim_task() -> float:
    """The same, inside a SimExecutor task racing another, so every
    scheduling point consults the strategy."""
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

    return per_op(once, 2 * n, repeat=3)


def sim_steps_per_second() -> tuple[float, float]:
    """(scheduling steps/s with 4 tasks hammering atomics, greenlet switches/s)."""
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

    step_time = per_op(run, 4 * n, repeat=3)

    def pingpong(count: int) -> None:
        other: greenlet.greenlet

        def bounce() -> None:
            for _ in range(count):
                main.switch()

        main = greenlet.getcurrent()
        other = greenlet.greenlet(bounce)
        for _ in range(count):
            other.switch()

    switch_time = per_op(pingpong, 100_000) / 2  # two switches per round trip
    return 1 / step_time, 1 / switch_time


def run(report: Report) -> None:
    with tempfile.NamedTemporaryFile() as f:
        f.write(os.urandom(N_PAGES * PGSIZE))
        f.flush()
        fd = f.fileno()
        os.pread(fd, N_PAGES * PGSIZE, 0)  # warm the host cache
        for executor in ("threads", "sim"):
            ours, pread = hit_path(executor, fd)
            where = "threads executor" if executor == "threads" else "sim, outside tasks"
            report.add("os.pread 4 KiB, warm (baseline of the next)", pread * 1e6, "us/op")
            report.add(
                f"load_page+put_page hit, {where}", ours * 1e6, "us/op", baseline=pread * 1e6
            )
        report.add(
            "load_page+put_page hit, sim, 2 racing tasks (against the last pread)",
            hit_path_in_sim_task() * 1e6,
            "us/op",
            baseline=pread * 1e6,
        )
    steps, switches = sim_steps_per_second()
    report.add("greenlet switches/s (baseline)", switches, "switch/s")
    report.add("SimExecutor steps/s, 4 tasks, random strategy", steps, "step/s", baseline=switches)
