"""Per-frame words and locks: atomic arrays and lock tables.

A cached page costs a few words, not a few objects.  The kernel keeps the
metadata that races (page flags, the frame's reference count, the page map's
slot word, the page lock) in arrays indexed by frame number, made by the
executor:

    executor.atomic_array(n, name)   n 64-bit words, each operation atomic
    executor.lock_table(n, name)     n sleeping locks (counts 0 or 1), the
                                     way Linux hashes page wait queues

The kernel code is the same under both executors; only how an operation is
made indivisible differs.

- Threads: the words are an `array('Q')`; each operation holds one lock of a
  small striped table (word i uses stripe i % STRIPES), so a word costs 8
  bytes rather than a lock of its own.  A lock table is a bytearray of counts
  and a striped table of conditions: a waiter sleeps on its stripe's
  condition and re-checks its own count when woken, as a task on Linux's
  hashed `page_waitqueue` does.
- SimExecutor: each operation is a scheduling point whose footprint is the
  tuple `(name, i)`: one object per word, stable from schedule to schedule
  (sync/core.py), so the checker's dependency relation is exactly what it
  was with one object per word.  A lock table's down is an ACQUIRE point on
  `(name, i)`; the SimExecutor asks the table (registered under `name`)
  whether that lock is available and parks the task on its wait list.

Rules: `name` is unique within an executor (the footprint names words by
it); `value(i)` and `reset(i, v)` are for oracles and for a word no other
task can reach yet, as AtomicWord.value and AtomicWord.reset are.
"""

from __future__ import annotations

import threading
from array import array

from pagemap.sync.atomic import MASK64, Word
from pagemap.sync.core import ACQUIRE, READ, WRITE, SimScheduler, Task

# Stripes of the thread flavour's lock tables: enough that two cores rarely
# share one, few enough to cost nothing per page.
STRIPES = 64
_STRIPE_MASK = STRIPES - 1


def zero_words(n: int) -> array[int]:
    return array("Q", bytes(8 * n))


class AtomicArray:
    """`n` 64-bit words; the interface both flavours share."""

    __slots__ = ("name", "words")

    def __init__(self, n: int, name: str) -> None:
        self.name = name
        self.words = zero_words(n)

    def __len__(self) -> int:
        return len(self.words)

    def value(self, i: int) -> int:
        """Word i, with no scheduling point: for oracles and traces."""
        return self.words[i]

    def reset(self, i: int, v: int) -> None:
        """Set word i with no scheduling point: only for a word no other task
        can reach yet (a frame fresh from the allocator)."""
        self.words[i] = v & MASK64

    def reset_many(self, indices: list[int], v: int) -> None:
        """reset(i, v) for each i: frames being freed together."""
        words = self.words
        v &= MASK64
        for i in indices:
            words[i] = v

    def ref(self, i: int) -> WordRef:
        """Word i as a Word, for code that wants one object per word."""
        return WordRef(self, i)

    def load(self, i: int) -> int:
        raise NotImplementedError

    def store(self, i: int, v: int) -> None:
        raise NotImplementedError

    def swap(self, i: int, v: int) -> int:
        raise NotImplementedError

    def cas(self, i: int, expected: int, new: int) -> bool:
        raise NotImplementedError

    def fetch_add(self, i: int, delta: int) -> int:
        raise NotImplementedError

    def fetch_add_many(self, indices: list[int], delta: int) -> list[int]:
        """fetch_add(i, delta) for each i in turn, each its own atomic
        operation (and, under the sim, its own point); the old values."""
        fetch_add = self.fetch_add
        return [fetch_add(i, delta) for i in indices]

    def fetch_or(self, i: int, bits: int) -> int:
        raise NotImplementedError

    def fetch_and(self, i: int, bits: int) -> int:
        raise NotImplementedError


class WordRef(Word):
    """One word of an AtomicArray, made on use (it stores nothing itself)."""

    __slots__ = ("arr", "i")

    def __init__(self, arr: AtomicArray, i: int) -> None:
        self.arr = arr
        self.i = i

    @property
    def name(self) -> str:
        return f"{self.arr.name}[{self.i}]"

    @property
    def value(self) -> int:
        return self.arr.words[self.i]

    def reset(self, value: int) -> None:
        self.arr.reset(self.i, value)

    def load(self) -> int:
        return self.arr.load(self.i)

    def store(self, value: int) -> None:
        self.arr.store(self.i, value)

    def swap(self, value: int) -> int:
        return self.arr.swap(self.i, value)

    def cas(self, expected: int, new: int) -> bool:
        return self.arr.cas(self.i, expected, new)

    def fetch_add(self, delta: int) -> int:
        return self.arr.fetch_add(self.i, delta)

    def fetch_or(self, bits: int) -> int:
        return self.arr.fetch_or(self.i, bits)

    def fetch_and(self, bits: int) -> int:
        return self.arr.fetch_and(self.i, bits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordRef) and other.arr is self.arr and other.i == self.i

    def __hash__(self) -> int:
        return hash((id(self.arr), self.i))


