"""A Machine: simulated hardware and the kernel wired together.

Everything a run touches hangs off one Machine, so a process can build
thousands of them (the checker does) with nothing leaking between them.

Lifecycle: a Machine holds host resources (a descriptor per host file and
disk image) and dirty pages that only writeback sends to them.  sync()
writes every dirty page back; close() syncs, then exits every process,
empties every page map and closes every descriptor, after which the
Machine's calls, and those of its files, devices, page maps and processes,
answer EBADF (ESRCH for a process); `with Machine(...) as m:` closes at the
end.  A Machine dropped without close() loses its dirty pages and keeps its
descriptors until it is collected.  close() must not be called from one of
its own tasks.  dismantle() breaks the cycles among its parts for a machine
nothing will use again, so that dropping it frees it at once (the checker's
runner, once a schedule).
"""

from __future__ import annotations

import errno
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from pagemap.hw.memory import PGSIZE, PhysicalMemory, parse_size
from pagemap.hw.mmu import MMU, TLB, AccessHook
from pagemap.kernel.blockdev import BlockDevice, BlockDevices
from pagemap.kernel.errors import (
    AlreadyClosed,
    InvalidArgument,
    IOFailure,
    KernelError,
    OutOfMemory,
)
from pagemap.kernel.flusher import Flusher
from pagemap.kernel.fs.ext2.fs import Ext2FS
from pagemap.kernel.fs.ext2.fs import mount as ext2_mount
from pagemap.kernel.hostfs import HostFile, HostFS
from pagemap.kernel.mkwrite import check_dirty_tracking
from pagemap.kernel.owner import as_int
from pagemap.kernel.page import PageAllocator
from pagemap.kernel.pagemap import PageMap, PageMapOps
from pagemap.kernel.policy import KERNEL_DEFAULT, make_policy, policy_class
from pagemap.kernel.proc import Proc
from pagemap.kernel.radix import ALL_PAGES
from pagemap.kernel.reclaim import Reclaim
from pagemap.kernel.vfs import Inode
from pagemap.sync.core import Task
from pagemap.sync.executor import Executor
from pagemap.sync.sim import SeededRandom, SimExecutor
from pagemap.sync.threads import ThreadExecutor

# The most cores a Machine may have (each has its TLB).
MAX_CORES = 1024
# What a frame costs the host, at most: its bytes, its kernel words (about 200
# bytes a cached page, tests/kernel/test_page_cost.py) and room for what the
# rest of the process makes.  A Machine whose frames would need more than the
# host's RAM is refused (ENOMEM) rather than swapping, or being killed, while
# it is built.
HOST_BYTES_PER_FRAME = 2 * PGSIZE
# Host bytes a Machine may need without the host's RAM being asked.
HOST_HOLDS_ANYWAY = 64 << 20
# Machine(dirty_tracking=None) reads this variable, else takes the default.
DIRTY_TRACKING_ENV = "PAGEMAP_DIRTY_TRACKING"
DEFAULT_DIRTY_TRACKING = "wp"
# Seconds a task of a "sim" Machine may run without reaching a scheduling point
# before the run ends with TaskStuck, naming where it loops, instead of hanging.
SIM_WATCHDOG = 30.0


def make_executor(
    executor: str | Executor,
    seed: int | None,
    max_steps: int | None,
    watchdog: float | None = SIM_WATCHDOG,
) -> Executor:
    if isinstance(executor, Executor):
        return executor
    if not isinstance(executor, str):
        raise TypeError(
            f"Machine: executor must be 'threads', 'sim' or an Executor, "
            f"not {type(executor).__name__}"
        )
    if executor == "threads":
        return ThreadExecutor()
    if executor == "sim":
        return SimExecutor(SeededRandom(0 if seed is None else seed), max_steps, watchdog=watchdog)
    raise ValueError(f"unknown executor {executor!r}: choose 'threads' or 'sim'")


def default_dirty_tracking() -> str:
    """The mode of a Machine made with dirty_tracking=None."""
    return os.environ.get(DIRTY_TRACKING_ENV) or DEFAULT_DIRTY_TRACKING


