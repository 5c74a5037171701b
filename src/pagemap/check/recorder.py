"""Watching a replay: one row per step, and the machine's state after each.

Rules: a Recorder is installed as the SimExecutor's `on_event` for one replayed
run (check/replay.py) and only reads: it never takes a scheduling point, a lock
or a reference, so the run it watches is the run that was recorded.  A step is
logged just before its operation takes effect, so its row is made then (its
"before" values read), and settled (its "after" values, and the machine's state)
when the next step is logged or the run ends: only that one step ran in between.

Each row names where in the code the step was taken: the innermost frame outside
the executor and the simulated hardware (sync/, hw/), since "MMU._land" says
less than the kernel or model code that made the access; and the seed's C
function the step runs inside of, when it runs inside a ported one (docs/seed.md).
A frame store, a host write and a write of the checker's in-memory file carry
their bytes, read from the frame of the call that is about to write them
(MMU.store's `data`, HostIO.pwrite's `data`, MemInode.writepage's `page`).
"""

from __future__ import annotations

import os
import sys
from types import FrameType

from pagemap.check.decode import Shown, name_of, show
from pagemap.check.report.model import Row, TaskInfo
from pagemap.check.snapshot import Snapshot
from pagemap.check.stepcalls import StepCalls
from pagemap.hw.memory import PGSIZE
from pagemap.machine import Machine
from pagemap.sync.core import RELAX, START, WRITE
from pagemap.sync.sim import SimExecutor

MAX_DATA = 4096  # bytes of one store or write kept on its row (a page)
STACK_LOOK = 40  # frames looked through for a location, a seed function, a payload


# -- where in the code ------------------------------------------------------------------

# The ported files, and each function's C original in the seed (docs/seed.md).
SEED_FUNCTIONS: dict[str, dict[str, str]] = {
    "kernel/pagemap.py": {
        "__init__": "pm_init",
        "_find_page": "pm_find_page",
        "find_page": "pm_find_page",
        "_insert_page": "pm_insert_page",
        "_insert_locked": "pm_insert_page",
        "put_page": "pm_put_page",
        "load_page": "pm_load_page",
        "lookup": "pm_load_page",
        "_read_or_wait": "pm_load_page",
        "_read_locked_page": "pm_load_page",
        "_slot_get_page": "pm_slot_get_page",
        "info": "print_page_map_info",
    },
    "kernel/writeback.py": {
        "writeback": "pm_writeback_pages",
        "_writeback_page": "pm_writeback_pages",
        "clear_page_dirty_for_io": "pm_writeback_pages",
    },
    "kernel/rmap.py": {
        "add_vmr": "pm_add_vmr",
        "remove_vmr": "pm_remove_vmr",
        "vmr_has_page_idx": "vmr_has_page_idx",
        "vmr_idx_to_va": "vmr_idx_to_va",
        "vmr_get_end_idx": "vmr_get_end_idx",
        "mapped_spans": "vmr_for_each",
    },
    "kernel/removal.py": {
        "remove_contig": "pm_remove_contig",
        "_remove_contig": "pm_remove_contig",
        "_mark_for_removal": "pm_remove_contig",
        "_unmap_marked": "pm_remove_contig",
        "_write_back_marked": "pm_remove_contig",
        "_marked_page": "pm_remove_contig",
        "_free_marked": "pm_remove_contig",
        "_free_clean_unmapped": "pm_remove_contig",
        "remove_pages": "pm_remove_contig",
        "_remove_passes": "pm_remove_contig",
        "_pte_mark_not_present": "__pm_mark_not_present",
        "_pte_unmap_keep_dirty": "__pm_mark_dirty_pgs_unmap",
        "_shootdown_and_reset": "shootdown_and_reset_ptrstore",
    },
    "kernel/slot.py": {
        "slot_check_removal": "pm_slot_check_removal",
        "slot_set_removal": "pm_slot_set_removal",
        "slot_clear_removal": "pm_slot_clear_removal",
        "slot_check_refcnt": "pm_slot_check_refcnt",
        "slot_inc_refcnt": "pm_slot_inc_refcnt",
        "slot_dec_refcnt": "pm_slot_dec_refcnt",
        "slot_get_ppn": "pm_slot_get_page",
        "slot_set_ppn": "pm_slot_set_page",
    },
    "kernel/page.py": {
        "lock_page": "lock_page",
        "unlock_page": "unlock_page",
        "alloc": "kpage_alloc",
        "incref": "page_incref",
        "decref": "page_decref",
    },
    "kernel/radix.py": {
        "lookup_slot": "radix_lookup_slot",
        "insert": "radix_insert",
        "delete": "radix_delete",
    },
}

