"""The flusher: a kernel task that evicts pages in the background.

Every `period` seconds (virtual seconds under the SimExecutor), or as soon as
somebody kicks it, it runs one round: remove_contig over the whole of every
page map the machine has (open files and block devices alike), which writes
back what is dirty and frees what nobody is using.

A task whose allocation finds no free frame calls `reclaim()`: it wakes the
flusher and sleeps until a round that began after its call has finished, then
tries again.  Only if such a round ended with no frame free, having freed
none, does the allocation fail with OutOfMemory: every frame was in use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pagemap.kernel.errors import KernelError
from pagemap.kernel.page import PageAllocator
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.radix import RADIX_MAX_INDEX
from pagemap.sync.executor import Executor, Task
from pagemap.sync.locks import Semaphore


@dataclass
class _Waiter:
    wake: Semaphore
    freed: int = 0


@dataclass
class FlusherStats:
    rounds: int = 0
    pages_freed: int = 0
    reclaim_requests: int = 0
    errors: list[KernelError] = field(default_factory=list)


class Flusher:
    def __init__(
        self,
        executor: Executor,
        allocator: PageAllocator,
        page_maps: Sequence[PageMap],
        period: float,
    ) -> None:
        if period <= 0:
            raise ValueError(f"the flusher's period must be positive, not {period}")
        self.executor = executor
        self.allocator = allocator
        self.page_maps = page_maps  # the machine's live list: new files join in
        self.period = period
        self.kick = executor.semaphore(0, "flusher.kick")
        self.lock = executor.spinlock("flusher.waiters")
        self.waiters: list[_Waiter] = []
        self.stopping = False
        self.task: Task | None = None
        self.stats = FlusherStats()

    def main(self) -> None:
        """The task's body: a round per period or per kick, until stopped."""
        while not self.stopping:
            self.kick.down_timeout(self.period)
            if self.stopping:
                break
            self.flush_round()
        # Nobody will run another round: let sleepers see their allocation fail.
        self._wake(self._take_waiters(), freed=0)

    def flush_round(self) -> int:
        """Evict what can be evicted from every page map; the pages freed."""
        # Only those who asked before this round began are answered by it.
        answering = self._take_waiters()
        free_before = self.allocator.nr_free
        freed = 0
        for pm in list(self.page_maps):
            try:
                freed += pm.remove_contig(0, RADIX_MAX_INDEX + 1)
            except KernelError as exc:
                # A failed writeback keeps its page dirty and cached; the next
                # round tries again.  Keep going with the other maps.
                self.stats.errors.append(exc)
        self.stats.rounds += 1
        self.stats.pages_freed += freed
        # A frame that was free at either end of the round (freed by us or by
        # anyone) means memory is not exhausted, even if another task took it
        # before the sleepers woke: they should try again, not fail.
        self._wake(answering, freed + free_before + self.allocator.nr_free)
        return freed

    def reclaim(self) -> bool:
        """Wake the flusher and wait for a fresh round; how many frames it
        freed or found free (0: every frame was in use throughout).

        None when the flusher cannot help: it has stopped, or the caller is the
        flusher itself (which must not wait for its own round).
        """
        if self.stopping or self.task is None or self.executor.current_task() is self.task:
            return False
        waiter = _Waiter(self.executor.semaphore(0, "flusher.reclaim"))
        with self.lock:
            self.waiters.append(waiter)
        self.stats.reclaim_requests += 1
        self.kick.up()
        waiter.wake.down()
        return waiter.freed > 0

    def stop(self) -> None:
        """Ask the task to finish after its current round."""
        self.stopping = True
        self.kick.up()

    def _take_waiters(self) -> list[_Waiter]:
        with self.lock:
            taken, self.waiters = self.waiters, []
        return taken

    @staticmethod
    def _wake(waiters: list[_Waiter], freed: int) -> None:
        for waiter in waiters:
            waiter.freed = freed
            waiter.wake.up()
