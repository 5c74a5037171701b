"""The machine's state at one instant of a replay, as name -> text.

Rules: a Snapshot only reads (no scheduling point, no lock), and it reads what the
run's executor made: every atomic word, spinlock, semaphore and TLB registered with
the SimExecutor while recording (EventLog.objects), which covers the kernel's and a
user model's alike.  So that the state stays readable, an object is in it once a
step has touched it or once it leaves its resting value (a word 0, a lock free, a
semaphore at count 1, a TLB empty), and stays from then on.  Words are decoded as
the step table decodes them (slot words as refcount|R|ppn, page flags by name, PTEs
as ppn=N:P|W|U|A|D); a lock names its holder, a semaphore at 0 the task that took
it; a TLB lists its entries; "free frames" counts the allocator's free list; a
frame that a step stored to shows the first bytes of what was stored there.  The
per-frame words (page flags, slot words, reference counts, page locks: arrays
of sync/arrays.py, one footprint key per word) are shown once a step has
touched them, under names such as "pm.slot[7]".
"""

from __future__ import annotations

from pagemap.check.decode import keyed_table, name_of, show, show_word
from pagemap.check.report.model import data_preview
from pagemap.hw.memory import PGMASK, PGSHIFT
from pagemap.hw.mmu import TLB, pte_bits
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import Semaphore, SpinLock
from pagemap.sync.sim import SimExecutor

FRAME_PREVIEW = 16  # bytes of a stored-to frame shown in the state
FREE_FRAMES = "free frames"


class Snapshot:
    """Takes the state of one run's machine, step after step."""

    def __init__(self, machine: Machine, sched: SimExecutor) -> None:
        assert sched.log is not None and sched.log.objects is not None, "keep_objects is off"
        self.machine = machine
        self.objects = sched.log.objects
        self.keyed = sched.keyed
        self._words: dict[str, tuple[str, int]] = {}  # per-frame words touched, by name
        self._names: list[str] = []  # the state's name for objects[i]
        self._taken: set[str] = set()  # names the state shows from now on
        self._takers: dict[str, str] = {}  # semaphore name -> the task that took it last
        self._stores: dict[int, tuple[int, int]] = {}  # ppn -> [lo, hi) stored so far
        self._used: set[str] = set()

    def _name(self, i: int) -> str:
        while len(self._names) <= i:
            base = name_of(self.objects[len(self._names)])
            name, n = base, 1
            while name in self._used:  # two objects of a user's model may share a name
                n += 1
                name = f"{base} #{n}"
            self._used.add(name)
            self._names.append(name)
        return self._names[i]

    def touched(self, obj: object, task: str, kind: str) -> None:
        """A step acted on `obj`: show it from now on."""
        if keyed_table(obj, self.keyed) is not None:
            assert isinstance(obj, tuple)
            name = name_of(obj, self.keyed)
            self._words.setdefault(name, obj)
            if kind == "down":
                self._takers[name] = task
            return
        sid = getattr(obj, "sid", 0)
        if isinstance(sid, int) and sid < 0 and -sid <= len(self.objects):
            name = self._name(-sid - 1)
            self._taken.add(name)
            if kind == "down":
                self._takers[name] = task

    def stored(self, ppn: int, address: int, length: int) -> None:
        """A step stores `length` bytes at `address` in frame `ppn`."""
        lo = address & PGMASK
        hi = min(lo + length, PGMASK + 1)
        was = self._stores.get(ppn)
        self._stores[ppn] = (lo, hi) if was is None else (min(was[0], lo), max(was[1], hi))

    def take(self) -> dict[str, str]:
        state: dict[str, str] = {}
        for i, obj in enumerate(self.objects):
            text, resting = _read(obj)
            if text is None:
                continue
            name = self._name(i)
            if resting and name not in self._taken:
                continue
            self._taken.add(name)
            if isinstance(obj, Semaphore) and obj.count == 0 and name in self._takers:
                text += f" (taken by {self._takers[name]})"
            state[name] = text
        for name, key in sorted(self._words.items()):
            text = next((t for t in show(key, self.keyed) if t), "")
            if text == "count 0" and name in self._takers:
                text += f" (taken by {self._takers[name]})"
            state[name] = text
        state[FREE_FRAMES] = str(self.machine.allocator.nr_free)
        for ppn, (lo, hi) in sorted(self._stores.items()):
            frame = self.machine.memory.frame(ppn)
            shown, printable, _ = data_preview(bytes(frame[lo:hi]).hex(), FRAME_PREVIEW)
            state[f"frame {ppn}"] = f'@{lo:#x}: {shown} "{printable}"'
        return state


def _read(obj: object) -> tuple[str | None, bool]:
    """(the object in words, whether it is at rest); None for objects not shown."""
    if isinstance(obj, AtomicWord):
        shown = show_word(obj)
        return next(t for t in (shown.slot, shown.flags, shown.pte, shown.value) if t), (
            obj.value == 0
        )
    if isinstance(obj, SpinLock):
        holder = getattr(obj, "holder", None)
        return (f"held by {getattr(holder, 'name', '?')}" if obj.held else "free"), not obj.held
    if isinstance(obj, Semaphore):
        return f"count {obj.count}", obj.count == 1
    if isinstance(obj, TLB):
        entries = obj.entries()
        text = "; ".join(
            f"p{asid}:{vpn << PGSHIFT:#x} {pte_bits(pte)}" for asid, vpn, pte in entries
        )
        return text or "-", not entries
    return None, True


__all__ = ["FREE_FRAMES", "Snapshot"]
