"""Reclaim: freeing cached pages when frames run short, chosen by a policy
that the hardware's accessed bits and the VFS's references drive.

Direct reclaim runs in the task whose allocation found no free frame, on
every Machine, flusher or not (PageAllocator.alloc calls `direct`).  One task
reclaims at a time (`mutex`); the others wait for it and then try their
allocation again.  A round:

1. asks the replacement policy (kernel/policy/) for a batch of victims,
   passing over pages that are in use or locked right now (`_evictable`,
   atomic loads only);
2. harvests what each victim was used for since reclaim last looked: its
   PG_REFERENCED (a read or write through the VFS) and the A bits of every
   PTE that maps it, each cleared with one atomic operation; the processes
   whose A bits were cleared are shot down, so that their next access walks
   the page table and sets A again.  A victim found used goes back to the
   policy as used (`kept`), as Linux's folio_referenced() keeps a
   referenced page on the LRU.  The A bit the page's own faulting access
   set is not counted: the miss that read it in was its first use
   (PG_FAULTED);
3. frees the rest through the page map's removal protocol
   (PageMap.remove_pages: the seed's passes, dirty pages written back), and
   gives back to the policy those that could not go (pinned by MAP_LOCKED,
   or used meanwhile).

Rounds go on until a batch's worth is free.  `direct` answers False, and the
allocation fails with OutOfMemory, only when the policy has offered every
cached page (twice, so that a referenced page gets its second look) and
none could be freed: all pinned, in use, or locked.

Direct reclaim never waits on itself.  Writing a victim back may allocate:
a page stored into a hole of an ext2 file through a shared mapping gets its
block at writepage, and reading that block's bitmap or indirect block into
the device's cache needs a frame.  With none free that allocation comes back
here, in the task that holds `mutex`; waiting on the mutex would wait
forever (a hang under threads, a deadlock under the sim).  As Linux's
PF_MEMALLOC keeps a reclaiming task out of reclaim, a nested call answers
False at once: that allocation fails with ENOMEM, the writepage fails, and
its page stays dirty and cached while reclaim moves on to other victims
(test_direct_reclaim_writing_back_into_a_hole_never_waits_on_itself_*).

Rules.  `lock` guards the policy and is innermost: the page map calls
`inserted` and `removed` with its map lock held, and nothing takes another
lock while holding `lock` (`_evictable` only loads words).  So a page enters
the policy before anybody can choose it, and leaves it before its frame can
be handed out again.  `mutex` is a sleeping lock held across a whole round;
removal under it sleeps in writeback, never allocates.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from pagemap.hw.mmu import PTE_A, PTE_P, pte_ppn
from pagemap.kernel.page import PG_FAULTED, PG_LOCKED, PG_REFERENCED, Page, PageAllocator
from pagemap.kernel.policy import Key, Policy
from pagemap.kernel.rmap import AddressSpace, vmr_has_page_idx, vmr_idx_to_va
from pagemap.kernel.slot import PM_PPN_MASK, PM_REFCNT_SHIFT
from pagemap.sync.executor import Executor

if TYPE_CHECKING:
    from pagemap.kernel.pagemap import PageMap

# Victims asked for at once (Linux's SWAP_CLUSTER_MAX).
BATCH = 32
# Passes a direct reclaim makes while pages it passed over were only in use.
RETRIES = 8


@dataclass
class ReclaimStats:
    rounds: int = 0  # victims() calls
    scanned: int = 0  # victims offered by the policy
    referenced: int = 0  # victims found used when harvested, and kept
    reclaimed: int = 0  # pages freed by reclaim
    direct: int = 0  # direct reclaims (allocations that found no free frame)
    failed: int = 0  # direct reclaims that found nothing to free
    nested: int = 0  # allocations made by reclaim itself that found no free frame


class Reclaim:
    """The machine's reclaim: its policy, and direct and background shrinking."""

    def __init__(
        self,
        executor: Executor,
        allocator: PageAllocator,
        page_maps: Sequence[PageMap],
        policy: Policy,
    ) -> None:
        self.executor = executor
        self.allocator = allocator
        self.page_maps = page_maps  # the machine's live list
        self.policy = policy
        self.lock = executor.spinlock("reclaim.lock")
        self.mutex = executor.semaphore(1, "reclaim.mutex")
        # Who holds `mutex` (task, thread), or None: read only to ask "is it
        # me?", which only the holder can answer yes to, so it needs no lock.
        self.holder: tuple[object, int] | None = None
        self.stats = ReclaimStats()
        self.refused = 0  # victims passed over as in use, in the current pass
        # Woken when free frames fall under the low watermark (kswapd's kick);
        # set by the flusher that runs background reclaim, if any.
        self.kick: object = None

    # -- what the page map tells us (map lock held) ------------------------------
    def inserted(self, page: Page) -> None:
        with self.lock:
            self.policy.insert(page.ppn)

    def removed(self, page: Page) -> None:
        with self.lock:
            if page.ppn in self.policy:
                self.policy.removed(page.ppn)

    def removed_many(self, pages: list[Page]) -> None:
        ppns: list[Key] = [page.ppn for page in pages]
        with self.lock:
            self.policy.discard_many(ppns)

    # -- direct reclaim --------------------------------------------------------------
    def direct(self) -> bool:
        """Free frames for an allocation that found none; False when nothing
        could be freed.  Called with no lock held.

        A page in use right now (a slot reference, the page lock) cannot go,
        but will be put back soon: while the last pass refused some page for
        that reason alone, reclaim lets others run and looks again, up to
        RETRIES times, as Linux's direct reclaim retries while it sees hope.
        A frame freed meanwhile by anybody (a remover, an exiting process)
        also sends the allocation back to try, even if somebody else took it
        first: memory is moving, not exhausted (the reclaim-store scenario
        with a remover finds that schedule).
        """
        me = (self.executor.current_task(), threading.get_ident())
        holder = self.holder
        if holder is not None and holder[0] is me[0] and holder[1] == me[1]:
            # An allocation made by our own round (a writepage's buffer): see
            # the module's docstring.  Waiting for the mutex would be waiting
            # for ourselves.
            self.stats.nested += 1
            return False
        self.stats.direct += 1
        frees = self.allocator.frees
        self.mutex.down()
        self.holder = me
        try:
            for _ in range(RETRIES):
                if self.allocator.free_frames():
                    return True  # another reclaimer freed some while we waited
                self.refused = 0
                nested = self.stats.nested
                freed = self.shrink(BATCH, enough=1)
                if self.allocator.free_frames():
                    return True
                # Our own writeback may have taken what the round freed, and
                # still wanted more (a page stored into a hole needs an
                # indirect block and a bitmap): then nothing moved for our
                # caller, and answering True would send it straight back
                # here, round after round, for ever (the ext2 fault soak,
                # with every other frame held; test_reclaim_starved_by_its_own_writeback_ends).
                starved = self.stats.nested != nested
                if freed and not starved:
                    return True
                # A removal at work on some map may be about to free pages we
                # could not choose (the reclaim-store scenario with a remover):
                # wait for it rather than count its pages as lost.
                self._wait_for_removals()
                if self.allocator.frees != frees and not starved:
                    return True
                if not self.refused:
                    break  # nothing in use to wait for: all pinned, or nothing cached
                self.holder = None
                self.mutex.up()
                try:
                    self.executor.relax()
                finally:
                    self.mutex.down()
                    self.holder = me
            self.stats.failed += 1
            return False
        finally:
            self.holder = None
            self.mutex.up()

    def _wait_for_removals(self) -> None:
        for pm in list(self.page_maps):
            while pm.removal.load():
                self.executor.relax()

    def shrink(self, want: int, enough: int | None = None) -> int:
        """Free up to `want` pages, in rounds of victims, stopping after the
        round that brings the count to `enough` (by default `want`); the
        number freed.  `mutex` held.

        Direct reclaim asks for a batch but is content with one frame: going
        on would offer again, in the same reclaim, a page just kept for its
        A bit, taking its second chance away before anyone could use it.
        """
        freed = 0
        enough = want if enough is None else enough
        budget = 2 * len(self.policy) + BATCH
        while freed < enough and budget > 0:
            with self.lock:
                victims = cast(
                    list[int], self.policy.victims(min(BATCH, want - freed), self._evictable)
                )
            self.stats.rounds += 1
            if not victims:
                break
            budget -= len(victims)
            self.stats.scanned += len(victims)
            freed += self._round(victims)
        self.stats.reclaimed += freed
        return freed

    def _round(self, victims: list[int]) -> int:
        used = self._harvest(victims)
        self.stats.referenced += len(used)
        groups: dict[int, tuple[PageMap, dict[int, int]]] = {}
        pages = self.allocator.pages
        for ppn in victims:
            if ppn in used:
                continue
            page = pages[ppn]
            # A page names its map by shape (kernel/page.py); it is a PageMap.
            pm = cast("PageMap | None", self.allocator.mapping_of(ppn))
            if pm is None:
                continue  # freed meanwhile, by another remover
            group = groups.setdefault(id(pm), (pm, {}))
            group[1][page.index] = ppn
        freed = 0
        for pm, want in groups.values():
            freed += pm.remove_pages(want)
        with self.lock:
            policy = self.policy
            for ppn in victims:
                # Freed victims left the policy as they left their map
                # (`removed`); the rest come back, as used.
                if policy.is_in_flight(ppn):
                    policy.kept(ppn)
        return freed

    def _evictable(self, key: Key) -> bool:
        """A victim the policy may hand out: in a map, no slot reference, not
        locked.  Loads only (we hold `lock`, which is innermost)."""
        ppn = cast(int, key)
        frames = self.allocator.frames
        slot = frames.slots.load(ppn)
        if not slot & PM_PPN_MASK or slot >> PM_REFCNT_SHIFT or frames.flags.load(ppn) & PG_LOCKED:
            self.refused += 1
            return False
        return True

    # -- harvesting references ---------------------------------------------------------
    def _harvest(self, victims: list[int]) -> set[int]:
        """The victims used since reclaim last looked: PG_REFERENCED, or an A
        bit in a PTE that maps them; both cleared, and every process whose A
        bit was cleared shot down."""
        frames = self.allocator.frames
        flags = frames.flags
        used: set[int] = set()
        by_map: dict[int, tuple[PageMap, list[int]]] = {}
        for ppn in victims:
            if flags.load(ppn) & PG_REFERENCED and flags.fetch_and(ppn, ~PG_REFERENCED) & (
                PG_REFERENCED
            ):
                used.add(ppn)
            pm = cast("PageMap | None", self.allocator.mapping_of(ppn))
            if pm is not None and pm.vmrs:
                by_map.setdefault(id(pm), (pm, []))[1].append(ppn)
        shoot: list[AddressSpace] = []
        for pm, ppns in by_map.values():
            self._harvest_ptes(pm, ppns, used, shoot)
        for proc in shoot:
            proc.tlb_shootdown()
        return used

    def _harvest_ptes(
        self, pm: PageMap, ppns: list[int], used: set[int], shoot: list[AddressSpace]
    ) -> None:
        flags = self.allocator.frames.flags
        pages = self.allocator.pages
        with pm.lock:
            for ppn in ppns:
                page = pages[ppn]
                if self.allocator.mapping_of(ppn) is not pm:
                    continue
                index = page.index
                # The first look after a fault read the page in: that fault's
                # own access set A, and the miss already counted as its use.
                fresh = bool(flags.load(ppn) & PG_FAULTED)
                if fresh:
                    flags.fetch_and(ppn, ~PG_FAULTED)
                for vmr in pm.vmrs:
                    if not vmr_has_page_idx(vmr, index):
                        continue
                    proc = vmr.proc
                    with proc.pte_lock:
                        pte = proc.pte_at(vmr_idx_to_va(vmr, index))
                        if pte is None:
                            continue
                        old = pte.load()
                        if old & (PTE_P | PTE_A) != PTE_P | PTE_A or pte_ppn(old) != ppn:
                            continue
                        pte.fetch_and(~PTE_A)
                    if not fresh:
                        used.add(ppn)
                    if not any(p is proc for p in shoot):
                        shoot.append(proc)

    # -- for reports ------------------------------------------------------------------
    def summary(self) -> dict[str, int]:
        s = self.stats
        return {
            "reclaim_rounds": s.rounds,
            "pages_scanned_by_reclaim": s.scanned,
            "pages_found_referenced": s.referenced,
            "pages_reclaimed": s.reclaimed,
            "direct_reclaims": s.direct,
        }


__all__ = ["BATCH", "Reclaim", "ReclaimStats"]
