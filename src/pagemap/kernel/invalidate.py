"""The mapping's invalidate lock: no page is added to the cache while a range
of it is being invalidated (Linux 5.15, `mapping->invalidate_lock`).

Taken shared by every path that adds a page to a page map (PageMap's lookup
when it must insert and read a page: read, write, fault), and exclusive by
hole punching (kernel/fallocate.py) and truncate (kernel/vfs.py), from
before they drop the cached pages until the blocks under them are freed.
Without it a fault or a read can read a page back in between the two, from
blocks about to be freed: the cache then holds a page naming freed blocks,
or stale bytes once they are reused (ea3d7209ca01 for faults, 730633f0b7f9
for reads; scenarios/known/punch.py).

Like an rw_semaphore, over one word (the number of readers, and WRITER)
and a sleeping semaphore, the gate, that a writer holds for its whole
section.  A reader takes the word with one CAS and gives it back with one
atomic add, so the hit path of the cache, which adds no page, pays nothing,
and a miss two steps.  A reader that finds WRITER set sleeps on the gate
until the writer lets go, then tries again; a writer takes the gate, sets
WRITER, and waits with relax() for the readers already in (each in one
readpage) to leave.  Nobody spins on a writer: two readers spinning could
starve it under a scheduler that favours them (punch-fault-read).

Rules: shared holders may sleep (on a page lock, in readpage), so the lock
comes before the page lock and after the inode's i_rwsem; the exclusive
holder takes page locks under it (truncate's held pages) and a host file's
host_lock.  Nothing that holds it shared takes it exclusive.

`enabled`: whether it is taken at all.  A page map starts without it (a
block device's map, or a bare map of the tests, is never punched or
truncated, and its misses need not pay two steps); an Inode turns it on for
its own mapping.  The zoo turns it off again to put the 5.15 bug back.
Change it only while no task runs.
"""

from __future__ import annotations

from pagemap.sync.executor import Executor

WRITER = 1 << 62


class InvalidateLock:
    """mapping->invalidate_lock."""

    def __init__(self, executor: Executor, name: str) -> None:
        self.executor = executor
        self.word = executor.atomic(0, f"{name}.invalidate_lock")
        self.gate = executor.semaphore(1, f"{name}.invalidate_gate")
        self.enabled = False

    def __repr__(self) -> str:
        value = self.word.value
        state = "exclusive" if value & WRITER else f"{value} reader(s)" if value else "free"
        return f"InvalidateLock({self.word.name}: {state})"

    @property
    def held(self) -> bool:
        """Held either way (for the accounting at quiescence); no scheduling point."""
        return bool(self.word.value) or self.gate.count != 1

    def down_read(self) -> None:
        """filemap_invalidate_lock_shared."""
        if not self.enabled:
            return
        word = self.word
        old = 0  # the common case first: one CAS, no load
        while not word.cas(old, old + 1):
            old = word.load()
            if old & WRITER:
                # A punch or truncate is at work: sleep until it is done.
                self.gate.down()
                self.gate.up()
                old = 0

    def up_read(self) -> None:
        if self.enabled:
            self.word.fetch_add(-1)

    def down_write(self) -> None:
        """filemap_invalidate_lock."""
        if not self.enabled:
            return
        self.gate.down()  # one writer at a time; readers arriving now sleep here
        word = self.word
        word.fetch_or(WRITER)
        while word.load() != WRITER:
            self.executor.relax()  # readers mid-readpage: let them leave

    def up_write(self) -> None:
        if self.enabled:
            self.word.fetch_and(~WRITER)
            self.gate.up()


__all__ = ["WRITER", "InvalidateLock"]
