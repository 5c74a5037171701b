"""Removal of pages that processes have mapped, raced under the SimExecutor.

Each scenario is a few tasks on a small machine: processes storing and
loading through mappings of one file, and removers, mprotect, munmap, pwrite
and fsync racing them.  Every scenario runs under SCENARIO_SEEDS seeds, and
after each the oracles of DESIGN.md are checked:

- memory safety: every load and store lands in an allocated frame that holds
  the page its mapping says (the machine's access hook), and once
  remove_contig returns, no PTE or TLB entry names a freed or foreign frame;
- coherence: every load returns the latest store to that byte (each byte has
  one writer, which reads back what it wrote; private mappings see their own
  writes);
- durability: once every process has exited and every page has been removed,
  the backing store equals a shadow that applied every store to a shared
  mapping and every write, and private stores never reach it;
- accounting: every slot refcount 0, nothing left locked, every frame free.

A ThreadExecutor stress test runs the same mixture on real threads.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from pagemap import (
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    PG_UPTODATE,
    PGSIZE,
    PROT_READ,
    PROT_WRITE,
    File,
    Inode,
    Machine,
    Page,
    PageMap,
    Proc,
    SegmentationFault,
)
from pagemap.kernel.slot import slot_get_ppn
from pagemap.kernel.vfs import PageMapFactory
from pagemap.sync.core import READ, WRITE, Strategy, Task
from pagemap.sync.executor import Executor
from pagemap.sync.sim import SeededRandom, SimExecutor

RW = PROT_READ | PROT_WRITE
SCENARIO_SEEDS = 1000
MAX_STEPS = 200_000
CHUNKS = 4  # each scenario's seeds are split so pytest-xdist can share them out


class StickyStrategy(Strategy):
    """Lets the running task go on with probability `stay`, else picks any
    runnable task: long runs of one task, so a remover can get deep into its
    protocol between two accesses of another task (uniform choice at every
    point would almost never leave a window of twenty steps open)."""

    def __init__(self, seed: int, stay: float) -> None:
        self.rng = random.Random(seed)
        self.stay = stay

    def pick(self, runnable: Sequence[Task], current: Task | None, kind: str) -> Task:
        if current is not None and current in runnable and self.rng.random() < self.stay:
            return current
        return runnable[self.rng.randrange(len(runnable))]


def schedule_for(seed: int) -> Strategy:
    """Seeds alternate between uniform random choice and sticky runs of 1/(1-stay)."""
    if seed % 2 == 0:
        return SeededRandom(seed)
    return StickyStrategy(seed, (0.8, 0.9, 0.95)[seed // 2 % 3])


def initial(index: int) -> bytes:
    return bytes([0xA0 + index]) * PGSIZE


class MemInode(Inode):
    """A file whose backing store is a bytearray; every disk access is a
    scheduling point."""

    def __init__(self, executor: Executor, make_page_map: PageMapFactory, npages: int) -> None:
        self.disk = bytearray(b"".join(initial(i) for i in range(npages)))
        super().__init__(executor, make_page_map, "file", len(self.disk))

    def readpage(self, pm: PageMap, page: Page) -> None:
        self.executor.point("disk.read", ("disk", page.index), READ)
        start = page.index * PGSIZE
        got = bytes(self.disk[start : min(start + PGSIZE, self.size_word.value)])
        page.data[:] = got + bytes(PGSIZE - len(got))
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        self.executor.point("disk.write", ("disk", page.index), WRITE)
        start = page.index * PGSIZE
        n = max(0, min(PGSIZE, self.size_word.value - start))
        self.disk[start : start + n] = page.data[:n]

    def set_size(self, size: int) -> None:
        self.size_word.store(size)
        del self.disk[size:]
        self.disk.extend(bytes(size - len(self.disk)))

    def sync_backing(self) -> None:
        pass


@dataclass
class Region:
    proc: Proc
    base: int
    npages: int
    first: int  # file page at base
    shared: bool

    def va(self, index: int, off: int = 0) -> int:
        assert self.first <= index < self.first + self.npages
        return self.base + (index - self.first) * PGSIZE + off

    def index_at(self, vpn: int) -> int | None:
        rel = vpn - (self.base >> 12)
        return self.first + rel if 0 <= rel < self.npages else None


class World:
    """One small machine, one file, its mappings, and the oracles."""

    def __init__(
        self,
        seed: int,
        npages: int = 4,
        frames: int = 12,
        executor: str = "sim",
        dirty_tracking: str | None = None,
    ) -> None:
        self.m = Machine(
            cores=4,
            memory=(frames + 1) * PGSIZE,
            executor=SimExecutor(schedule_for(seed), MAX_STEPS) if executor == "sim" else executor,
            seed=seed,
            dirty_tracking=dirty_tracking,
        )
        self.sim = executor == "sim"
        self.inode = MemInode(self.m.executor, self._page_map, npages)
        self.file = File(self.inode, "file", "r+", True, True)
        self.pm = self.inode.mapping
        self.shadow = bytearray(self.inode.disk)
        self.regions: list[Region] = []
        self.problems: list[str] = []
        self.m.on_access = self._on_access

    def _page_map(self, ops: object, host: object, name: str) -> PageMap:
        return self.m.page_map(ops, host, name)  # type: ignore[arg-type]

    # -- set-up ------------------------------------------------------------------
    def map(
        self, proc: Proc, first: int, npages: int, flags: int, prot: int = RW, touch: bool = True
    ) -> Region:
        """Map pages [first, first + npages) of the file; with `touch`, fault
        them in now (before any task runs) so removal has work from the start."""
        base = proc.mmap(npages * PGSIZE, prot, flags, self.file, first * PGSIZE)
        region = Region(proc, base, npages, first, bool(flags & MAP_SHARED))
        self.regions.append(region)
        if touch:
            for index in range(first, first + npages):
                proc.load(region.va(index), 1)
        return region

    # -- what tasks do -------------------------------------------------------------
    def store(self, region: Region, index: int, off: int, value: bytes) -> None:
        """Store through `region` and read it back (coherence: our own write)."""
        va = region.va(index, off)
        region.proc.store(va, value)
        if region.shared:
            pos = index * PGSIZE + off
            self.shadow[pos : pos + len(value)] = value
        got = region.proc.load(va, len(value))
        if got != value:
            self.problems.append(f"coherence: p{region.proc.pid} stored {value!r}, read {got!r}")

    def expect(self, region: Region, index: int, off: int, want: bytes) -> None:
        got = region.proc.load(region.va(index, off), len(want))
        if got != want:
            self.problems.append(
                f"coherence: p{region.proc.pid} page {index}+{off} read {got!r}, want {want!r}"
            )

    def remove(self, index: int, npages: int) -> int:
        n = self.pm.remove_contig(index, npages)
        self.check_maps("after remove_contig returned")
        return n

    # -- oracles ---------------------------------------------------------------------
    def _on_access(self, owner: object, va: int, ppn: int, write: bool) -> None:
        assert isinstance(owner, Proc)
        why = self._frame_problem(owner, va >> 12, ppn)
        if why:
            self.problems.append(f"memory safety: {'store' if write else 'load'} {why}")

    def _frame_problem(self, proc: Proc, vpn: int, ppn: int) -> str | None:
        where = f"p{proc.pid} {vpn << 12:#x} -> frame {ppn}"
        if self.m.allocator.is_free(ppn):
            return f"{where}: the frame is free"
        page = self.m.allocator.pages[ppn]
        for region in self.regions:
            if region.proc is not proc or (index := region.index_at(vpn)) is None:
                continue
            if page.mapping is self.pm and page.index == index:
                return None
            if page.mapping is None and not region.shared:
                return None  # this process's private copy
            return f"{where}: the frame holds {page!r}, not page {index}"
        return f"{where}: nothing was ever mapped there"

    def check_maps(self, when: str) -> None:
        """No PTE or TLB entry names a free frame or another page.  Reads
        only, with no scheduling point, so it sees one instant."""
        for proc in self.m.procs:
            for vpn, _, ppn in proc.mapped_ppns():
                if why := self._frame_problem(proc, vpn, ppn):
                    self.problems.append(f"memory safety {when}: PTE {why}")
            for core, vpn, ppn in self.m.mmu.cached_ppns(proc.pid):
                if why := self._frame_problem(proc, vpn, ppn):
                    self.problems.append(f"memory safety {when}: TLB of core {core}: {why}")

    def finish(self) -> list[str]:
        """Run the tasks, then tear everything down and check the end oracles."""
        self.m.run()
        self.check_maps("at the end")
        for proc in self.m.procs:
            for vpn, _, _ in proc.mapped_ppns():
                if proc._find_vmr(vpn << 12) is None:
                    self.problems.append(
                        f"memory safety: p{proc.pid} has a PTE at "
                        f"{vpn << 12:#x}, where nothing is mapped"
                    )
        for proc in self.m.procs:
            proc.exit()
            if any(True for _ in proc.mapped_ppns()):
                self.problems.append(f"accounting: p{proc.pid} has PTEs left after exit")
        while self.pm.nr_pages:
            if not self.pm.remove_contig(0, len(self.shadow) // PGSIZE):
                self.problems.append(f"accounting: {self.pm.nr_pages} pages cannot be removed")
                break
        if self.inode.disk != self.shadow:
            bad = [i for i in range(len(self.shadow)) if self.inode.disk[i] != self.shadow[i]]
            self.problems.append(
                f"durability: {len(bad)} bytes differ, first at {bad[0]} "
                f"(disk {self.inode.disk[bad[0]]:#x}, written {self.shadow[bad[0]]:#x})"
            )
        self.check_maps("after every process exited")
        self.problems.extend(f"accounting: {p}" for p in self.m.check_quiescent())
        if self.m.allocator.nr_used:
            self.problems.append(f"accounting: {self.m.allocator.nr_used} frames still in use")
        for proc in self.m.procs:
            if proc.vmr_lock.held or proc.pte_lock.held:
                self.problems.append(f"accounting: p{proc.pid} left a lock held")
        return self.problems


Scenario = Callable[[World], None]


def run_seeds(scenario: Scenario, seeds: range, npages: int) -> None:
    failures: list[str] = []
    for seed in seeds:
        world = World(seed, npages=npages)
        scenario(world)
        try:
            problems = world.finish()
        except Exception as exc:
            problems = [f"{type(exc).__name__}: {exc}"]
        if problems:
            failures.append(f"seed {seed}: {problems[0]} ({len(problems)} problem(s))")
    assert not failures, f"{len(failures)} of {len(seeds)} seeds failed:\n" + "\n".join(
        failures[:5]
    )


def chunk(i: int) -> range:
    per = SCENARIO_SEEDS // CHUNKS
    return range(i * per, (i + 1) * per)


def v(tag: int, n: int) -> bytes:
    return bytes([tag, n])


# -- the scenarios --------------------------------------------------------------------


def stores_vs_removal(w: World) -> None:
    """Stores through a shared mapping while a remover evicts the pages."""
    r = w.map(w.m.process(), 0, 2, MAP_SHARED)

    def storer() -> None:
        for n in range(1, 4):
            for index in (0, 1):
                w.store(r, index, 16, v(1, n))

    def watcher() -> None:
        # Loads fault in pages removal has just unmapped (between its passes).
        seen = [0, 0]
        for _ in range(4):
            for index in (0, 1):
                got = r.proc.load(r.va(index, 16), 2)
                n = got[1] if got[0] == 1 else 0
                if n < seen[index]:
                    w.problems.append(f"coherence: page {index} went back to version {n}")
                seen[index] = n

    def remover() -> None:
        w.remove(0, 2)
        w.remove(0, 2)

    w.m.spawn(storer, core=1)
    w.m.spawn(remover, core=2)
    w.m.spawn(watcher, core=3)


def faults_vs_removal(w: World) -> None:
    """Read faults in two processes while a remover evicts the pages."""
    r1 = w.map(w.m.process(), 0, 3, MAP_SHARED, PROT_READ)
    r2 = w.map(w.m.process(), 1, 2, MAP_SHARED, PROT_READ, touch=False)

    def reader(r: Region) -> None:
        for _ in range(2):
            for index in range(r.first, r.first + r.npages):
                w.expect(r, index, 100, initial(index)[:4])

    def remover() -> None:
        w.remove(0, 3)
        w.remove(0, 3)

    w.m.spawn(reader, r1, core=1)
    w.m.spawn(reader, r2, core=2)
    w.m.spawn(remover, core=3)


def munmap_mprotect_vs_removal(w: World) -> None:
    """A process write-protects and unmaps parts of its mapping while a
    remover evicts the pages it dirtied."""
    proc = w.m.process()
    r = w.map(proc, 0, 3, MAP_SHARED, touch=False)
    proc.load(r.va(0), 1)  # page 0 cached and mapped; 1 and 2 are faulted in by the race

    def mutator() -> None:
        for index in range(3):
            w.store(r, index, 8, v(2, 1))
        proc.mprotect(r.va(0), PGSIZE, PROT_READ)
        w.store(r, 1, 8, v(2, 2))
        proc.munmap(r.va(1), 2 * PGSIZE)
        w.expect(r, 0, 8, v(2, 1))
        try:
            proc.store(r.va(0), b"!")
            w.problems.append("a store to a read-only mapping went through")
        except SegmentationFault:
            pass

    def reader() -> None:
        # Faults racing the munmap: each load either sees the page or, once
        # the region is gone, SIGSEGV; a fault must never install a PTE there.
        for _ in range(3):
            for index in (1, 2):
                try:
                    proc.load(r.va(index, 8), 1)
                except SegmentationFault:
                    return

    def remover() -> None:
        w.remove(0, 3)
        w.remove(0, 3)

    w.m.spawn(mutator, core=1)
    w.m.spawn(remover, core=2)
    w.m.spawn(reader, core=3)


def munmap_vs_removal(w: World) -> None:
    """A process unmaps its dirty pages one by one while removers evict them:
    every D bit reaches the file, and no PTE outlives its page."""
    proc = w.m.process()
    r = w.map(proc, 0, 3, MAP_SHARED)
    for index in range(3):
        w.store(r, index, 300, v(14, index))

    def unmapper() -> None:
        for index in (2, 0, 1):
            proc.munmap(r.va(index), PGSIZE)

    def remover() -> None:
        for _ in range(3):
            w.remove(0, 3)

    w.m.spawn(unmapper, core=1)
    w.m.spawn(remover, core=2)


def private_and_locked(w: World) -> None:
    """Private copies and MAP_LOCKED pages while a remover sweeps the file."""
    private = w.map(w.m.process(), 0, 2, MAP_PRIVATE)
    locked = w.map(w.m.process(), 2, 2, MAP_SHARED | MAP_LOCKED)
    pinned = [w.pm.tree.lookup_slot(i) for i in (2, 3)]
    ppns = [slot_get_ppn(s.value) if s is not None else 0 for s in pinned]

    def privateer() -> None:
        w.expect(private, 0, 0, initial(0)[:2])
        w.store(private, 0, 0, v(3, 1))
        w.store(private, 1, 0, v(3, 2))

    def locker() -> None:
        w.store(locked, 2, 0, v(4, 1))
        w.store(locked, 3, 0, v(4, 2))

    def remover() -> None:
        for _ in range(2):
            w.remove(0, 4)
            now = [w.pm.tree.lookup_slot(i) for i in (2, 3)]
            if [slot_get_ppn(s.value) if s is not None else 0 for s in now] != ppns:
                w.problems.append("a MAP_LOCKED page was removed")

    if 0 in ppns:
        w.problems.append("MAP_LOCKED did not populate its pages")
    w.m.spawn(privateer, core=1)
    w.m.spawn(locker, core=2)
    w.m.spawn(remover, core=3)


def two_processes_at_different_offsets(w: World) -> None:
    """Two processes map overlapping parts of the file at different offsets
    and lengths; the removal range starts at a page only one of them maps."""
    a = w.map(w.m.process(), 0, 3, MAP_SHARED)  # pages 0-2
    b = w.map(w.m.process(), 2, 3, MAP_SHARED)  # pages 2-4

    def store_a() -> None:
        w.store(a, 2, 0, v(5, 1))
        w.store(a, 1, 0, v(5, 2))

    def store_b() -> None:
        w.store(b, 2, 64, v(6, 1))
        w.store(b, 4, 64, v(6, 2))
        w.store(b, 3, 64, v(6, 3))

    w.m.spawn(store_a, core=1)
    w.m.spawn(store_b, core=2)
    w.m.spawn(w.remove, 1, 4, core=3)  # pages 1-4: b does not map page 1


def pwrite_vs_mapped_store(w: World) -> None:
    """pwrite and a store through a shared mapping hit one page, with a
    remover and an fsync in the middle."""
    r = w.map(w.m.process(), 0, 2, MAP_SHARED)

    def storer() -> None:
        w.store(r, 0, 0, v(7, 1))
        w.store(r, 1, 0, v(7, 2))

    def writer() -> None:
        for index, n in ((0, 1), (1, 2)):
            data = v(8, n)
            w.file.pwrite(data, index * PGSIZE + 32)
            w.shadow[index * PGSIZE + 32 : index * PGSIZE + 34] = data
            got = w.file.pread(2, index * PGSIZE + 32)
            if got != data:
                w.problems.append(f"coherence: pread after pwrite read {got!r}")

    def remover() -> None:
        w.remove(0, 2)
        w.file.fsync()

    w.m.spawn(storer, core=1)
    w.m.spawn(writer, core=2)
    w.m.spawn(remover, core=3)


def two_removers(w: World) -> None:
    """Two removers over overlapping ranges while a process stores."""
    r = w.map(w.m.process(), 0, 3, MAP_SHARED)

    def storer() -> None:
        for n in range(1, 3):
            for index in range(3):
                w.store(r, index, 200, v(9, n))

    w.m.spawn(storer, core=1)
    w.m.spawn(w.remove, 0, 3, core=2)
    w.m.spawn(w.remove, 1, 2, core=3)


SCENARIOS: dict[str, Scenario] = {
    "stores_vs_removal": stores_vs_removal,
    "faults_vs_removal": faults_vs_removal,
    "munmap_mprotect_vs_removal": munmap_mprotect_vs_removal,
    "munmap_vs_removal": munmap_vs_removal,
    "private_and_locked": private_and_locked,
    "two_processes_at_different_offsets": two_processes_at_different_offsets,
    "pwrite_vs_mapped_store": pwrite_vs_mapped_store,
    "two_removers": two_removers,
}


@pytest.mark.parametrize("part", range(CHUNKS))
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_holds_every_oracle(name: str, part: int) -> None:
    run_seeds(SCENARIOS[name], chunk(part), npages=5)


# -- the oracles can fail ----------------------------------------------------------------


def test_the_access_hook_reports_a_store_into_a_free_frame() -> None:
    w = World(0)
    r = w.map(w.m.process(), 0, 1, MAP_SHARED)
    w.store(r, 0, 0, b"x")
    page = w.pm.tree.lookup_slot(0)
    assert page is not None
    ppn = slot_get_ppn(page.value)
    # Break the rules by hand: drop the page with its PTE still in place.
    w.pm.tree.delete(0)
    w.pm.num_pages -= 1
    w.m.allocator.pages[ppn].flags.store(0)
    w.m.allocator.decref(w.m.allocator.pages[ppn])
    r.proc.load(r.va(0), 1)
    w.check_maps("by hand")
    assert any("the frame is free" in p for p in w.problems)
    assert any("TLB" in p for p in w.problems) and any("PTE" in p for p in w.problems)


def test_the_durability_oracle_sees_a_lost_store() -> None:
    # Under "dbit" the D bit is the store's only trace (under "wp" the first
    # store dirtied the page too).
    w = World(0, dirty_tracking="dbit")
    r = w.map(w.m.process(), 0, 1, MAP_SHARED)
    w.store(r, 0, 0, b"lost")
    word = r.proc.page_table.lookup(r.va(0) >> 12)
    assert word is not None
    word.store(0)  # the D bit vanishes, as a read-modify-write of the PTE would lose it
    r.proc.tlb_shootdown()
    problems = w.finish()
    assert any(p.startswith("durability") for p in problems)


# -- real threads -----------------------------------------------------------------------


def test_threads_stress_mixed_mappings_and_removal() -> None:
    """Stores, private copies, mprotect, pwrite, fsync and removal on OS threads."""
    for round_ in range(3):
        w = World(round_, npages=8, frames=24, executor="threads")
        procs = [w.m.process() for _ in range(3)]
        shared = [w.map(procs[0], 0, 6, MAP_SHARED), w.map(procs[1], 2, 6, MAP_SHARED)]
        private = w.map(procs[2], 0, 8, MAP_PRIVATE)

        def storer(r: Region, tag: int, off: int) -> None:
            for n in range(150):
                w.store(r, r.first + n % r.npages, off, v(tag, n % 256))

        def privateer() -> None:
            for n in range(150):
                w.store(private, n % 8, 48, v(12, n % 256))

        def flipper() -> None:
            proc = procs[0]
            for _ in range(40):
                proc.mprotect(shared[0].va(5), PGSIZE, PROT_READ)
                proc.mprotect(shared[0].va(5), PGSIZE, RW)

        def remover() -> None:
            for n in range(60):
                w.pm.remove_contig(n % 4, 5)
                if n % 10 == 0:
                    w.file.fsync()

        def writer() -> None:
            for n in range(100):
                pos = (n % 8) * PGSIZE + 96
                w.file.pwrite(v(13, n % 256), pos)
                w.shadow[pos : pos + 2] = v(13, n % 256)

        w.m.spawn(storer, shared[0], 10, 0)
        w.m.spawn(storer, shared[1], 11, 8)
        w.m.spawn(privateer)
        w.m.spawn(flipper)
        w.m.spawn(remover)
        w.m.spawn(writer)
        assert w.finish() == []