# Frames that say nothing a reader of the kernel wants: the executor, the
# simulated hardware's access path, and the checker watching the run.
_SKIP = (
    "/pagemap/sync/",
    "/pagemap/hw/",
    "/pagemap/check/recorder.py",
    "/pagemap/check/replay.py",
    "/pagemap/check/snapshot.py",
)


def _short(filename: str) -> str:
    cut = filename.rfind("/pagemap/")
    return filename[cut + len("/pagemap/") :] if cut >= 0 else os.path.basename(filename)


def where(frame: FrameType | None) -> tuple[str, str]:
    """(file:line function, seed function) for a step whose point is being
    logged in `frame` or a frame it was called from."""
    location = ""
    for _ in range(STACK_LOOK):
        if frame is None:
            break
        filename = frame.f_code.co_filename
        if not location and not any(s in filename for s in _SKIP):
            location = f"{_short(filename)}:{frame.f_lineno} {frame.f_code.co_qualname}"
        if location:
            seed = SEED_FUNCTIONS.get(_short(filename), {}).get(frame.f_code.co_name, "")
            if seed:
                return location, seed
        frame = frame.f_back
    return location, ""


# The kinds of step that write bytes somewhere, and where to find them: (file,
# function, the local holding the bytes, the local holding where they go).  The
# checker's in-memory file (check/memdisk.py) writes a whole page: its `page`.
WRITES = ("frame.store", "host_write", "writepage")
BLIND_STORES = ("store", "astore")  # writes that read nothing first
_PAYLOADS = (
    ("hw/mmu.py", "store", "data", "va"),
    ("kernel/hostio.py", "pwrite", "data", "offset"),
    ("check/memdisk.py", "writepage", "page", ""),
)


def payload(frame: FrameType | None) -> tuple[bytes, int] | None:
    """(bytes, address or offset) a store or write is about to write."""
    for _ in range(STACK_LOOK):
        if frame is None:
            return None
        short = _short(frame.f_code.co_filename)
        for file, func, data, at in _PAYLOADS:
            if short == file and frame.f_code.co_name == func:
                return _bytes_at(frame, data, at)
        frame = frame.f_back
    return None


def _bytes_at(frame: FrameType, data: str, at: str) -> tuple[bytes, int] | None:
    raw = frame.f_locals.get(data)
    where = frame.f_locals.get(at) if at else None
    if not at:  # a Page: its frame's bytes, at its offset in the file
        page, raw = raw, getattr(raw, "data", None)
        index = getattr(page, "index", None)
        where = index * PGSIZE if isinstance(index, int) else None
    if isinstance(raw, bytes | bytearray | memoryview) and isinstance(where, int):
        return bytes(memoryview(raw).cast("B")[:MAX_DATA]), where
    return None


# -- the recorder ----------------------------------------------------------------------