class ThreadAtomicArray(AtomicArray):
    """Atomic under OS threads: each operation holds its word's stripe lock.

    A load takes no lock: reading one array item is indivisible under the
    interpreter.
    """

    __slots__ = ("_locks", "load")

    def __init__(self, n: int, name: str, locks: list[threading.Lock]) -> None:
        super().__init__(n, name)
        self._locks = locks
        # The array's own item read, bound once: a load is on every hit path,
        # and a Python method around it would double its cost.
        self.load = self.words.__getitem__  # type: ignore[method-assign,assignment]

    def store(self, i: int, v: int) -> None:
        lock = self._locks[i & _STRIPE_MASK]
        lock.acquire()
        self.words[i] = v & MASK64
        lock.release()

    def swap(self, i: int, v: int) -> int:
        lock = self._locks[i & _STRIPE_MASK]
        lock.acquire()
        words = self.words
        old = words[i]
        words[i] = v & MASK64
        lock.release()
        return old

    def cas(self, i: int, expected: int, new: int) -> bool:
        lock = self._locks[i & _STRIPE_MASK]
        lock.acquire()
        words = self.words
        if words[i] != expected:
            lock.release()
            return False
        words[i] = new & MASK64
        lock.release()
        return True

    def fetch_add(self, i: int, delta: int) -> int:
        lock = self._locks[i & _STRIPE_MASK]
        lock.acquire()
        words = self.words
        old = words[i]
        words[i] = (old + delta) & MASK64
        lock.release()
        return old

    def fetch_add_many(self, indices: list[int], delta: int) -> list[int]:
        locks, words = self._locks, self.words
        out = []
        for i in indices:
            lock = locks[i & _STRIPE_MASK]
            lock.acquire()
            old = words[i]
            words[i] = (old + delta) & MASK64
            lock.release()
            out.append(old)
        return out

    def fetch_or(self, i: int, bits: int) -> int:
        lock = self._locks[i & _STRIPE_MASK]
        lock.acquire()
        words = self.words
        old = words[i]
        words[i] = (old | bits) & MASK64
        lock.release()
        return old

    def fetch_and(self, i: int, bits: int) -> int:
        lock = self._locks[i & _STRIPE_MASK]
        lock.acquire()
        words = self.words
        old = words[i]
        words[i] = old & bits & MASK64
        lock.release()
        return old


class SimAtomicArray(AtomicArray):
    """Atomic under the SimExecutor: a point on `(name, i)`, then the
    operation; one that leaves the word unchanged is logged as a read, as
    SimAtomicWord does."""

    __slots__ = ("_sched",)

    def __init__(self, n: int, name: str, sched: SimScheduler) -> None:
        super().__init__(n, name)
        self._sched = sched

    def load(self, i: int) -> int:
        self._sched.point("load", (self.name, i), READ)
        return self.words[i]

    def reset(self, i: int, v: int) -> None:
        # No point, but a footprint: the word may be new to other tasks, yet
        # one holding a stale page of the frame could still reach it.
        sched = self._sched
        if sched.recording:
            sched.touch((self.name, i), WRITE)
        self.words[i] = v & MASK64

    def reset_many(self, indices: list[int], v: int) -> None:
        sched = self._sched
        if sched.recording:
            touch, name = sched.touch, self.name
            for i in indices:
                touch((name, i), WRITE)
        super().reset_many(indices, v)

    # Each operation is its point and its effect in one frame (the hot path
    # of every model); a write that leaves the word as it was is logged as a
    # read, which costs nothing unless the run is recorded.
    def store(self, i: int, v: int) -> None:
        sched = self._sched
        sched.point("store", (self.name, i), WRITE)
        words = self.words
        v &= MASK64
        if v == words[i] and sched.recording:
            sched.read_only()
        words[i] = v

    def swap(self, i: int, v: int) -> int:
        sched = self._sched
        sched.point("swap", (self.name, i), WRITE)
        words = self.words
        old = words[i]
        v &= MASK64
        if v == old and sched.recording:
            sched.read_only()
        words[i] = v
        return old

    def cas(self, i: int, expected: int, new: int) -> bool:
        sched = self._sched
        sched.point("cas", (self.name, i), WRITE)
        words = self.words
        if words[i] != expected:
            if sched.recording:
                sched.read_only()
            return False
        new &= MASK64
        if new == expected and sched.recording:
            sched.read_only()
        words[i] = new
        return True

    def fetch_add(self, i: int, delta: int) -> int:
        sched = self._sched
        sched.point("fetch_add", (self.name, i), WRITE)
        words = self.words
        old = words[i]
        words[i] = (old + delta) & MASK64
        if not delta & MASK64 and sched.recording:
            sched.read_only()
        return old

    def fetch_or(self, i: int, bits: int) -> int:
        sched = self._sched
        sched.point("fetch_or", (self.name, i), WRITE)
        words = self.words
        old = words[i]
        new = (old | bits) & MASK64
        if new == old and sched.recording:
            sched.read_only()
        words[i] = new
        return old

    def fetch_and(self, i: int, bits: int) -> int:
        sched = self._sched
        sched.point("fetch_and", (self.name, i), WRITE)
        words = self.words
        old = words[i]
        new = old & bits & MASK64
        if new == old and sched.recording:
            sched.read_only()
        words[i] = new
        return old


