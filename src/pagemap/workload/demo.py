"""The kernel-core demo behind `pagemap run` until the full workload lands.

A generated file of numbered pages sits in a temp dir.  Loader tasks load
random pages through one page map, check that each holds its own page's
bytes, and put it back; remover tasks evict ranges meanwhile.  At the end the
map's accounting must be clean and every frame must be back or cached.
"""

from __future__ import annotations

import os
import random
import tempfile

from rich.console import Console
from rich.table import Table

from pagemap.hw.memory import PGSIZE
from pagemap.kernel.errors import IOFailure
from pagemap.kernel.page import PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.machine import Machine


def page_pattern(index: int) -> bytes:
    """The bytes of page `index` of the generated file."""
    stamp = index.to_bytes(8, "little")
    return stamp * (PGSIZE // 8)


class PreadOps:
    """Page-map operations over a host file descriptor (read-only)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reads = 0

    def readpage(self, pm: PageMap, page: Page) -> None:
        got = os.pread(self.fd, PGSIZE, page.index * PGSIZE)
        if len(got) != PGSIZE:
            raise IOFailure(f"short read of page {page.index}")
        page.data[:] = got
        self.reads += 1
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        raise IOFailure("the demo's file is read-only")


def run_demo(executor: str, seed: int, tasks: int, pages: int, ops: int) -> int:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="pagemap-demo-") as tmp:
        path = os.path.join(tmp, "data.bin")
        with open(path, "wb") as f:
            for i in range(pages):
                f.write(page_pattern(i))
        fd = os.open(path, os.O_RDONLY)
        try:
            return _race(console, executor, seed, tasks, pages, ops, fd)
        finally:
            os.close(fd)


def _race(
    console: Console, executor: str, seed: int, tasks: int, pages: int, ops: int, fd: int
) -> int:
    # Fewer frames than pages, so loads and removals keep competing for them.
    machine = Machine(cores=4, memory=(pages // 2 + 1) * PGSIZE, executor=executor, seed=seed)
    pm_ops = PreadOps(fd)
    pm = machine.page_map(pm_ops, name="data.bin")
    bad: list[str] = []
    removed = [0]

    def loader(tid: int) -> None:
        rng = random.Random(seed * 1000 + tid)
        for _ in range(ops):
            index = rng.randrange(pages)
            page = pm.load_page(index)
            if bytes(page.data[:8]) != page_pattern(index)[:8]:
                bad.append(f"page {index} held the bytes of another page")
            pm.put_page(page)
            if machine.allocator.nr_free < 4:
                removed[0] += pm.remove_contig(0, pages)

    def remover() -> None:
        rng = random.Random(seed)
        for _ in range(ops // 10):
            start = rng.randrange(pages)
            removed[0] += pm.remove_contig(start, rng.randrange(1, 32))

    for t in range(tasks):
        machine.spawn(loader, t, name=f"loader{t}")
    machine.spawn(remover, name="remover")
    console.print(
        f"{tasks} loaders x {ops} loads, 1 remover, {pages} pages in "
        f"{machine.allocator.nr_frames - 1} frames, executor {executor}, seed {seed}"
    )
    machine.run()
    problems = bad + machine.check_quiescent()
    table = Table(title="page map demo")
    table.add_column("counter")
    table.add_column("value", justify="right")
    table.add_row("page loads", str(tasks * ops))
    table.add_row("readpage calls", str(pm_ops.reads))
    table.add_row("pages removed", str(removed[0]))
    table.add_row("pages cached at the end", str(pm.nr_pages))
    table.add_row("free frames at the end", str(machine.allocator.nr_free))
    console.print(table)
    console.print(pm.info())
    if problems:
        for p in problems:
            console.print(f"[red]FAIL[/red] {p}")
        return 1
    console.print("[green]OK[/green] every page held its own bytes; accounting is clean")
    return 0