def check_machine_args(
    cores: object, memory: object, seed: object, max_steps: object
) -> tuple[int, int]:
    """(cores, bytes of memory) after checking every argument of Machine()."""
    cores = as_int(cores, "Machine", "cores")
    if not 1 <= cores <= MAX_CORES:
        raise ValueError(f"Machine: {cores} cores: a machine has 1 to {MAX_CORES}")
    if not isinstance(memory, str):
        memory = as_int(memory, "Machine", "memory (bytes, or a size such as '64MiB')")
    nbytes = parse_size(memory)
    need = nbytes // PGSIZE * HOST_BYTES_PER_FRAME
    # Asking the host costs two system calls: not for a machine any host holds.
    host = host_ram() if need > HOST_HOLDS_ANYWAY else 0
    if host and need > host:
        raise OutOfMemory(
            f"Machine: {nbytes} bytes of frames would need about "
            f"{need} bytes of the host, which has {host}"
        )
    if seed is not None:
        as_int(seed, "Machine", "seed")
    if max_steps is not None and as_int(max_steps, "Machine", "max_steps") < 1:
        raise ValueError(f"Machine: max_steps {max_steps} must be at least 1 (or None)")
    return cores, nbytes


def host_ram() -> int:
    """The host's physical memory in bytes; 0 where it cannot be told."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


class Machine:
    """`cores` cores and `memory` bytes of page frames, run by `executor`.

    `executor` is "threads" (OS threads), "sim" (the deterministic scheduler,
    seeded by `seed`, stopping after `max_steps` scheduling points), or an
    Executor built by the caller (the checker passes its own strategies).
    `reclaim` names the replacement policy that chooses what to evict when
    frames run short (kernel/policy/: fifo, lru, clock, lru2q, s3fifo).
    `watchdog`: under "sim", the seconds a task may run without reaching a
    scheduling point before run() raises TaskStuck with the task's stack
    (None: wait forever).
    `dirty_tracking`: how stores through shared file mappings are found,
    "wp" (as Linux: pages mapped read-only until a write fault dirties them,
    write-protected again by writeback; kernel/mkwrite.py) or "dbit" (the
    seed's: writable at once, the PTEs' D bits collected by msync, fsync,
    munmap and removal); None takes $PAGEMAP_DIRTY_TRACKING, else "wp".
    A bad argument is a TypeError or ValueError, more frames than the host can
    hold OutOfMemory.  See the module docstring for sync(), close() and `with`.
    """

    def __init__(
        self,
        cores: int = 4,
        memory: int | str = "64MiB",
        executor: str | Executor = "threads",
        seed: int | None = None,
        max_steps: int | None = None,
        reclaim: str = KERNEL_DEFAULT,
        watchdog: float | None = SIM_WATCHDOG,
        dirty_tracking: str | None = None,
    ) -> None:
        cores, nbytes = check_machine_args(cores, memory, seed, max_steps)
        if dirty_tracking is None:
            dirty_tracking = default_dirty_tracking()
        self.dirty_tracking = check_dirty_tracking(dirty_tracking)
        if not isinstance(reclaim, str):
            raise TypeError(
                f"Machine: reclaim must be a policy's name, not {type(reclaim).__name__}"
            )
        policy_class(reclaim)  # an unknown name is refused before any frame is made
        self.nr_cores = cores
        self.seed = seed
        if watchdog is not None and (
            isinstance(watchdog, bool) or not isinstance(watchdog, int | float) or not watchdog > 0
        ):
            raise ValueError(
                f"Machine: watchdog {watchdog!r} must be a positive number of seconds (or None)"
            )
        self.executor = make_executor(executor, seed, max_steps, watchdog)
        try:
            self.memory = PhysicalMemory(nbytes)
        except MemoryError:
            raise OutOfMemory(f"Machine: the host cannot hold {nbytes} bytes of frames") from None
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
        self.mounts: list[Ext2FS] = []
        self.flusher: Flusher | None = None
        # Tasks of the current run other than the flusher; when the last one
        # ends the flusher is told to stop, so run() can return.  Bookkeeping
        # of the machine, not kernel state: no scheduling point.
        self._live = 0
        self._live_lock = threading.Lock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise AlreadyClosed(f"Machine.{op}: the machine is closed")

    def __enter__(self) -> Machine:
        self._check_open("__enter__")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sync(self) -> None:
        """Write every dirty page of every page map to its backing store (host
        files, disk images, a bare page map's writepage), stores through shared
        mappings included, and make the host files durable.  Every page is
        tried; a page whose write fails stays dirty and cached, and the first
        error is raised at the end."""
        self._check_open("sync")
        first_error: OSError | None = None
        # A filesystem first, as a whole: writing its files back dirties its
        # device's metadata, which its own sync writes last.
        for fs in self.mounts:
            if fs.vol.mounted and not fs.vol.readonly:
                try:
                    fs.sync()
                except OSError as exc:
                    first_error = first_error or exc
        for pm in list(self.page_maps):
            try:
                self._sync_map(pm)
            except OSError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    @staticmethod
    def _sync_map(pm: PageMap) -> None:
        """Write one page map back, as what owns it does."""
        host = pm.host
        if isinstance(host, Inode):
            host.fsync()
        elif isinstance(host, BlockDevice):
            host.sync()
        else:
            pm.collect_mapped_dirty(0, ALL_PAGES)
            pm.writeback(0, ALL_PAGES)

    def close(self) -> None:
        """sync(), then exit every process, empty every page map and close
        every host descriptor.  Closing twice is harmless.

        As close(2) does, it closes even when the sync fails, then raises the
        first error: what could not be written is lost (call sync() first to
        be able to retry).  Pages a caller still holds stay cached, unused.
        """
        if self._closed:
            return
        if self.executor.current_task() is not None:
            raise KernelError(
                errno.EBUSY, "Machine.close: called from one of the machine's own tasks"
            )
        first_error: OSError | None = None
        try:
            self.sync()
        except OSError as exc:
            first_error = exc
        self._closed = True
        for proc in self.procs:
            proc.exit()
        for pm in self.page_maps:
            try:
                pm.remove_contig(0, ALL_PAGES)  # writes back what sync could not, if it can now
            except OSError as exc:
                first_error = first_error or exc
            pm.closed = True
        self.hostfs.release()
        self.block_devices.release()
        if first_error is not None:
            raise first_error

    def dismantle(self) -> None:
        """Drop the references the machine's parts hold to one another, so that
        it is freed as its last reference goes rather than by the cycle
        collector (which otherwise costs a checker that builds a machine a
        schedule a tenth of its time).  For a machine nothing will use again:
        after it the machine and its parts have no attributes.  Not close():
        nothing is written back, no descriptor closed (the host's finalizers
        close those as the objects go)."""
        parts: list[object] = [
            self.allocator,
            self.reclaim,
            self.mmu,
            self.hostfs,
            self.block_devices,
            self.flusher,
            *self.page_maps,
            *self.procs,
            *self.mounts,
            self,
        ]
        for part in parts:
            fields = getattr(part, "__dict__", None)  # None: __slots__ only, left to the collector
            if fields is not None:
                fields.clear()

    # -- kernel objects ----------------------------------------------------------
    def page_map(self, ops: PageMapOps, host: object = None, name: str | None = None) -> PageMap:
        """A page map whose pages come from this machine's frames; `ops` has
        readpage(pm, page) and writepage(pm, page)."""
        self._check_open("page_map")
        for method in ("readpage", "writepage"):
            if not callable(getattr(ops, method, None)):
                raise TypeError(f"Machine.page_map: ops has no {method}(pm, page) method")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Machine.page_map: name must be a str, not {type(name).__name__}")
        pm = PageMap(self.executor, self.allocator, ops, host, name or f"pm{len(self.page_maps)}")
        pm.lru = self.reclaim
        pm.dirty_tracking = self.dirty_tracking
        self.page_maps.append(pm)
        return pm

    def process(self) -> Proc:
        """A new process with an empty address space (pids count from 1)."""
        self._check_open("process")
        proc = Proc(
            len(self.procs) + 1, self.executor, self.allocator, self.mmu, self.executor.current_core
        )
        proc.new_process = self.process  # how its fork() makes the child
        proc.dirty_tracking = self.dirty_tracking
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
        self._check_open("open")
        return self.hostfs.open(path, mode)

    def blockdev(self, image_path: str | os.PathLike[str], sector_size: int = 512) -> BlockDevice:
        """The block device over a disk image (the same one each time)."""
        self._check_open("blockdev")
        return self.block_devices.open(image_path, sector_size)

    def mount(
        self,
        image_path: str | os.PathLike[str],
        mode: str = "rw",
        clock: Callable[[], int] | None = None,
    ) -> Ext2FS:
        """Mount the ext2 filesystem in a disk image, "r" or "rw"; the image
        is the device's backing store (see kernel/fs/ext2/fs.py for the calls).
        `clock` gives the seconds stamped on inodes (default: the host's)."""
        if mode not in ("r", "rw"):
            raise InvalidArgument(f"mount mode {mode!r} is not 'r' or 'rw'")
        try:
            dev = self.blockdev(image_path)
        except InvalidArgument as exc:
            # An image that is not whole sectors (cut short mid-sector) is as
            # unreadable to a filesystem as one that is cut short: EIO.
            raise IOFailure(f"{os.fspath(image_path)}: cannot be mounted: {exc.strerror}") from exc
        fs = ext2_mount(
            self.executor,
            dev,
            self.page_map,
            readonly=mode == "r",
            clock=clock or (lambda: int(time.time())),
        )
        self.mounts = [m for m in self.mounts if m.vol.mounted] + [fs]
        return fs

    # -- tasks -------------------------------------------------------------------
    def spawn(
        self, fn: Callable[..., Any], *args: Any, core: int | None = None, name: str | None = None
    ) -> Task:
        """Run fn(*args) as a task on `core` (round robin by default) at the next run()."""
        self._check_open("spawn")
        if not callable(fn):
            raise TypeError(f"Machine.spawn: {type(fn).__name__} is not callable")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Machine.spawn: name must be a str, not {type(name).__name__}")
        if core is None:
            core = len(self.executor.tasks) % self.nr_cores
        elif not 0 <= as_int(core, "Machine.spawn", "core") < self.nr_cores:
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
        self._check_open("start_flusher")
        if not isinstance(period, int | float) or isinstance(period, bool):
            raise TypeError(
                f"Machine.start_flusher: period must be a number, not {type(period).__name__}"
            )
        if not (math.isfinite(period) and period > 0):
            raise ValueError(
                f"Machine.start_flusher: period {period} must be a finite positive number"
            )
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
        self._check_open("run")
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
        """Fault and shootdown counts of the memory-management half, by snake_case key."""
        faults = sum(p.faults.value for p in self.procs)
        major = sum(p.major_faults.value for p in self.procs)
        return {
            "page_faults_minor": faults - major,
            "page_faults_major": major,
            "tlb_shootdowns": self.mmu.shootdowns.value,
        }

    def check_quiescent(self) -> list[str]:
        """The accounting oracle over the whole machine; [] when all holds."""
        problems: list[str] = []
        for pm in self.page_maps:
            problems.extend(pm.check_quiescent())
        problems.extend(self.hostfs.check_quiescent())
        problems.extend(self.block_devices.check_quiescent())
        for fs in self.mounts:
            if fs.vol.mounted:
                problems.extend(fs.check_quiescent())
        for proc in self.procs:
            problems.extend(proc.check_quiescent())
        cached = sum(pm.num_pages for pm in self.page_maps)
        if self.allocator.nr_used < cached:
            problems.append(f"{cached} pages cached but only {self.allocator.nr_used} frames used")
        return problems