class LockTable:
    """`n` sleeping locks, each a count of 0 or 1 (1: free), as the page lock
    is: `down(i)` sleeps until lock i is free and takes it, `up(i)` frees it."""

    __slots__ = ("counts", "name")

    def __init__(self, n: int, name: str) -> None:
        self.name = name
        self.counts = bytearray(b"\x01" * n)

    def count(self, i: int) -> int:
        return self.counts[i]

    def reset(self, i: int, count: int) -> None:
        """Set lock i with no scheduling point: only for a frame no other task
        can reach yet (a page born locked, or one being freed)."""
        self.counts[i] = count

    def reset_many(self, indices: list[int], count: int) -> None:
        """reset(i, count) for each i: frames being freed together."""
        counts = self.counts
        for i in indices:
            counts[i] = count

    def down(self, i: int) -> None:
        raise NotImplementedError

    def up(self, i: int) -> None:
        raise NotImplementedError


class ThreadLockTable(LockTable):
    """Counts in a bytearray; waiters sleep on their stripe's condition."""

    __slots__ = ("_conds",)

    def __init__(self, n: int, name: str) -> None:
        super().__init__(n, name)
        self._conds = [threading.Condition(threading.Lock()) for _ in range(STRIPES)]

    def down(self, i: int) -> None:
        cond = self._conds[i & _STRIPE_MASK]
        counts = self.counts
        with cond:
            while not counts[i]:
                cond.wait()
            counts[i] -= 1

    def up(self, i: int) -> None:
        cond = self._conds[i & _STRIPE_MASK]
        with cond:
            self.counts[i] += 1
            # Others sharing the stripe wake too, look at their own count and
            # sleep again: a hashed wait queue's price.
            cond.notify_all()


class SimLockTable(LockTable):
    """Under the SimExecutor: `down` is an ACQUIRE point on `(name, i)`; the
    executor asks `sim_blocked_at(i)` and parks waiters on `waiters_at(i)`,
    a list that exists only while somebody waits."""

    __slots__ = ("_sched", "_waiting")

    def __init__(self, n: int, name: str, sched: SimScheduler) -> None:
        super().__init__(n, name)
        self._sched = sched
        self._waiting: dict[int, list[Task]] = {}
        sched.register_keyed(name, self)

    def reset(self, i: int, count: int) -> None:
        sched = self._sched
        if sched.recording:
            sched.touch((self.name, i), WRITE)  # see SimAtomicArray.reset
        self.counts[i] = count

    def reset_many(self, indices: list[int], count: int) -> None:
        sched = self._sched
        if sched.recording:
            touch, name = sched.touch, self.name
            for i in indices:
                touch((name, i), WRITE)
        super().reset_many(indices, count)

    def sim_blocked_at(self, i: int) -> bool:
        return not self.counts[i]

    def waiters_at(self, i: int) -> list[Task]:
        queue = self._waiting.get(i)
        if queue is None:
            queue = self._waiting[i] = []
        return queue

    def sim_wait_at(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def down(self, i: int) -> None:
        sched = self._sched
        if sched.current is None and not self.counts[i]:
            raise RuntimeError(
                f"{self.name}[{i}] is held, and code outside any task cannot wait for it"
            )
        key = (self.name, i)
        sched.point("down", key, ACQUIRE)
        counts = self.counts
        counts[i] -= 1
        if not counts[i]:
            sched.took(key)  # parks the other tasks about to take lock i, if any

    def up(self, i: int) -> None:
        sched = self._sched
        sched.point("up", (self.name, i), WRITE)
        self.counts[i] += 1
        queue = self._waiting.pop(i, None)
        if queue:
            sched.unpark(queue)


__all__ = [
    "STRIPES",
    "AtomicArray",
    "LockTable",
    "SimAtomicArray",
    "SimLockTable",
    "ThreadAtomicArray",
    "ThreadLockTable",
    "WordRef",
    "zero_words",
]
