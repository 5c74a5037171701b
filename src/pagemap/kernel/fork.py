"""fork: a child address space sharing the parent's pages copy-on-write.

Part of Proc (kernel/proc.py).  Linux's dup_mmap, at the level our model has:

- every VMR is copied into the child, less MAP_LOCKED (memory locks are not
  inherited), and registered with its file's page map, so removal, reclaim,
  fsync and truncate find the child's PTEs through the reverse map as they
  find the parent's (kernel/rmap.py);
- every anonymous page (zero fill or private copy) goes into the child's
  `anon` too, with one more page reference and one more on its map count
  (kernel/mapcount.py); in a private region both PTEs lose W (and D, which an
  anonymous page never needs), so the first write on either side faults and
  copies (kernel/cow.py);
- file pages are not copied: the child's first access faults them in from
  the page cache, as Linux leaves the PTEs of a file region with no
  anonymous pages to fault (a private region's file pages are read-only
  anyway, so either way the child sees the file as the parent would);
- the parent's TLBs are shot down before fork returns, so no core of the
  parent writes a shared page through an entry cached while it was writable.

A MAP_SHARED anonymous region keeps its pages shared for writing, W and
all; its pages not yet faulted in are not shared (the model has no shmem
object behind them), which tests avoid.

Rules: called by a task with no lock held; takes the parent's vmr_lock, the
child's, then the parent's pte_lock and the child's (the child is nobody
else's yet; removal may already find its VMRs and take its pte_lock, which
is why the child's PTEs are made under it).  The flush happens before the
parent's vmr_lock is dropped: a fault of the parent waits on that lock
until it is done (fork-store; fb49c455323f's fix, the VMA locks Linux's
per-VMA faults take, is the check/scenarios/known/cow.py row on
`fork_locks_vmas`).  Nothing here allocates a frame: fork cannot fail for
memory in our model (page tables are not frames).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

from pagemap.hw.memory import PGSHIFT
from pagemap.hw.mmu import PTE_D, PTE_P, PTE_U, PTE_W, make_pte
from pagemap.kernel.errors import InvalidArgument
from pagemap.kernel.mapcount import share
from pagemap.kernel.mm import MM, PTE_ALL
from pagemap.kernel.mman import MAP_LOCKED
from pagemap.kernel.owner import check_alive
from pagemap.kernel.vmr import VMR, find_vmr, register

# The published fixes a child inherits from its parent (see MM.__init__).
_SWITCHES = (
    "flush_before_unlock",
    "settle_keeps_dirty",
    "recheck_size_at_install",
    "fork_locks_vmas",
    "gup_breaks_cow",
    "foll_cow",
    "mremap_flush_dirty",
    "flush_batched_first",
    "mremap_flush_in_lock",
    "mkwrite_locks_page",
    "mkwrite_holds_lock",
)


class Fork(MM):
    """fork(), on this address space."""

    # Machine.process, set by the machine that made this process: how fork
    # makes the child (a new pid, in the machine's list of processes).
    new_process: Callable[[], Any] | None = None

    def fork(self) -> Self:
        """A child process whose address space is a copy of this one, its
        anonymous pages shared copy-on-write, as Linux's fork(2).  ESRCH
        after exit()."""
        check_alive(self.exited, "fork", self.pid)
        if self.new_process is None:
            raise InvalidArgument(f"fork: p{self.pid} was not made by a Machine")
        child = self.new_process()
        assert isinstance(child, type(self))
        for switch in _SWITCHES:
            setattr(child, switch, getattr(self, switch))
        child.new_process = self.new_process
        with self.vmr_lock, child.vmr_lock:
            for vmr in self.vmrs:
                # Memory locks are not inherited (dup_mmap clears VM_LOCKED).
                flags = vmr.flags & ~MAP_LOCKED
                copy = VMR(child, vmr.base, vmr.end, vmr.prot, flags, vmr.file, vmr.foff)
                register(copy)
                child.vmrs.append(copy)
            with self.pte_lock, child.pte_lock:
                self.cow_shared = child.cow_shared = True
                self._share_anon(child)
                if self.fork_locks_vmas:
                    self.tlb_shootdown()
        if not self.fork_locks_vmas:
            # fb49c455323f's bug in our terms (check/scenarios/known/cow.py):
            # a fault of the parent may run between the write-protect and the
            # flush, while another core still writes the page through its
            # stale entry.
            self.tlb_shootdown()
        return child

    def _share_anon(self, child: Fork) -> None:
        """Put each of our anonymous pages in `child` as well, write-protected
        on both sides in a private region; both pte_locks held."""
        for vpn in sorted(self.anon):
            page = self.anon[vpn]
            vmr = find_vmr(self.vmrs, vpn << PGSHIFT)
            assert vmr is not None, "an anonymous page outside every region"
            word = self.page_table.lookup(vpn)
            if word is None:
                old = 0
            elif vmr.shared:
                old = word.load()
            else:
                # One atomic operation: the MMU may set D until the instant W goes.
                old = word.fetch_and(~(PTE_W | PTE_D) & PTE_ALL)
            self.allocator.incref(page)
            share(page)
            child.anon[vpn] = page
            child._owner_changed(page)
            if old & PTE_P:
                bits = PTE_P | PTE_U | (old & PTE_W if vmr.shared else 0)
                child.page_table.pte(vpn).store(make_pte(page.ppn, bits))


__all__ = ["Fork"]
