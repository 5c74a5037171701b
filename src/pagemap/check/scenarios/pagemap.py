"""Page-map scenarios: the races the seed's comments describe, with no mappings.

Each one is small on purpose (two or three tasks, a few pages) so that DFS
with two preemptions covers it in CI.  Pages are loaded once before the tasks
start, outside any task, so removal has something to race for from the
first step.
"""

from __future__ import annotations

import errno

from pagemap.check.disk import MemDisk
from pagemap.check.oracle import COHERENCE, CRASH, RunContext, Violation
from pagemap.check.scenario import Params, Scenario, drained, quiescent
from pagemap.kernel.errors import IOFailure
from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap


class Cache:
    """A page map over a MemDisk, and the task-side helpers every scenario uses."""

    def __init__(self, ctx: RunContext, nr_blocks: int, preload: int = 0) -> None:
        self.ctx = ctx
        self.disk = MemDisk(ctx, nr_blocks)
        self.pm: PageMap = ctx.machine.page_map(self.disk, name="pm")
        for i in range(preload):
            self.pm.put_page(self.pm.load_page(i))

    def who(self) -> str:
        task = self.ctx.sched.current_task()
        return task.name if task is not None else "setup"

    def get(self, index: int) -> Page:
        """load_page, then the memory-safety and coherence oracles on its result."""
        page = self.pm.load_page(index)
        self.ctx.hold(page, self.pm, index)
        self.disk.check_read(self.pm, page, self.who())
        return page

    def put(self, page: Page) -> None:
        self.ctx.drop(page)
        self.pm.put_page(page)

    def read(self, index: int) -> None:
        self.put(self.get(index))

    def write(self, index: int, writer: int) -> None:
        page = self.get(index)
        self.disk.write(self.pm, page, writer)
        self.put(page)

    def _healed(self) -> list[Violation]:
        # Injected faults belong to the race; the final drain must not hit one
        # that no task happened to reach.
        self.disk.read_faults.clear()
        self.disk.write_faults.clear()
        return []

    def end_checks(self, durable: bool = True) -> None:
        """Accounting at quiescence, then evict everything: no leak, and (if
        `durable`) the disk holds every write."""
        ctx = self.ctx
        ctx.at_end(lambda: quiescent(ctx))
        ctx.at_end(self._healed)
        ctx.at_end(lambda: drained(ctx))
        if durable:
            ctx.at_end(self.disk.check_durable)


def _load_race(ctx: RunContext, p: Params) -> None:
    cache = Cache(ctx, 1)

    def loader() -> None:
        cache.read(0)

    for i in range(p["loaders"]):
        ctx.machine.spawn(loader, name=f"loader{i}")

    def read_once() -> list[Violation]:
        n = cache.disk.reads[0]
        if n != 1:
            return [Violation(COHERENCE, f"readpage ran {n} times for one page (want exactly 1)")]
        return []

    ctx.at_end(read_once)
    cache.end_checks()


def _load_remove(ctx: RunContext, p: Params) -> None:
    pages = p["pages"]
    cache = Cache(ctx, pages, preload=pages)

    def loader() -> None:
        for _ in range(p["rounds"]):
            for i in range(pages):
                cache.read(i)

    def remover() -> None:
        for _ in range(p["rounds"]):
            cache.pm.remove_contig(0, pages)

    ctx.machine.spawn(loader, name="loader")
    ctx.machine.spawn(remover, name="remover")
    cache.end_checks()


def _write_remove(ctx: RunContext, p: Params) -> None:
    pages = p["pages"]
    cache = Cache(ctx, pages, preload=pages)

    def writer() -> None:
        for r in range(p["rounds"]):
            cache.write(r % pages, 1)

    def reader() -> None:
        for r in range(p["rounds"]):
            cache.read(r % pages)

    def remover() -> None:
        cache.pm.remove_contig(0, pages)

    ctx.machine.spawn(writer, name="writer")
    ctx.machine.spawn(remover, name="remover")
    if p["readers"]:
        ctx.machine.spawn(reader, name="reader")
    cache.end_checks()


