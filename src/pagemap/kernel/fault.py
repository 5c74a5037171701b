"""The page-fault handler: what happens when a user access finds no usable PTE.

Part of Proc (kernel/proc.py); the state is MM's (kernel/mm.py), whose lock
order it follows.  Rules: the handler is entered with no lock held, and
leaves with none held, having installed a PTE or raised what Linux would
signal.  It never sleeps under vmr_lock or pte_lock: it checks its VMR under
vmr_lock, lets go to look the page up (which may read it in and sleep), and
re-checks the VMR under vmr_lock before it installs (_install), so a region
unmapped or changed meanwhile gets no PTE and the access faults afresh.  A
PTE is installed with one CAS that keeps any D bit already there.
"""

from __future__ import annotations

import errno

from pagemap.hw.memory import PGMASK, PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_D, PTE_P, PTE_U, PTE_W, make_pte, pte_ppn
from pagemap.kernel.cow import CopyOnWrite
from pagemap.kernel.errors import BusError, KernelBug, SegmentationFault
from pagemap.kernel.mkwrite import page_mkwrite_fault
from pagemap.kernel.mman import PROT_WRITE
from pagemap.kernel.page import PG_FAULTED, PG_PAGEMAP, Page
from pagemap.kernel.vmr import VMR, describe_prot, find_vmr, prot_allows
from pagemap.sync.core import READ, WRITE


def pte_allows(pte: int, write: bool) -> bool:
    """Whether a PTE lets a load (or store) through."""
    return bool(pte & PTE_P) and (not write or bool(pte & PTE_W))


