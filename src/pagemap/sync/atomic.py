"""64-bit atomic words, in the two flavours the executors need.

Every operation is one scheduling point: under the SimExecutor the scheduler
may switch tasks just before it, never in the middle of it, so each operation
is indivisible exactly as a locked instruction is on the hardware.  Under the
ThreadExecutor a per-word lock gives the same indivisibility.
"""

from __future__ import annotations

import threading

from pagemap.sync.core import READ, WRITE, SimScheduler

MASK64 = (1 << 64) - 1


class Word:
    """What kernel code may do with one 64-bit word, however it is stored: a
    word of its own (AtomicWord) or one of an array (sync/arrays.py WordRef).
    `value` reads it with no scheduling point, for oracles and traces."""

    __slots__ = ()

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def value(self) -> int:
        raise NotImplementedError

    def reset(self, value: int) -> None:
        raise NotImplementedError

    def load(self) -> int:
        raise NotImplementedError

    def store(self, value: int) -> None:
        raise NotImplementedError

    def swap(self, value: int) -> int:
        raise NotImplementedError

    def cas(self, expected: int, new: int) -> bool:
        raise NotImplementedError

    def fetch_add(self, delta: int) -> int:
        raise NotImplementedError

    def fetch_or(self, bits: int) -> int:
        raise NotImplementedError

    def fetch_and(self, bits: int) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}={self.value:#x})"


class AtomicWord(Word):
    """A word of its own; the interface shared by both flavours."""

    __slots__ = ("name", "value")

    name: str
    value: int

    def __init__(self, value: int, name: str) -> None:
        self.value = value & MASK64
        self.name = name

    def reset(self, value: int) -> None:
        """Set the word without a scheduling point.

        Only for an object no other task can see yet (a page fresh from the
        allocator, a slot not yet in the tree); it keeps the checker from
        exploring interleavings that cannot happen.
        """
        self.value = value & MASK64

    def load(self) -> int:
        raise NotImplementedError

    def store(self, value: int) -> None:
        raise NotImplementedError

    def swap(self, value: int) -> int:
        raise NotImplementedError

    def cas(self, expected: int, new: int) -> bool:
        raise NotImplementedError

    def fetch_add(self, delta: int) -> int:
        raise NotImplementedError

    def fetch_or(self, bits: int) -> int:
        raise NotImplementedError

    def fetch_and(self, bits: int) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}={self.value:#x})"


class ThreadAtomicWord(AtomicWord):
    """Atomic under real OS threads: each operation holds the word's lock.

    acquire/try/finally/release rather than `with`: the slot CAS and the
    refcount drop are on the page-cache hit path, and this form is a fifth
    cheaper in CPython (bench/bench_core.py measures the hit path).
    """

    __slots__ = ("_lock",)

    def __init__(self, value: int, name: str) -> None:
        super().__init__(value, name)
        self._lock = threading.Lock()

    def load(self) -> int:
        # A single attribute read is indivisible under the interpreter; no lock.
        return self.value

    def store(self, value: int) -> None:
        lock = self._lock
        lock.acquire()
        try:
            self.value = value & MASK64
        finally:
            lock.release()

    def swap(self, value: int) -> int:
        lock = self._lock
        lock.acquire()
        try:
            old = self.value
            self.value = value & MASK64
            return old
        finally:
            lock.release()

    def cas(self, expected: int, new: int) -> bool:
        lock = self._lock
        lock.acquire()
        try:
            if self.value != expected:
                return False
            self.value = new & MASK64
            return True
        finally:
            lock.release()

    def fetch_add(self, delta: int) -> int:
        lock = self._lock
        lock.acquire()
        try:
            old = self.value
            self.value = (old + delta) & MASK64
            return old
        finally:
            lock.release()

    def fetch_or(self, bits: int) -> int:
        lock = self._lock
        lock.acquire()
        try:
            old = self.value
            self.value = old | bits
            return old
        finally:
            lock.release()

    def fetch_and(self, bits: int) -> int:
        lock = self._lock
        lock.acquire()
        try:
            old = self.value
            self.value = old & bits & MASK64
            return old
        finally:
            lock.release()


class SimAtomicWord(AtomicWord):
    """Atomic under the SimExecutor: a scheduling point, then the operation.

    The point names the word and the access the operation intends (a load
    reads, everything else writes).  An operation that leaves the value as it
    was (a failed CAS, a fetch_or of bits already set) is told to the
    scheduler as a read once it is done: it commutes with every other
    operation that changes nothing, which lets the checker's partial-order
    reduction skip their reorderings.
    """

    __slots__ = ("_sched", "sid")

    def __init__(self, value: int, name: str, sched: SimScheduler) -> None:
        self.value = value & MASK64  # AtomicWord's own __init__, inlined: a model makes many
        self.name = name
        self._sched = sched
        self.sid = 0  # its stable identity in a recorded run (sync/sim.py EventLog)

    def reset(self, value: int) -> None:
        # No point, but a footprint: see SimAtomicArray.reset.
        self._sched.touch(self, WRITE)
        self.value = value & MASK64

    def load(self) -> int:
        self._sched.point("load", self, READ)
        return self.value

    def store(self, value: int) -> None:
        sched = self._sched
        sched.point("store", self, WRITE)
        value &= MASK64
        if value == self.value and sched.recording:
            sched.read_only()
        self.value = value

    def swap(self, value: int) -> int:
        sched = self._sched
        sched.point("swap", self, WRITE)
        old = self.value
        self.value = value & MASK64
        if old == self.value and sched.recording:
            sched.read_only()
        return old

    def cas(self, expected: int, new: int) -> bool:
        sched = self._sched
        sched.point("cas", self, WRITE)
        if self.value != expected:
            if sched.recording:
                sched.read_only()
            return False
        new &= MASK64
        if new == expected and sched.recording:
            sched.read_only()
        self.value = new
        return True

    def fetch_add(self, delta: int) -> int:
        sched = self._sched
        sched.point("fetch_add", self, WRITE)
        old = self.value
        self.value = (old + delta) & MASK64
        if old == self.value and sched.recording:
            sched.read_only()
        return old

    def fetch_or(self, bits: int) -> int:
        sched = self._sched
        sched.point("fetch_or", self, WRITE)
        old = self.value
        self.value = old | bits
        if old == self.value and sched.recording:
            sched.read_only()
        return old

    def fetch_and(self, bits: int) -> int:
        sched = self._sched
        sched.point("fetch_and", self, WRITE)
        old = self.value
        self.value = old & bits & MASK64
        if old == self.value and sched.recording:
            sched.read_only()
        return old


class StatCounter:
    """A statistics counter: exact under threads, and never a scheduling point
    (it is bookkeeping for people, not state the kernel synchronises on)."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n

    def __int__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return str(self.value)