class Recorder:
    """One row per step, in the order the steps took effect; with `states`, each
    row also carries the machine's state after it (for the first `state_rows`
    rows: a long livelock keeps only its first steps anyway)."""

    def __init__(
        self,
        sched: SimExecutor,
        machine: Machine | None = None,
        states: bool = False,
        state_rows: int = 5000,
        calls: StepCalls | None = None,
    ) -> None:
        self.sched = sched
        self.rows: list[Row] = []
        self._tids: list[int] = []  # the task of each row, by id
        self._events: list[int] = []  # the log's index of each row's step
        self._calls = calls
        self._last: tuple[Row, object, Shown] | None = None
        # Per object (by name): its last store's row and task, and the tasks that
        # read it since (_note_overwrite).
        self._last_store: dict[str, tuple[Row, int]] = {}
        self._read_since: dict[str, set[int]] = {}
        self._preempting: set[int] = set()
        self.snapshot: Snapshot | None = None
        self.initial: dict[str, str] = {}
        self._state_rows = state_rows
        if states and machine is not None:
            self.snapshot = Snapshot(machine, sched)
            self.initial = self.snapshot.take()

    def __call__(self, i: int) -> None:
        self.settle()
        sched = self.sched
        log = sched.log
        assert log is not None
        if log.kinds[i] is START:
            # A task beginning: no operation to show; a preemption that let it
            # begin shows on its first operation.
            if self._preempted(i):
                self._preempting.add(log.tids[i])
            return
        tid = log.tids[i]
        task = sched.tasks[tid]
        obj = log.objs[i]
        kind = log.kinds[i]
        frame = sys._getframe(1)
        location, seed = where(frame)
        row = Row(
            len(self.rows) + 1,
            task.core,
            task.name,
            kind,
            name_of(obj, sched.keyed),
            location=location,
            seed_function=seed,
            preempted=self._preempted(i) or tid in self._preempting,
        )
        if kind in WRITES:
            found = payload(frame)
            if found is not None:
                data, at = found
                row.data = data.hex()
                row.value = f"{len(data)} B at {at:#x}"
                if self.snapshot is not None and isinstance(obj, int):
                    self.snapshot.stored(obj, at, len(data))
        self._preempting.discard(tid)
        self._note_overwrite(row, tid, log.accs[i])
        self.rows.append(row)
        self._tids.append(tid)
        self._events.append(i)
        if self.snapshot is not None:
            self.snapshot.touched(obj, task.name, kind)
            for extra, _ in log.extra.get(i, ()):
                self.snapshot.touched(extra, task.name, "")
        self._last = (row, obj, show(obj, sched.keyed))

    def _note_overwrite(self, row: Row, tid: int, acc: int) -> None:
        """A plain store over another task's store that this task never read
        (the lost update) says so: "overwrote step 3's store of 1".  Only
        `store`: a swap, a CAS or an add reads what it replaces."""
        if not acc or not row.obj:
            return
        if not acc & WRITE:
            self._read_since.setdefault(row.obj, set()).add(tid)
            return
        last = self._last_store.get(row.obj)
        if (
            row.operation in BLIND_STORES
            and last is not None
            and last[1] != tid
            and tid not in self._read_since.get(row.obj, ())
        ):
            stored = last[0].value.rpartition(" -> ")[2]
            row.note = f"overwrote step {last[0].step}'s store of {stored}"
        self._last_store[row.obj] = (row, tid)
        self._read_since[row.obj] = set()

    def _preempted(self, i: int) -> bool:
        log = self.sched.log
        assert log is not None
        if i == 0:
            return False
        prev = log.tids[i - 1]
        if prev == log.tids[i] or not log.enabled[i] >> prev & 1:
            return False
        before = self.sched.tasks[prev]
        return not before.done and before.kind != RELAX

    def settle(self) -> None:
        """Read the last step's "after" values (and the machine's state) now."""
        if self._last is None:
            return
        row, obj, before = self._last
        after = show(obj, self.sched.keyed)
        row.slot, row.flags, row.pte, value = (
            _arrow(b, a) for b, a in zip(before, after, strict=True)
        )
        if value:
            row.value = value
        if self.snapshot is not None and len(self.rows) <= self._state_rows:
            row.state = self.snapshot.take()
        self._last = None

    def close(self) -> list[Row]:
        self.settle()
        names = self._task_names()
        for row, tid in zip(self.rows, self._tids, strict=True):
            row.task = names[tid]
        if self._calls is not None:
            self._fill_ran(self._calls)
        return self.rows

    def _fill_ran(self, calls: StepCalls) -> None:
        """Each row's `ran`: what its step ran, less the function it is taken in
        and the one its task's next step is taken in (its next row says those)."""
        following: dict[int, Row] = {}  # by task: the row after, walking backwards
        for row, tid, e in reversed(list(zip(self.rows, self._tids, self._events, strict=True))):
            said = {_function(row.location)}
            after = following.get(tid)
            if after is not None:
                said.add(_function(after.location))
            row.ran = [name for name in calls.names(e) if name not in said]
            following[tid] = row

    def tasks(self) -> list[TaskInfo]:
        """Every task of the run, with the core it ran on."""
        names = self._task_names()
        return [TaskInfo(t.tid, names[t.tid], t.core) for t in self.sched.tasks]

    def _task_names(self) -> list[str]:
        """Each task's name, made distinct with its id where two share one."""
        tasks = self.sched.tasks
        count: dict[str, int] = {}
        for t in tasks:
            count[t.name] = count.get(t.name, 0) + 1
        return [t.name if count[t.name] == 1 else f"{t.name}#{t.tid}" for t in tasks]


def _function(location: str) -> str:
    """ "kernel/page.py:30 lock_page" -> "lock_page"."""
    return location.partition(" ")[2]


def _arrow(before: str, after: str) -> str:
    if before == after:
        return before
    return f"{before} -> {after}"


__all__ = ["SEED_FUNCTIONS", "Recorder", "payload", "where"]
