"""Page-map scenarios: the races the seed's comments describe, with no mappings.

Each one is small on purpose (two or three tasks, a few pages) so that DFS
with two preemptions covers it in CI.  Pages are loaded once before the tasks
start, outside any task, so removal has something to race for from the
first step.
"""

from __future__ import annotations

import errno

from pagemap.check.context import RunContext
from pagemap.check.memdisk import MemDisk, page_bytes
from pagemap.check.scenario import Params, Scenario
from pagemap.kernel.errors import IOFailure
from pagemap.kernel.page import PG_DIRTY, PG_UPTODATE, Page
from pagemap.kernel.pagemap import PageMap
from pagemap.oracles import COHERENCE, CRASH, MEMORY_SAFETY, Violation
from pagemap.oracles.accounting import no_leak, quiescent
from pagemap.oracles.durability import nothing_lost
from pagemap.sync.core import READ, WRITE


class Cache:
    """A page map over a MemDisk, its shadow, and the task-side helpers every
    scenario uses.  The disk tells it of every transfer, and it checks what
    the protocol promises there (a readpage of a page already up to date
    would clobber newer writes; a transfer of a page in a free frame, or of a
    page no longer this map's, touches memory nobody owns)."""

    def __init__(self, ctx: RunContext, nr_blocks: int, preload: int = 0) -> None:
        self.ctx = ctx
        self.nr_blocks = nr_blocks
        self.disk = MemDisk("disk")
        self.disk.watch = self
        self.pm: PageMap = ctx.machine.page_map(self.disk, name="pm")
        # The shadow: what every block would hold if every write had reached it.
        self.shadow = [page_bytes(i) for i in range(nr_blocks)]
        self.versions = [0] * nr_blocks
        self.stored_by: dict[tuple[int, int], str] = {}  # (page, version) -> task
        for i in range(preload):
            self.pm.put_page(self.pm.load_page(i))

    def get(self, index: int) -> Page:
        """load_page, then the memory-safety and coherence oracles on its result."""
        page = self.pm.load_page(index)
        self.ctx.hold(page, self.pm, index)
        self.check_read(page)
        return page

    def put(self, page: Page) -> None:
        self.ctx.drop(page)
        self.pm.put_page(page)

    def read(self, index: int) -> None:
        self.put(self.get(index))

    def write(self, index: int, writer: int) -> None:
        """Store new bytes into the page, as a write() would, and mark it dirty."""
        page = self.get(index)
        self.versions[index] += 1
        task = self.ctx.sched.current_task()
        self.stored_by[index, self.versions[index]] = task.name if task else "the set-up"
        data = page_bytes(index, self.versions[index] | writer << 12)
        self.ctx.sched.touch(page.ppn, WRITE)
        page.data[:] = data
        self.shadow[index] = data
        page.flags.fetch_or(PG_DIRTY)
        self.put(page)

    def check_read(self, page: Page) -> None:
        """Coherence: a loaded page holds the latest bytes written to it."""
        i = page.index
        self.ctx.sched.touch(page.ppn, READ)  # the verdict depends on the frame's bytes
        if page.data != self.shadow[i]:
            self.ctx.fail(
                COHERENCE,
                f"{self.ctx.who()} loaded page {i} of {self.pm.name} and found "
                f"{_version(bytes(page.data))}, but the latest write was version "
                f"{self.versions[i]}",
            )

    # -- what the disk tells (DiskWatch) ------------------------------------------------
    def reading(self, pm: PageMap, page: Page) -> None:
        self._check_owner(pm, page, "readpage")
        if page.flags.value & PG_UPTODATE:
            self.ctx.fail(
                COHERENCE,
                f"readpage of page {page.index} of {pm.name}, which is already up to date: "
                "a second read would clobber writes made since the first",
            )

    def writing(self, pm: PageMap, page: Page) -> None:
        self._check_owner(pm, page, "writepage")

    def _check_owner(self, pm: PageMap, page: Page, what: str) -> None:
        if self.ctx.machine.allocator.is_free(page.ppn):
            self.ctx.fail(MEMORY_SAFETY, f"{what} of page {page.index} in free frame {page.ppn}")
        if page.mapping is not pm:
            self.ctx.fail(
                MEMORY_SAFETY, f"{what} of frame {page.ppn}, which no longer belongs to {pm.name}"
            )

    def end_checks(self, durable: bool = True) -> None:
        """Accounting at quiescence, no leak, and (if `durable`) nothing lost."""
        ctx = self.ctx
        ctx.at_end(lambda: quiescent(ctx.machine))
        ctx.at_end(lambda: no_leak(ctx.machine))
        if durable:
            ctx.at_end(
                lambda: nothing_lost(
                    "disk",
                    self.pm,
                    self.nr_blocks,
                    self.disk.block,
                    lambda i: self.shadow[i],
                    describe=self.describe,
                )
            )

    def describe(self, data: bytes) -> str:
        """A slot of a page as page_bytes wrote it: who stored which version."""
        v = int.from_bytes(data[6:8], "little")
        if not v & 0x8000:
            return f"bytes {data.hex()}"
        index, version = int.from_bytes(data[:6], "little"), v & 0xFFF
        if not version:
            return f"the original bytes of page {index}"
        who = self.stored_by.get((index, version))
        return f"{who}'s version {version}" if who else f"version {version}"


def _version(data: bytes) -> str:
    v = int.from_bytes(data[6:8], "little")
    return f"version {v & 0xFFF}" if v & 0x8000 else f"bytes {data[:8].hex()}"


def _load_race(ctx: RunContext, p: Params) -> None:
    cache = Cache(ctx, 1)

    def loader() -> None:
        cache.read(0)

    for i in range(p["loaders"]):
        ctx.machine.spawn(loader, name=f"loader{i}")

    def read_once() -> list[Violation]:
        n = cache.disk.reads.get(0, 0)
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
                ctx.fail(CRASH, f"{ctx.who()} got errno {exc.errno} from a failed read, not EIO")
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
        frames=lambda p: p["loaders"] + 3,
        limits={"loaders": (1, 8)},
    ),
    Scenario(
        "load-remove",
        "a loader reads pages while a remover evicts them",
        _load_remove,
        {"pages": 2, "rounds": 1},
        frames=lambda p: p["pages"] + 4,
        limits={"pages": (1, 8), "rounds": (1, 8)},
    ),
    Scenario(
        "write-remove",
        "a writer dirties pages (and a reader reads them) while a remover evicts them",
        _write_remove,
        {"pages": 1, "rounds": 2, "readers": 1},
        cores=3,
        frames=lambda p: p["pages"] + 5,
        limits={"pages": (1, 8), "rounds": (1, 8), "readers": (0, 1)},
    ),
    Scenario(
        "eio-load",
        "readpage fails with EIO under racing loaders: EIO, nothing locked, nothing leaked",
        _eio_load,
        {"loaders": 2},
        frames=lambda p: p["loaders"] + 3,
        limits={"loaders": (1, 8)},
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
        frames=lambda p: p["pages"] + 5,
        limits={"pages": (1, 8)},
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
        limits={"users": (1, 6), "rounds": (1, 8)},
    ),
)