class FaultHandler(CopyOnWrite):
    """handle_page_fault and its helpers."""

    def handle_page_fault(self, va: int, write: bool, force: bool = False) -> None:
        """Make the access at `va` possible, or raise what Linux would signal.

        No VMR: SegmentationFault (EFAULT).  A VMR that forbids the access:
        SegmentationFault (EPERM).  A file page at or past the end of file:
        BusError.  Otherwise the page is installed and the caller retries;
        a fault that finds the work already done (another core won) returns.
        `force`: the kernel's own access for another (kernel/gup.py, FOLL_FORCE):
        a write into a read-only private region takes its copy there.
        """
        self.faults.add(1)
        vpn = va >> PGSHIFT
        with self.vmr_lock:
            vmr = self._checked_vmr(va, write, force)
            word = self.page_table.lookup(vpn)
            if word is not None and pte_allows(word.load(), write):
                return  # a spurious fault: another core installed it first
            owned = self.anon.get(vpn)
        if owned is not None and write:
            if vmr.file is not None:
                self._check_eof(vmr, va, write)
            if self._write_shared(vmr, va, owned):  # fork shared it: copy (kernel/cow.py)
                return
        if vmr.file is None:
            self._fault_anonymous(vmr, va, owned)
        elif owned is not None:
            # Our private copy, mapped read-only by mprotect or zapped by PROT_NONE.
            self._check_eof(vmr, va, write)
            self._install(vmr, va, owned, write, owned=True)
        else:
            self._fault_file(vmr, va, write)

    def _checked_vmr(self, va: int, write: bool, force: bool = False) -> VMR:
        """The VMR at `va` if it allows the access (with `force`, a write to
        a readable private region); vmr_lock held."""
        vmr = find_vmr(self.vmrs, va)
        op = "store to" if write else "load from"
        if vmr is None:
            raise SegmentationFault(
                f"SIGSEGV: p{self.pid} {op} {va:#x}: nothing is mapped there", errno=errno.EFAULT
            )
        if not prot_allows(vmr.prot, write) and not (
            force and not vmr.shared and prot_allows(vmr.prot, False)
        ):
            raise SegmentationFault(
                f"SIGSEGV: p{self.pid} {op} {va:#x}: the mapping at "
                f"{vmr.base:#x}-{vmr.end:#x} is {describe_prot(vmr.prot)}",
                errno=errno.EPERM,
            )
        return vmr

    def _check_eof(self, vmr: VMR, va: int, write: bool) -> None:
        assert vmr.file is not None
        size = vmr.file.size
        index = vmr.index_of(va)
        if index >= (size + PGMASK) >> PGSHIFT:
            raise BusError(
                f"SIGBUS: p{self.pid} {'store to' if write else 'load from'} {va:#x} maps "
                f"page {index} of a file of {size} bytes, past its end"
            )

    @staticmethod
    def _past_eof(vmr: VMR, va: int) -> bool:
        assert vmr.file is not None
        return vmr.index_of(va) >= (vmr.file.size + PGMASK) >> PGSHIFT

    def _fault_anonymous(self, vmr: VMR, va: int, owned: Page | None) -> None:
        if owned is not None:
            self._install(vmr, va, owned, True, owned=True)
            return
        page = self._zeroed_page()
        if not self._install(vmr, va, page, True, owned=True):
            self.allocator.decref(page)

    def _fault_file(self, vmr: VMR, va: int, write: bool) -> None:
        mapping = vmr.mapping
        assert mapping is not None
        self._check_eof(vmr, va, write)
        page, read = mapping.lookup(vmr.index_of(va))
        if read:
            self.major_faults.add(1)  # not cached, or still being read in
            # The access we are about to let through sets A; the read was this
            # page's first use, so reclaim must not count that A bit again.
            page.flags.fetch_or(PG_FAULTED)
        try:
            # The file may have shrunk while we slept in lookup: truncate
            # stores the size before it drops pages, even pages held as this
            # one is, so we check again here, and once more as we install,
            # under the pte_lock that truncate's unmap pass takes after the
            # size changed: either our PTE is in place before that pass, which
            # clears it, or we see the new size and install nothing
            # (test_a_fault_racing_truncate_unmaps_what_it_installed; a
            # handler that puts the page before installing it is caught).
            self._check_eof(vmr, va, write)
            if write and not vmr.shared:
                copy = self._zeroed_page(fill=page)
                if not self._install(vmr, va, copy, True, owned=True):
                    self.allocator.decref(copy)
            elif write and self.dirty_tracking == "wp":
                # Write-protect tracking: the page is dirtied, under its lock,
                # before the PTE becomes writable (kernel/mkwrite.py).
                page_mkwrite_fault(
                    self, mapping, page, lambda: self._install(vmr, va, page, True, owned=False)
                )
            else:
                self._install(vmr, va, page, write, owned=False)
        finally:
            mapping.put_page(page)

    def _zeroed_page(self, fill: Page | None = None) -> Page:
        """A fresh anonymous page: zeros, or a copy of `fill`'s bytes."""
        page = self.allocator.alloc()
        self.executor.point("frame.fill", page.ppn, WRITE)
        if fill is None:
            page.data[:] = bytes(PGSIZE)
        else:
            page.data[:] = fill.data
        return page

    def _install(self, vmr: VMR, va: int, page: Page, write: bool, owned: bool) -> bool:
        """Point the PTE at `va` to `page`; False if the VMR changed meanwhile
        (the access retries and faults afresh) or another fault won the race
        to give this private page its own copy.

        `owned`: the page is anonymous and ours (recorded in self.anon).
        Three named steps, each a seam the mutants of check/mutants/ break
        alone: the region survived, the page may be ours, the PTE is set.
        """
        vpn = va >> PGSHIFT
        with self.vmr_lock:
            if not self._region_survived(vmr, va):
                return False
            writable = bool(vmr.prot & PROT_WRITE) and (vmr.shared or owned or vmr.file is None)
            if writable and owned and self._cow_read_only(vmr, page):
                writable = False  # another process maps it too: its write faults and copies
            if writable and not write and not owned and self.dirty_tracking == "wp":
                writable = vmr.file is None  # a shared file page: read-only until a write fault
            bits = PTE_P | PTE_U | (PTE_W if writable else 0)
            with self.pte_lock:
                # The recheck is d00806b18315's fix in our terms (the fault
                # rechecks, under a lock truncate's unmap takes, that its page
                # is still the file's); check/scenarios/known turns it off.
                if (
                    vmr.file is not None
                    and self.recheck_size_at_install
                    and (self._past_eof(vmr, va) or self._left_map(page, owned))
                ):
                    return False  # truncated meanwhile: the retried access is a bus error
                if not self._claim_slot(vpn, page, owned):
                    return False
                replaced = self._set_pte(va, page, bits, write)
                if replaced:
                    # A private copy replaces the file's page: TLBs must forget
                    # the old frame before removal could free it unseen (the
                    # private-remove scenario).  That page alone (flush_tlb_page).
                    self.tlb_shootdown(va & ~PGMASK, (va & ~PGMASK) + PGSIZE)
        return True

    def _left_map(self, page: Page, owned: bool) -> bool:
        """A file page a truncate or a hole punch took out of its map while
        we held it (Removal._drop_held clears PG_PAGEMAP before its last
        unmap): read with no point of its own, named in the step's footprint
        (pte_lock held; punch-fault)."""
        if owned:
            return False
        self.executor.touch(("page.flags", page.ppn), READ)
        return not page.flags.value & PG_PAGEMAP

    def _region_survived(self, vmr: VMR, va: int) -> bool:
        """The VMR the fault started from still maps `va` (vmr_lock held): a
        fault sleeps in lookup, and munmap or MAP_FIXED may have taken its
        region meanwhile (munmap-fault, anon-fault-remap; mutant
        fault-after-munmap)."""
        return find_vmr(self.vmrs, va) is vmr

    def _claim_slot(self, vpn: int, page: Page, owned: bool) -> bool:
        """Record `page` as our copy at `vpn` if it is ours; False if another
        fault gave this page its private copy since we looked: never cover it
        with the file's page or a second copy (pte_lock held; private-fault-fault,
        test_two_faults_racing_to_copy_one_private_page_keep_one_copy; mutant
        private-second-copy)."""
        mine = self.anon.get(vpn)
        if mine is not None and mine is not page:
            return False
        if owned:
            self.anon[vpn] = page
            self._owner_changed(page)
        return True

    def _set_pte(self, va: int, page: Page, bits: int, write: bool) -> bool:
        """Make the PTE at `va` map `page` with `bits`, keeping any D bit, in
        one CAS (pte_lock held); True if it replaced another present frame.

        If another core's fault installed the page since we looked, its store
        may have set D since: rewriting the PTE would lose that bit (fault-fault;
        mutant fault-overwrites-pte), so leave it.  Removal's first pass leaves
        D in a PTE it makes not present, but it holds pm.lock until its third
        pass zeroes that PTE, and lookup takes pm.lock first, so no fault meets
        such a PTE today (hence fault-drops-dirty is an equivalent mutant);
        were that to change, the bit must survive, as
        test_the_fault_handler_keeps_a_d_bit_left_in_a_not_present_pte checks
        by hand.
        """
        word = self.page_table.pte(va >> PGSHIFT)
        while True:
            old = word.load()
            same = pte_ppn(old) == page.ppn
            if pte_allows(old, write) and same:
                return False
            if old & PTE_D and not same:
                raise KernelBug(
                    f"p{self.pid}: PTE at {va:#x} still holds the dirty bit of frame "
                    f"{pte_ppn(old)} while frame {page.ppn} is installed there"
                )
            if word.cas(old, make_pte(page.ppn, bits) | self._kept_bits(old)):
                return bool(old & PTE_P) and not same

    @staticmethod
    def _kept_bits(old: int) -> int:
        """What a new PTE keeps of the one it replaces: its D bit (see _set_pte;
        the equivalent mutant fault-drops-dirty keeps nothing)."""
        return old & PTE_D
