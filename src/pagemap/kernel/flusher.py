"""The flusher: background reclaim and writeback, two kernel tasks.

Allocations never wait for the flusher: they reclaim in their own task
(kernel/reclaim.py).  The flusher keeps them from having to:

- `kswapd` wakes every `period` seconds (virtual under the SimExecutor), or
  when an allocation leaves fewer free frames than the low watermark, and
  reclaims until the high watermark is free, through the same policy and
  removal protocol as direct reclaim;
- `writeback` wakes every `period` seconds and writes back the pages that
  have stayed dirty since its previous pass (Linux's dirty_expire_centisecs,
  at the grain of one period: PG_AGED marks a page found dirty once), and
  every dirty page when more than `dirty_ratio` of memory is dirty.  It
  evicts nothing; fsync and msync are unchanged.

Rules: the period is a finite positive number (ValueError otherwise).  Both
tasks stop when the run's other tasks have all finished (Machine.run).  A
task that fails ends with its error, which the run raises; nobody waits on
the flusher, so its death cannot hang anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pagemap.kernel.errors import KernelError
from pagemap.kernel.page import PageAllocator
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.reclaim import Reclaim
from pagemap.kernel.writeback import write_expired
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor, Task

# Fractions of memory: kswapd wakes under LOW free, and stops at HIGH free.
LOW_WATERMARK = 1 / 64
HIGH_WATERMARK = 1 / 32
DIRTY_RATIO = 0.2


def check_period(period: float) -> float:
    """`period` if it is a finite positive number of seconds; ValueError otherwise."""
    if not isinstance(period, int | float) or not math.isfinite(period) or not period > 0:
        raise ValueError(f"the flusher's period must be a finite positive number, not {period}")
    return float(period)


@dataclass
class FlusherStats:
    rounds: int = 0  # kswapd wake-ups that reclaimed
    pages_freed: int = 0
    kicks: int = 0  # allocations that woke kswapd under the low watermark
    writeback_rounds: int = 0
    pages_written: int = 0
    errors: list[KernelError] = field(default_factory=list)


class Flusher:
    def __init__(
        self,
        executor: Executor,
        allocator: PageAllocator,
        reclaim: Reclaim,
        page_maps: Sequence[PageMap],
        period: float,
        dirty_ratio: float = DIRTY_RATIO,
    ) -> None:
        self.period = check_period(period)
        if not 0 < dirty_ratio <= 1:
            raise ValueError(f"the dirty ratio must be in (0, 1], not {dirty_ratio}")
        self.executor = executor
        self.allocator = allocator
        self.reclaim = reclaim
        self.page_maps = page_maps  # the machine's live list: new files join in
        frames = allocator.nr_frames - 1
        self.low = max(1, int(frames * LOW_WATERMARK))
        self.high = max(self.low + 1, int(frames * HIGH_WATERMARK))
        self.dirty_limit = max(1, int(frames * dirty_ratio))
        self.kick = executor.semaphore(0, "kswapd.kick")
        self.wb_kick = executor.semaphore(0, "writeback.kick")
        self.stopping = False
        # The stop flag is plain Python state, not a word: each step that
        # reads or writes it names this key instead (see stop_requested).
        self._stop_key = ("flusher.stopping", 0)
        self.task: Task | None = None  # kswapd
        self.writeback_task: Task | None = None
        self.stats = FlusherStats()

    # -- kswapd ---------------------------------------------------------------------
    def kswapd(self) -> None:
        """Reclaim to the high watermark each period, or when kicked."""
        while not self.stop_requested():
            self.kick.down_timeout(self.period)
            if self.stop_requested():
                break
            self.reclaim_round()

    def reclaim_round(self) -> int:
        if self.allocator.free_frames() >= self.low:
            return 0
        reclaim = self.reclaim
        reclaim.mutex.down()
        try:
            freed = reclaim.shrink(self.high - self.allocator.free_frames())
        finally:
            reclaim.mutex.up()
        self.stats.rounds += 1
        self.stats.pages_freed += freed
        return freed

    def low_on_memory(self, free: int) -> None:
        """Called by every allocation with the frames it left free: one that
        crosses the low watermark wakes kswapd."""
        if free == self.low - 1 and not self.stop_requested():
            self.stats.kicks += 1
            self.kick.up()

    # -- writeback ------------------------------------------------------------------
    def writeback(self) -> None:
        """Write back expired dirty pages each period."""
        while not self.stop_requested():
            self.wb_kick.down_timeout(self.period)
            if self.stop_requested():
                break
            self.writeback_round()

    def writeback_round(self) -> int:
        # kernel/writeback.py: a failed writepage keeps its page dirty, and
        # the next round tries again.
        written, errors = write_expired(self.page_maps, self.dirty_limit)
        self.stats.errors.extend(errors)
        self.stats.writeback_rounds += 1
        self.stats.pages_written += written
        return written

    def stop_requested(self) -> bool:
        """Whether stop() was called.  The step that asks names the flag, so
        that DPOR orders it against the step that raised it: kswapd's check
        at the top of its loop, taken before or after the last task's stop(),
        decides whether it waits once more and takes stop()'s kick (the
        semaphore's count at the end differs).  Unnamed, the two steps looked
        independent and bounded DPOR reached one of the two ends only
        (reclaim-contend at one preemption, tests/check/test_dpor_equivalence.py)."""
        self.executor.touch(self._stop_key, READ)
        return self.stopping

    def stop(self) -> None:
        """Ask both tasks to finish after their current round."""
        self.executor.touch(self._stop_key, WRITE)
        self.stopping = True
        self.kick.up()
        self.wb_kick.up()


__all__ = ["DIRTY_RATIO", "Flusher", "FlusherStats", "check_period"]
