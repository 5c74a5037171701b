"""Copy on write of shared anonymous pages: the write fault that breaks sharing.

After fork (kernel/fork.py) parent and child hold the same anonymous pages,
each mapped read-only in both.  A write fault on one of them either reuses
the page, when no other address space maps it any more (its map count,
kernel/mapcount.py, is back to one: Linux's reuse rule in do_wp_page of the
time of 17839856fd58, reuse_swap_page's page_mapcount() == 1), or gives the
faulting process its own copy (wp_page_copy).

Part of Proc through FaultHandler (kernel/fault.py), which calls
`_write_shared` from handle_page_fault and `_cow_read_only` from _install.
Rules: entered with no lock held (the copy is allocated and filled with none,
as allocation may reclaim); the switch to the copy happens under vmr_lock and
pte_lock, after re-checking that the region and our page at the address are
still what the fault saw, or the copy is freed and the access retries.  The
old PTE is cleared and the TLBs shot down before the copy is mapped and
before the old page's map count drops: until then another core of ours may
still read the old page through its TLB, and once the count drops the other
sharer may reuse it and write.  The copy itself is made before the flush, so
a store through a writable entry cached before fork could land in the old
page after the copy: fork's own flush, before it lets go of vmr_lock, is what
leaves no such entry by the time a fault here can run (fork-store; the zoo's
known-fork-fault row puts the window back).
"""

from __future__ import annotations

from pagemap.hw.memory import PGSHIFT
from pagemap.hw.mmu import PTE_P, PTE_U, PTE_W, make_pte
from pagemap.kernel.mapcount import shared, unshare
from pagemap.kernel.mm import MM
from pagemap.kernel.mman import PROT_WRITE
from pagemap.kernel.page import Page
from pagemap.kernel.vmr import VMR, find_vmr
from pagemap.sync.core import WRITE


class CopyOnWrite(MM):
    """The copy-on-write half of the fault handler."""

    def _cow_read_only(self, vmr: VMR, page: Page) -> bool:
        """Whether our page `page` must be mapped read-only although `vmr`
        is writable: another address space maps it too.  A MAP_SHARED region
        shares its anonymous pages with the child for writing (no shmem
        object: see kernel/fork.py), so it never copies."""
        return self.cow_shared and not vmr.shared and shared(page)

    def _write_shared(self, vmr: VMR, va: int, page: Page) -> bool:
        """A write fault at `va` on our page `page`: True if it was shared and
        this fault dealt with it (we have our copy now, or the state moved
        and the access retries); False if the page is ours alone, to be
        reused (mapped writable by the caller)."""
        if not self._cow_read_only(vmr, page):
            return False
        self._break_cow(vmr, va, page)
        return True

    def _break_cow(self, vmr: VMR, va: int, page: Page) -> bool:
        """Give this process its own copy of the shared page `page` at `va`,
        mapped as `vmr` allows (read-only in a read-only region, which a
        forced write or a pin may break COW in).  True if the copy is
        installed; False if the region or our page there changed meanwhile
        (the copy is freed, and the caller retries).  OutOfMemory, with
        nothing held, when no frame can be had."""
        copy = self.allocator.alloc()
        self.executor.point("frame.fill", copy.ppn, WRITE)
        copy.data[:] = page.data
        vpn = va >> PGSHIFT
        with self.vmr_lock:
            if find_vmr(self.vmrs, va) is not vmr or self.anon.get(vpn) is not page:
                installed = False
            else:
                with self.pte_lock:
                    self._switch_to_copy(vmr, vpn, page, copy)
                installed = True
        self.allocator.decref(copy if not installed else page)
        return installed

    def _switch_to_copy(self, vmr: VMR, vpn: int, page: Page, copy: Page) -> None:
        """Map `copy` at `vpn` in place of `page` (vmr_lock and pte_lock held):
        clear, flush, then map, as wp_page_copy's ptep_clear_flush and
        set_pte_at; only then is `page` no longer ours."""
        word = self.page_table.pte(vpn)
        word.swap(0)  # an anonymous page: its D bit goes nowhere
        self.tlb_shootdown()
        self.anon[vpn] = copy
        self._owner_changed(page)
        self._owner_changed(copy)
        bits = PTE_P | PTE_U | (PTE_W if vmr.prot & PROT_WRITE else 0)
        word.store(make_pte(copy.ppn, bits))
        unshare(page)


__all__ = ["CopyOnWrite"]