def _eio_load(ctx: RunContext, p: Params) -> None:
    cache = Cache(ctx, 1)
    cache.disk.read_faults[0] = 1
    outcomes: list[str] = []

    def loader() -> None:
        try:
            page = cache.get(0)
        except IOFailure as exc:
            if exc.errno != errno.EIO:
                ctx.fail(CRASH, f"{cache.who()} got errno {exc.errno} from a failed read, not EIO")
            outcomes.append("EIO")
            return
        outcomes.append("page")
        cache.put(page)

    for i in range(p["loaders"]):
        ctx.machine.spawn(loader, name=f"loader{i}")

    def someone_failed() -> list[Violation]:
        if "EIO" not in outcomes:
            return [Violation(CRASH, "the failing readpage reached no loader as EIO")]
        return []

    ctx.at_end(someone_failed)
    cache.end_checks()


def _two_removers(ctx: RunContext, p: Params) -> None:
    cache = Cache(ctx, 3, preload=3)

    def writer() -> None:
        cache.write(1, 1)

    def remover(lo: int) -> None:
        cache.pm.remove_contig(lo, 2)

    ctx.machine.spawn(writer, name="writer")
    ctx.machine.spawn(remover, 0, name="remover0")
    ctx.machine.spawn(remover, 1, name="remover1")
    cache.end_checks()


def _writeback_remove(ctx: RunContext, p: Params) -> None:
    pages = p["pages"]
    cache = Cache(ctx, pages, preload=pages)
    for i in range(pages):
        cache.write(i, 9)  # dirty before the race: writeback has work from its first step

    def writer() -> None:
        for i in range(pages):
            cache.write(i, 1)

    def syncer() -> None:
        cache.pm.writeback(0, pages)

    def remover() -> None:
        cache.pm.remove_contig(0, pages)

    ctx.machine.spawn(writer, name="writer")
    ctx.machine.spawn(syncer, name="writeback")
    ctx.machine.spawn(remover, name="remover")
    cache.end_checks()


def _eio_writeback(ctx: RunContext, p: Params) -> None:
    cache = Cache(ctx, 2, preload=2)
    cache.write(0, 9)  # dirty before the race starts
    cache.disk.write_faults[0] = 1

    def remover() -> None:
        try:
            cache.pm.remove_contig(0, 2)
        except IOFailure as exc:
            if exc.errno != errno.EIO:
                ctx.fail(CRASH, f"a failed writepage gave errno {exc.errno}, not EIO")

    def writer() -> None:
        cache.write(1, 1)
        cache.read(0)

    ctx.machine.spawn(remover, name="remover")
    ctx.machine.spawn(writer, name="writer")
    cache.end_checks()


def _refcount(ctx: RunContext, p: Params) -> None:
    cache = Cache(ctx, 1, preload=1)

    def user() -> None:
        for _ in range(p["rounds"]):
            a = cache.get(0)
            b = cache.get(0)
            cache.put(a)
            cache.put(b)

    def remover() -> None:
        cache.pm.remove_contig(0, 1)

    for i in range(p["users"]):
        ctx.machine.spawn(user, name=f"user{i}")
    ctx.machine.spawn(remover, name="remover")
    cache.end_checks()


SCENARIOS = (
    Scenario(
        "load-race",
        "loaders race to load one page: readpage runs exactly once, all see its bytes",
        _load_race,
        {"loaders": 3},
    ),
    Scenario(
        "load-remove",
        "a loader reads pages while a remover evicts them",
        _load_remove,
        {"pages": 2, "rounds": 1},
    ),
    Scenario(
        "write-remove",
        "a writer dirties pages (and a reader reads them) while a remover evicts them",
        _write_remove,
        {"pages": 1, "rounds": 2, "readers": 1},
        cores=3,
    ),
    Scenario(
        "eio-load",
        "readpage fails with EIO under racing loaders: EIO, nothing locked, nothing leaked",
        _eio_load,
        {"loaders": 2},
    ),
    Scenario(
        "two-removers",
        "two removers over overlapping ranges and a writer: one remover at a time",
        _two_removers,
        cores=3,
    ),
    Scenario(
        "writeback-remove",
        "writeback (msync/fsync) and removal race a writer",
        _writeback_remove,
        {"pages": 1},
        cores=3,
    ),
    Scenario(
        "eio-writeback",
        "writepage fails during removal: the page stays, dirty, and nothing is lost",
        _eio_writeback,
    ),
    Scenario(
        "refcount",
        "users take and drop references (two each) while a remover tries to evict",
        _refcount,
        {"users": 2, "rounds": 1},
        cores=3,
    ),
)
