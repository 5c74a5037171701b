"""A Machine: simulated hardware and the kernel wired together.

Everything a run touches hangs off one Machine, so a process can build
thousands of them (the checker does) with nothing leaking between them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from pagemap.hw.memory import PhysicalMemory, parse_size
from pagemap.hw.mmu import MMU, TLB, AccessHook
from pagemap.kernel.blockdev import BlockDevice, BlockDevices
from pagemap.kernel.flusher import Flusher
from pagemap.kernel.hostfs import HostFile, HostFS
from pagemap.kernel.page import PageAllocator
from pagemap.kernel.pagemap import PageMap, PageMapOps
from pagemap.kernel.policy import KERNEL_DEFAULT, make_policy
from pagemap.kernel.proc import Proc
from pagemap.kernel.reclaim import Reclaim
from pagemap.sync.core import Task
from pagemap.sync.executor import Executor
from pagemap.sync.sim import SeededRandom, SimExecutor
from pagemap.sync.threads import ThreadExecutor


def make_executor(executor: str | Executor, seed: int | None, max_steps: int | None) -> Executor:
    if isinstance(executor, Executor):
        return executor
    if executor == "threads":
        return ThreadExecutor()
    if executor == "sim":
        return SimExecutor(SeededRandom(0 if seed is None else seed), max_steps)
    raise ValueError(f"unknown executor {executor!r}: choose 'threads' or 'sim'")


class Machine:
    """`cores` cores and `memory` bytes of page frames, run by `executor`.

    `executor` is "threads" (OS threads), "sim" (the deterministic scheduler,
    seeded by `seed`, stopping after `max_steps` scheduling points), or an
    Executor built by the caller (the checker passes its own strategies).
    `reclaim` names the replacement policy that chooses what to evict when
    frames run short (kernel/policy/: fifo, lru, clock, lru2q, s3fifo).
    """

    def __init__(
        self,
        cores: int = 4,
        memory: int | str = "64MiB",
        executor: str | Executor = "threads",
        seed: int | None = None,
        max_steps: int | None = None,
        reclaim: str = KERNEL_DEFAULT,
    ) -> None:
        if cores < 1:
            raise ValueError(f"a machine needs at least one core, not {cores}")
        self.nr_cores = cores
        self.seed = seed
        self.executor = make_executor(executor, seed, max_steps)
        self.memory = PhysicalMemory(parse_size(memory))
        self.allocator = PageAllocator(self.memory, self.executor)
        self.mmu = MMU(self.executor, self.memory, cores)
        self.tlbs: list[TLB] = self.mmu.tlbs
        self.procs: list[Proc] = []
        self.page_maps: list[PageMap] = []
        self.hostfs = HostFS(self.executor, self.page_map)
        self.block_devices = BlockDevices(self.executor, self.page_map)
        # Direct reclaim, on every machine: an allocation that finds no free
        # frame frees some in its own task (kernel/reclaim.py).
        policy = make_policy(reclaim, frames=self.memory.nr_frames)
        self.reclaim = Reclaim(self.executor, self.allocator, self.page_maps, policy)
        self.allocator.reclaim = self.reclaim.direct
        self.flusher: Flusher | None = None
        # Tasks of the current run other than the flusher; when the last one
        # ends the flusher is told to stop, so run() can return.  Bookkeeping
        # of the machine, not kernel state: no scheduling point.
        self._live = 0
        self._live_lock = threading.Lock()

    # -- kernel objects ----------------------------------------------------------
    def page_map(self, ops: PageMapOps, host: object = None, name: str | None = None) -> PageMap:
        """A page map whose pages come from this machine's frames."""
        pm = PageMap(self.executor, self.allocator, ops, host, name or f"pm{len(self.page_maps)}")
        pm.lru = self.reclaim
        self.page_maps.append(pm)
        return pm

    def process(self) -> Proc:
        """A new process with an empty address space (pids count from 1)."""
        proc = Proc(
            len(self.procs) + 1, self.executor, self.allocator, self.mmu, self.executor.current_core
        )
        self.procs.append(proc)
        return proc

    @property
    def on_access(self) -> AccessHook | None:
        """Called as (proc, va, ppn, write) for every user load and store as it
        lands in a frame; oracles install it to check memory safety."""
        return self.mmu.on_access

    @on_access.setter
    def on_access(self, hook: AccessHook | None) -> None:
        self.mmu.on_access = hook

    def open(self, path: str | os.PathLike[str], mode: str = "r+") -> HostFile:
        """Open a host file through this machine's page cache ("r", "r+", "w",
        "w+" as in Python); the host file is the backing store."""
        return self.hostfs.open(path, mode)

    def blockdev(self, image_path: str | os.PathLike[str], sector_size: int = 512) -> BlockDevice:
        """The block device over a disk image (the same one each time)."""
        return self.block_devices.open(image_path, sector_size)

    # -- tasks -------------------------------------------------------------------
    def spawn(
        self, fn: Callable[..., Any], *args: Any, core: int | None = None, name: str | None = None
    ) -> Task:
        """Run fn(*args) as a task on `core` (round robin by default) at the next run()."""
        if core is None:
            core = len(self.executor.tasks) % self.nr_cores
        elif not 0 <= core < self.nr_cores:
            raise ValueError(f"core {core} does not exist (this machine has {self.nr_cores})")
        with self._live_lock:
            self._live += 1
        return self.executor.spawn(self._counted, (fn, args), core, name)

    def _counted(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        try:
            return fn(*args)
        finally:
            with self._live_lock:
                self._live -= 1
                last = self._live == 0
            if last and self.flusher is not None:
                self.flusher.stop()

    def start_flusher(self, period: float = 0.05) -> Flusher:
        """Start the flusher's two tasks (kernel/flusher.py) for the next run():
        kswapd reclaims in the background when free frames run low, and
        writeback writes back pages dirty for longer than a period.

        They wake every `period` seconds (virtual under "sim"; a finite
        positive number, ValueError otherwise) and stop when the run's other
        tasks have all finished.
        """
        if self.flusher is not None and not self.flusher.stopping:
            raise ValueError("the flusher is already running on this machine")
        flusher = Flusher(self.executor, self.allocator, self.reclaim, self.page_maps, period)
        self.flusher = flusher
        self.allocator.on_alloc = flusher.low_on_memory
        flusher.task = self.executor.spawn(flusher.kswapd, (), 0, "kswapd")
        flusher.writeback_task = self.executor.spawn(
            flusher.writeback, (), min(1, self.nr_cores - 1), "writeback"
        )
        return flusher

    def run(self) -> None:
        """Run every spawned task to the end; re-raise the first task's exception.

        Under "sim", a deadlock raises Deadlock and an exhausted step budget
        raises StepBudgetExceeded.
        """
        if self.flusher is not None and self._live == 0:
            self.flusher.stop()  # nothing for it to serve
        try:
            self.executor.run()
        finally:
            if self.flusher is not None:
                self.allocator.on_alloc = None

    def current_task(self) -> Task | None:
        return self.executor.current_task()

    def current_core(self) -> int:
        """The core of the running task; outside any task, core 0."""
        return self.executor.current_core()

    def mm_counters(self) -> dict[str, int]:
        """Fault and shootdown counts of the memory-management half."""
        faults = sum(p.faults.value for p in self.procs)
        major = sum(p.major_faults.value for p in self.procs)
        return {
            "page faults, minor": faults - major,
            "page faults, major": major,
            "TLB shootdowns": self.mmu.shootdowns.value,
        }

    def check_quiescent(self) -> list[str]:
        """The accounting oracle over the whole machine; [] when all holds."""
        problems: list[str] = []
        for pm in self.page_maps:
            problems.extend(pm.check_quiescent())
        problems.extend(self.hostfs.check_quiescent())
        problems.extend(self.block_devices.check_quiescent())
        for proc in self.procs:
            problems.extend(proc.check_quiescent())
        cached = sum(pm.num_pages for pm in self.page_maps)
        if self.allocator.nr_used < cached:
            problems.append(f"{cached} pages cached but only {self.allocator.nr_used} frames used")
        return problems
