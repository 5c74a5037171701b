"""Processes' address spaces: VMRs, mmap/munmap/mprotect/msync, page faults.

A Proc is an address space: a page table (hw/mmu.py), a sorted list of VMRs
(virtual memory regions), and the anonymous pages it owns (zero-fill memory
and private copies).  It is what the page map's removal code calls an
AddressSpace, and its VMRs are what it calls VMRegions.

Locks, outermost first:

    vmr_lock     the VMR list; held while a VMR is split, merged, added or
                 removed, and while a fault checks and installs its PTE
    pm.lock      a page map's VMR list and tree (taken by add_vmr/remove_vmr)
    pte_lock     the page table; removal takes it under pm.lock
    core busy    a core's instruction in flight (hw/mmu.py), innermost

Nothing sleeps under vmr_lock or pte_lock: a fault loads its page with no
lock held and re-checks its VMR afterwards.

VMRs never change once registered with a page map.  Splitting, merging or
changing protection builds new VMRs, registers them, and only then removes
the old ones, so a remover walking the map's VMR list (under pm.lock) always
sees every PTE that might map one of its pages; for a moment it may see
some twice, which is harmless.

PTEs change only by single atomic operations (swap, CAS, fetch_and), never
by a read and a write back, because the MMU sets A and D in between.  Every
D bit a PTE loses becomes PG_DIRTY on its page in the same pte_lock critical
section, after the TLB shootdown: removal takes pte_lock before it frees a
page, so it can never free a dirty page whose D bit is in flight, and no
store through a stale TLB entry can land after PG_DIRTY is set.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import Protocol

from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.hw.mmu import (
    MMU,
    PTE_D,
    PTE_P,
    PTE_U,
    PTE_W,
    PageFault,
    PageTable,
    make_pte,
    pte_ppn,
)
from pagemap.kernel.errors import InvalidArgument, IOFailure, KernelBug, KernelError, OutOfMemory
from pagemap.kernel.mman import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)
from pagemap.kernel.page import PG_DIRTY, PG_UPTODATE, Page, PageAllocator
from pagemap.kernel.pagemap import PageMap, vmr_idx_to_va, vmr_overlap
from pagemap.kernel.radix import RADIX_MAX_INDEX
from pagemap.sync.atomic import AtomicWord, StatCounter
from pagemap.sync.core import WRITE
from pagemap.sync.executor import Executor

PGMASK = PGSIZE - 1
# Lowest address mmap hands out or accepts (Linux's default mmap_min_addr).
USER_MIN = 0x10000
# Where mmap starts looking for room when not told where to map.
MMAP_BASE = 0x1000_0000
# One past the highest user address (47-bit user space, as on x86-64).
USER_TOP = 1 << 47

PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC


# -- errors ------------------------------------------------------------------------


class SegmentationFault(KernelError):
    """An access Linux answers with SIGSEGV: nothing mapped there (EFAULT),
    or a mapping that forbids it (EPERM)."""

    default_errno = errno.EFAULT
    signal = "SIGSEGV"


class BusError(KernelError):
    """An access Linux answers with SIGBUS: a file page at or past the end of
    the file."""

    default_errno = errno.EFAULT
    signal = "SIGBUS"


class AccessDenied(KernelError):
    """The file's open mode does not allow the mapping asked for (EACCES)."""

    default_errno = errno.EACCES


class NotMapped(KernelError):
    """Part of an address range has no mapping, or no room is left (ENOMEM)."""

    default_errno = errno.ENOMEM


# -- what a mapped file must provide -------------------------------------------


class MappedFile(Protocol):
    """An open file as mmap needs it (kernel/vfs.py's File is one)."""

    @property
    def mapping(self) -> PageMap: ...

    @property
    def size(self) -> int: ...

    @property
    def readable(self) -> bool: ...

    @property
    def writable(self) -> bool: ...


def page_round_up(n: int) -> int:
    return (n + PGMASK) & ~PGMASK


def prot_allows(prot: int, write: bool) -> bool:
    """Whether `prot` lets a load (or store) through.  As on x86, anything
    but PROT_NONE can be read."""
    return bool(prot & PROT_WRITE) if write else bool(prot & PROT_ALL)


def pte_allows(pte: int, write: bool) -> bool:
    return bool(pte & PTE_P) and (not write or bool(pte & PTE_W))


def describe_prot(prot: int) -> str:
    if not prot & PROT_ALL:
        return "PROT_NONE"
    names = ((PROT_READ, "READ"), (PROT_WRITE, "WRITE"), (PROT_EXEC, "EXEC"))
    return "PROT_" + "|".join(n for bit, n in names if prot & bit)


# -- VMRs ------------------------------------------------------------------------


class VMR:
    """struct vm_region: [base, end) of `proc`, mapping `file` from `foff`
    (or anonymous memory).  Immutable once made; see the module docstring."""

    __slots__ = ("base", "end", "file", "flags", "foff", "proc", "prot")

    def __init__(
        self,
        proc: Proc,
        base: int,
        end: int,
        prot: int,
        flags: int,
        file: MappedFile | None,
        foff: int,
    ) -> None:
        self.proc = proc
        self.base = base
        self.end = end
        self.prot = prot
        self.flags = flags
        self.file = file
        self.foff = foff

    @property
    def mapping(self) -> PageMap | None:
        return self.file.mapping if self.file is not None else None

    @property
    def shared(self) -> bool:
        return bool(self.flags & MAP_SHARED)

    def index_of(self, va: int) -> int:
        """The file page that `va` maps."""
        return (self.foff + (va - self.base)) >> PGSHIFT

    def slice(self, lo: int, hi: int, prot: int | None = None) -> VMR:
        """A new VMR for [lo, hi) of this one, optionally with another prot."""
        return VMR(
            self.proc,
            lo,
            hi,
            self.prot if prot is None else prot,
            self.flags,
            self.file,
            self.foff + (lo - self.base),
        )

    def mergeable(self, nxt: VMR) -> bool:
        """Whether `nxt`, which starts where this ends, can join it."""
        return (
            self.end == nxt.base
            and self.prot == nxt.prot
            and self.flags == nxt.flags
            and self.file is nxt.file
            and (self.file is None or self.foff + (self.end - self.base) == nxt.foff)
        )

    def __repr__(self) -> str:
        what = "anon" if self.file is None else f"{self.mapping!r}+{self.foff:#x}"
        return (
            f"VMR(p{self.proc.pid} {self.base:#x}-{self.end:#x} {describe_prot(self.prot)} "
            f"flags={self.flags:#x} {what})"
        )


# -- processes -----------------------------------------------------------------


class Proc:
    """A process's address space.  Made by Machine.process()."""

    def __init__(
        self,
        pid: int,
        executor: Executor,
        allocator: PageAllocator,
        mmu: MMU,
        current_core: Callable[[], int],
    ) -> None:
        self.pid = pid
        self.executor = executor
        self.allocator = allocator
        self.mmu = mmu
        self.current_core = current_core
        self.vmr_lock = executor.spinlock(f"p{pid}.vmr_lock")
        self.pte_lock = executor.spinlock(f"p{pid}.pte_lock")
        self.page_table = PageTable(executor, pid, self)
        self.vmrs: list[VMR] = []  # sorted by base, never overlapping
        # vpn -> the anonymous page (zero-fill or private copy) this process owns there.
        self.anon: dict[int, Page] = {}
        # Every fault the handler saw, and those that waited for a page to be
        # read in; the rest are minor (cached pages, zero fill, spurious).
        self.faults = StatCounter()
        self.major_faults = StatCounter()

    def __repr__(self) -> str:
        return f"Proc({self.pid}, {len(self.vmrs)} VMRs, {len(self.anon)} anonymous pages)"

    # -- what the page map's removal code needs (AddressSpace) -----------------------
    def ptes(self, va_lo: int, va_hi: int) -> list[AtomicWord]:
        """The PTE words that exist for pages in [va_lo, va_hi); words that
        were never used are skipped, words now 0 are not.  pte_lock held."""
        vpn_hi = (va_hi + PGMASK) >> PGSHIFT
        return [w for _, w in self.page_table.ptes(va_lo >> PGSHIFT, vpn_hi)]

    def tlb_shootdown(self) -> None:
        self.mmu.shootdown(self.pid)

    # -- user memory ------------------------------------------------------------
    def load(self, addr: int, n: int) -> bytes:
        """`n` bytes at `addr`, as a user load on the current task's core."""
        if n < 0:
            raise InvalidArgument(f"p{self.pid}: load of {n} bytes: the length may not be negative")
        if n == 0:
            return b""  # touches nothing, so cannot fault
        core = self.current_core()
        if (addr & PGMASK) + n <= PGSIZE:
            return self._load_in_page(core, addr, n)
        out = []
        va, end = addr, addr + n
        while va < end:
            chunk = min(end, (va | PGMASK) + 1) - va
            out.append(self._load_in_page(core, va, chunk))
            va += chunk
        return b"".join(out)

    def store(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write `data` at `addr`, as a user store on the current task's core.

        Pages are written in order; a fault on a later page leaves the earlier
        ones written, as a memcpy interrupted by a signal would.
        """
        src = bytes(data)
        core = self.current_core()
        va, end = addr, addr + len(src)
        while va < end:
            chunk = min(end, (va | PGMASK) + 1) - va
            self._store_in_page(core, va, src[va - addr : va - addr + chunk])
            va += chunk

    def _load_in_page(self, core: int, va: int, n: int) -> bytes:
        self._check_user_address(va, False)
        while True:
            try:
                return self.mmu.load(core, self.page_table, va, n)
            except PageFault as fault:
                self.handle_page_fault(fault.va, fault.write)

    def _store_in_page(self, core: int, va: int, data: bytes) -> None:
        self._check_user_address(va, True)
        while True:
            try:
                self.mmu.store(core, self.page_table, va, data)
                return
            except PageFault as fault:
                self.handle_page_fault(fault.va, fault.write)

    def _check_user_address(self, va: int, write: bool) -> None:
        if not 0 <= va < USER_TOP:
            raise SegmentationFault(
                f"SIGSEGV: {'store to' if write else 'load from'} {va:#x}, which is not a "
                f"user address (0..{USER_TOP:#x})",
                errno=errno.EFAULT,
            )

    # -- page faults -------------------------------------------------------------
    def handle_page_fault(self, va: int, write: bool) -> None:
        """Make the access at `va` possible, or raise what Linux would signal.

        No VMR: SegmentationFault (EFAULT).  A VMR that forbids the access:
        SegmentationFault (EPERM).  A file page at or past the end of file:
        BusError.  Otherwise the page is installed and the caller retries;
        a fault that finds the work already done (another core won) returns.
        """
        self.faults.add(1)
        vpn = va >> PGSHIFT
        with self.vmr_lock:
            vmr = self._checked_vmr(va, write)
            word = self.page_table.lookup(vpn)
            if word is not None and pte_allows(word.load(), write):
                return  # a spurious fault: another core installed it first
            owned = self.anon.get(vpn)
        if vmr.file is None:
            self._fault_anonymous(vmr, va, owned)
        elif owned is not None:
            # Our private copy, mapped read-only by mprotect or zapped by PROT_NONE.
            self._check_eof(vmr, va, write)
            self._install(vmr, va, owned, write, owned=True)
        else:
            self._fault_file(vmr, va, write)

    def _checked_vmr(self, va: int, write: bool) -> VMR:
        """The VMR at `va` if it allows the access; vmr_lock held."""
        vmr = self._find_vmr(va)
        op = "store to" if write else "load from"
        if vmr is None:
            raise SegmentationFault(
                f"SIGSEGV: p{self.pid} {op} {va:#x}: nothing is mapped there", errno=errno.EFAULT
            )
        if not prot_allows(vmr.prot, write):
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
        index = vmr.index_of(va)
        page = mapping.find_page(index)
        if page is None or not page.flags.load() & PG_UPTODATE:
            # Not cached, or still being read by another loader: a major fault.
            if page is not None:
                mapping.put_page(page)
            self.major_faults.add(1)
            page = mapping.load_page(index)
        try:
            # The file may have shrunk while we slept in load_page: truncate
            # stores the size before it drops pages, and waits for our slot
            # reference to go, so checking again here (and installing before
            # put_page) leaves it no PTE to miss (test_mm_truncate).
            self._check_eof(vmr, va, write)
            if write and not vmr.shared:
                copy = self._zeroed_page(fill=page)
                if not self._install(vmr, va, copy, True, owned=True):
                    self.allocator.decref(copy)
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
        """
        vpn = va >> PGSHIFT
        with self.vmr_lock:
            if self._find_vmr(va) is not vmr:
                return False
            writable = bool(vmr.prot & PROT_WRITE) and (vmr.shared or owned or vmr.file is None)
            bits = PTE_P | PTE_U | (PTE_W if writable else 0)
            with self.pte_lock:
                mine = self.anon.get(vpn)
                if mine is not None and mine is not page:
                    # Another fault gave this page its private copy since we
                    # looked; never cover it with the file's page or a second copy.
                    return False
                if owned:
                    self.anon[vpn] = page
                word = self.page_table.pte(vpn)
                while True:
                    old = word.load()
                    if pte_allows(old, write) and pte_ppn(old) == page.ppn:
                        # Another core's fault installed it since we looked, and
                        # its store may have set D since: rewriting the PTE would
                        # lose that bit ("a fault overwrites a PTE another fault
                        # installed", tests/test_mm_mutants.py).
                        return True
                    same = pte_ppn(old) == page.ppn
                    if old & PTE_D and not same:
                        raise KernelBug(
                            f"p{self.pid}: PTE at {va:#x} still holds the dirty bit of frame "
                            f"{pte_ppn(old)} while frame {page.ppn} is installed there"
                        )
                    # Keep any D, in the same CAS.  Removal's first pass leaves
                    # D in a PTE it makes not present, but it holds pm.lock until
                    # its third pass zeroes that PTE, and load_page takes pm.lock
                    # first, so no fault meets such a PTE today; were that ever to
                    # change, the bit must survive.
                    if word.cas(old, make_pte(page.ppn, bits) | (old & PTE_D)):
                        break
                if old & PTE_P and not same:
                    # A private copy replaces the file's page: TLBs must forget
                    # the old frame before removal could free it unseen.
                    self.tlb_shootdown()
        return True

    # -- mmap ----------------------------------------------------------------------
    def mmap(
        self,
        length: int,
        prot: int,
        flags: int,
        file: MappedFile | None = None,
        offset: int = 0,
        addr: int | None = None,
    ) -> int:
        """Map `length` bytes and return the address, as Linux's mmap(2).

        MAP_SHARED or MAP_PRIVATE (exactly one); MAP_ANONYMOUS ignores `file`
        and `offset`, as Linux ignores the fd; MAP_FIXED maps exactly at
        `addr`, replacing what was there; otherwise `addr` is a hint.
        MAP_LOCKED faults every page in now (up to the end of the file) and
        keeps them from removal.  Unlike Linux, MAP_SHARED|MAP_PRIVATE (which
        Linux reads as MAP_SHARED_VALIDATE for a file) is always EINVAL.
        """
        length = self._check_mmap(length, prot, flags, file, offset, addr)
        prot &= PROT_ALL  # as Linux's mmap (not its mprotect), unknown bits are ignored
        if flags & MAP_ANONYMOUS:
            file, offset = None, 0
        with self.vmr_lock:
            base = self._place(addr, length, flags)
            if flags & MAP_FIXED:
                self._unmap_locked(base, base + length)
            vmr = VMR(self, base, base + length, prot, flags, file, offset)
            self._register(vmr)
            self._insert_vmr(vmr)
            self._merge_around(base, base + length)
        if flags & MAP_LOCKED:
            self._populate(base, base + length, prot, flags)
        return base

    def _check_mmap(
        self,
        length: int,
        prot: int,
        flags: int,
        file: MappedFile | None,
        offset: int,
        addr: int | None,
    ) -> int:
        """Validate as Linux does, in its order (the offset, the fd, the
        length, the address, then the mapping type and the file's mode);
        the length rounded up to whole pages."""
        anonymous = bool(flags & MAP_ANONYMOUS)
        if offset < 0 or offset & PGMASK:
            raise InvalidArgument(f"mmap: offset {offset} is not a page-aligned file offset")
        if not anonymous and file is None:
            raise KernelError("mmap: no file given and not MAP_ANONYMOUS", errno=errno.EBADF)
        if length <= 0:
            raise InvalidArgument(f"mmap: length {length} must be positive")
        rounded = page_round_up(length)
        if rounded > USER_TOP:
            raise NotMapped(f"mmap: length {length} is larger than the address space")
        if not anonymous and (offset + rounded - 1) >> PGSHIFT > RADIX_MAX_INDEX:
            raise KernelError(
                f"mmap: offset {offset} plus length {length} passes the largest file page",
                errno=errno.EOVERFLOW,
            )
        if flags & MAP_FIXED and (addr is None or addr & PGMASK):
            raise InvalidArgument(f"mmap: MAP_FIXED address {addr} is not page aligned")
        if flags & (MAP_SHARED | MAP_PRIVATE) not in (MAP_SHARED, MAP_PRIVATE):
            raise InvalidArgument(
                f"mmap: flags {flags:#x} must have exactly one of MAP_SHARED and MAP_PRIVATE"
            )
        if anonymous:
            return rounded
        assert file is not None
        if flags & MAP_SHARED and prot & PROT_WRITE and not file.writable:
            raise AccessDenied(
                "mmap: PROT_WRITE on a MAP_SHARED mapping of a file not open for writing"
            )
        if not file.readable:
            raise AccessDenied("mmap: the file is not open for reading")
        return rounded

    def _place(self, addr: int | None, length: int, flags: int) -> int:
        """Where to map; vmr_lock held."""
        if flags & MAP_FIXED:
            assert addr is not None
            if addr < USER_MIN:
                raise KernelError(
                    f"mmap: MAP_FIXED address {addr:#x} is below the lowest user address "
                    f"{USER_MIN:#x}",
                    errno=errno.EPERM,
                )
            if addr + length > USER_TOP:
                raise NotMapped(f"mmap: {addr:#x}+{length:#x} passes the top of user space")
            return addr
        if addr is not None:
            hint = max(addr & ~PGMASK, USER_MIN)
            if hint + length <= USER_TOP and self._is_free(hint, hint + length):
                return hint
        return self._find_room(length)

    def _is_free(self, lo: int, hi: int) -> bool:
        return all(v.end <= lo or v.base >= hi for v in self.vmrs)

    def _find_room(self, length: int) -> int:
        """The lowest gap of `length` bytes at or above MMAP_BASE."""
        base = MMAP_BASE
        for v in self.vmrs:
            if v.end <= base:
                continue
            if v.base >= base + length:
                break
            base = v.end
        if base + length > USER_TOP:
            raise NotMapped(f"mmap: no room for {length:#x} bytes in the address space")
        return base

    def _populate(self, lo: int, hi: int, prot: int, flags: int) -> None:
        """Fault in [lo, hi) as MAP_LOCKED does: up to the end of the file;
        private writable pages get their copies now.  As on Linux, a page that
        cannot be populated (no memory, a read error) is left to fault later."""
        write = bool(prot & PROT_WRITE) and bool(flags & MAP_PRIVATE)
        if not prot & PROT_ALL:
            return
        for va in range(lo, hi, PGSIZE):
            try:
                self.handle_page_fault(va, write)
            except (BusError, SegmentationFault):
                return  # the end of the file, or someone unmapped it meanwhile
            except (OutOfMemory, IOFailure):
                continue

    # -- munmap --------------------------------------------------------------------
    def munmap(self, addr: int, length: int) -> None:
        """Unmap [addr, addr + length), as Linux's munmap(2); a range with
        nothing mapped is fine."""
        lo, hi = self._check_range("munmap", addr, length)
        if lo == hi:
            raise InvalidArgument("munmap: length 0")
        with self.vmr_lock:
            self._unmap_locked(lo, hi)

    def exit(self) -> None:
        """Unmap everything: the process is gone."""
        with self.vmr_lock:
            self._unmap_locked(0, USER_TOP)

    def _check_range(self, op: str, addr: int, length: int) -> tuple[int, int]:
        if addr & PGMASK or addr < 0:
            raise InvalidArgument(f"{op}: address {addr:#x} is not page aligned")
        if length < 0:
            raise InvalidArgument(f"{op}: length {length} is negative")
        hi = addr + page_round_up(length)
        if hi > USER_TOP:
            raise InvalidArgument(f"{op}: {addr:#x}+{length:#x} passes the top of user space")
        return addr, hi

    def _unmap_locked(self, lo: int, hi: int) -> None:
        """Take [lo, hi) out of the address space; vmr_lock held."""
        victims = [v for v in self.vmrs if v.base < hi and v.end > lo]
        if not victims:
            return
        keep = [p for v in victims for p in self._outside(v, lo, hi)]
        for piece in keep:
            self._register(piece)
        self.vmrs = sorted([v for v in self.vmrs if not self._among(v, victims)] + keep, key=_base)
        freed = self._zap(lo, hi, free_owned=True)
        # Only now may the victims leave their maps: until every PTE they had
        # is zero, removal must still find them.
        for v in victims:
            self._unregister(v)
        for page in freed:
            self.allocator.decref(page)

    @staticmethod
    def _outside(v: VMR, lo: int, hi: int) -> list[VMR]:
        parts = []
        if v.base < lo:
            parts.append(v.slice(v.base, lo))
        if v.end > hi:
            parts.append(v.slice(hi, v.end))
        return parts

    @staticmethod
    def _among(v: VMR, group: list[VMR]) -> bool:
        return any(v is g for g in group)

    def _zap(self, lo: int, hi: int, free_owned: bool) -> list[Page]:
        """Zero every PTE in [lo, hi), shoot down, and pass D bits to PG_DIRTY;
        with `free_owned`, hand back our anonymous pages there to be freed
        (after this shootdown, nobody can reach them)."""
        vpn_lo, vpn_hi = lo >> PGSHIFT, hi >> PGSHIFT
        with self.pte_lock:
            dirty: list[Page] = []
            cleared = 0
            for vpn, word in self.page_table.ptes(vpn_lo, vpn_hi):
                old = word.swap(0)
                if not old:
                    continue
                cleared += 1
                if old & PTE_D:
                    page = self.allocator.pages[pte_ppn(old)]
                    if page is not self.anon.get(vpn):
                        dirty.append(page)
            freed = self._drop_owned(vpn_lo, vpn_hi) if free_owned else []
            if cleared or freed:
                self._settle_dirty(dirty)
        return freed

    def _settle_dirty(self, dirty: list[Page]) -> None:
        """Shoot down, then mark `dirty` PG_DIRTY; pte_lock held.

        After the shootdown, not before: a store through a TLB entry that
        still has D cached lands in the frame up to the shootdown, and a
        writeback (fsync) that cleaned the page in between must not be the
        last word on it.  The pages cannot be freed meanwhile: removal zeroes
        PTEs under pte_lock before it frees, and our VMR is still registered.
        """
        self.tlb_shootdown()
        for page in dirty:
            page.flags.fetch_or(PG_DIRTY)

    def _drop_copies(self, lo: int, hi: int) -> None:
        """Unmap and free our anonymous pages in [lo, hi) (see drop_private_copies)."""
        vpn_lo, vpn_hi = lo >> PGSHIFT, hi >> PGSHIFT
        with self.vmr_lock, self.pte_lock:
            vpns = self._owned_vpns(vpn_lo, vpn_hi)
            for vpn in vpns:
                word = self.page_table.lookup(vpn)
                if word is not None:
                    word.swap(0)  # an anonymous page: no D bit anyone needs
            copies = [self.anon.pop(v) for v in vpns]
            if copies:
                self.tlb_shootdown()
        for page in copies:
            self.allocator.decref(page)

    def _owned_vpns(self, vpn_lo: int, vpn_hi: int) -> list[int]:
        if vpn_hi - vpn_lo <= len(self.anon):
            return [v for v in range(vpn_lo, vpn_hi) if v in self.anon]
        return sorted(v for v in self.anon if vpn_lo <= v < vpn_hi)

    def _drop_owned(self, vpn_lo: int, vpn_hi: int) -> list[Page]:
        return [self.anon.pop(v) for v in self._owned_vpns(vpn_lo, vpn_hi)]

    # -- mprotect ------------------------------------------------------------------
    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """Change the protection of [addr, addr + length), as Linux's
        mprotect(2): ENOMEM if part of the range is unmapped, EACCES for
        PROT_WRITE on a shared mapping of a file not open for writing; as on
        Linux, regions before the offending one keep their new protection."""
        if prot & ~PROT_ALL:
            raise InvalidArgument(f"mprotect: unknown protection bits {prot & ~PROT_ALL:#x}")
        if addr & PGMASK or addr < 0:
            raise InvalidArgument(f"mprotect: address {addr:#x} is not page aligned")
        if length < 0:
            raise InvalidArgument(f"mprotect: length {length} is negative")
        lo, hi = addr, addr + page_round_up(length)
        if lo == hi:
            return
        with self.vmr_lock:
            try:
                self._protect_locked(lo, hi, prot)
            finally:
                self._merge_around(lo, hi)

    def _protect_locked(self, lo: int, hi: int, prot: int) -> None:
        pos = lo
        while pos < hi:
            vmr = self._find_vmr(pos)
            if vmr is None:
                raise NotMapped(f"mprotect: nothing is mapped at {pos:#x}")
            if prot & PROT_WRITE and vmr.shared and vmr.file is not None and not vmr.file.writable:
                raise AccessDenied(
                    f"mprotect: PROT_WRITE on the shared mapping at {vmr.base:#x} of a file "
                    "not open for writing"
                )
            end = min(hi, vmr.end)
            if vmr.prot != prot:
                self._reprotect(vmr, pos, end, prot)
            pos = end

    def _reprotect(self, vmr: VMR, lo: int, hi: int, prot: int) -> None:
        """Give [lo, hi) of `vmr` protection `prot`; vmr_lock held."""
        pieces = [*self._outside(vmr, lo, hi), vmr.slice(lo, hi, prot)]
        for piece in pieces:
            self._register(piece)
        self.vmrs = sorted([v for v in self.vmrs if v is not vmr] + pieces, key=_base)
        lost = vmr.prot & ~prot
        if not prot & PROT_ALL:
            self._zap(lo, hi, free_owned=False)
        elif lost & PROT_WRITE:
            self._write_protect(lo, hi)
        self._unregister(vmr)

    def _write_protect(self, lo: int, hi: int) -> None:
        """Clear W (and D, into PG_DIRTY) on every PTE in [lo, hi)."""
        with self.pte_lock:
            dirty: list[Page] = []
            changed = 0
            for vpn, word in self.page_table.ptes(lo >> PGSHIFT, hi >> PGSHIFT):
                while True:
                    old = word.load()
                    if not old & (PTE_W | PTE_D):
                        break
                    if word.cas(old, old & ~(PTE_W | PTE_D)):
                        changed += 1
                        page = self.allocator.pages[pte_ppn(old)]
                        if old & PTE_D and page is not self.anon.get(vpn):
                            dirty.append(page)
                        break
            if changed:
                self._settle_dirty(dirty)

    # -- merging -------------------------------------------------------------------
    def _merge_around(self, lo: int, hi: int) -> None:
        """Join compatible neighbours touching [lo, hi); vmr_lock held."""
        i = 0
        while i + 1 < len(self.vmrs):
            a, b = self.vmrs[i], self.vmrs[i + 1]
            if a.end >= lo and b.base <= hi and a.mergeable(b):
                joined = a.slice(a.base, b.end)
                self._register(joined)
                self.vmrs[i : i + 2] = [joined]
                self._unregister(a)
                self._unregister(b)
                continue
            i += 1

    # -- msync -----------------------------------------------------------------------
    def msync(self, addr: int, length: int) -> None:
        """Write back the dirty file pages of the shared mappings in
        [addr, addr + length), evicting none (MS_SYNC).  ENOMEM, after the
        rest is written, if part of the range is unmapped, as on Linux."""
        if addr & PGMASK or addr < 0:
            raise InvalidArgument(f"msync: address {addr:#x} is not page aligned")
        if length < 0:
            raise InvalidArgument(f"msync: length {length} is negative")
        lo, hi = addr, addr + page_round_up(length)
        if lo == hi:
            return
        with self.vmr_lock:
            work, hole = self._harvest(lo, hi)
        first_error: OSError | None = None
        for mapping, first, count in work:
            try:
                mapping.writeback(first, count)
            except OSError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        if hole is not None:
            raise NotMapped(f"msync: nothing is mapped at {hole:#x}")

    def _harvest(self, lo: int, hi: int) -> tuple[list[tuple[PageMap, int, int]], int | None]:
        """Move D bits to PG_DIRTY in every shared file mapping in [lo, hi);
        the page ranges to write back, and the first unmapped address."""
        work: list[tuple[PageMap, int, int]] = []
        hole: int | None = None
        pos = lo
        for v in self.vmrs:
            if v.end <= lo or v.base >= hi:
                continue
            if v.base > pos and hole is None:
                hole = pos
            a, b = max(lo, v.base), min(hi, v.end)
            mapping = v.mapping
            if mapping is not None and v.shared:
                self._collect_dirty(a, b)
                work.append((mapping, v.index_of(a), (b - a) >> PGSHIFT))
            pos = b
        if pos < hi and hole is None:
            hole = pos
        return work, hole

    def _collect_dirty(self, lo: int, hi: int) -> None:
        with self.pte_lock:
            dirty: list[Page] = []
            for vpn, word in self.page_table.ptes(lo >> PGSHIFT, hi >> PGSHIFT):
                if not word.load() & PTE_D:
                    continue
                old = word.fetch_and(~PTE_D)
                page = self.allocator.pages[pte_ppn(old)]
                if old & PTE_D and page is not self.anon.get(vpn):
                    dirty.append(page)
            if dirty:
                self._settle_dirty(dirty)

    # -- the VMR list ------------------------------------------------------------------
    def _find_vmr(self, va: int) -> VMR | None:
        for v in self.vmrs:
            if v.base <= va < v.end:
                return v
            if v.base > va:
                return None
        return None

    def _insert_vmr(self, vmr: VMR) -> None:
        self.vmrs.append(vmr)
        self.vmrs.sort(key=_base)

    @staticmethod
    def _register(vmr: VMR) -> None:
        mapping = vmr.mapping
        if mapping is not None:
            mapping.add_vmr(vmr)

    @staticmethod
    def _unregister(vmr: VMR) -> None:
        mapping = vmr.mapping
        if mapping is not None:
            mapping.remove_vmr(vmr)

    # -- for oracles -------------------------------------------------------------------
    def check_quiescent(self) -> list[str]:
        """What is wrong with this address space when no task runs: a lock
        left held, or a PTE or TLB entry naming a free frame."""
        problems: list[str] = []
        if self.vmr_lock.held or self.pte_lock.held:
            problems.append(f"p{self.pid}: its VMR or page-table lock is still held")
        for vpn, _, ppn in self.mapped_ppns():
            if self.allocator.is_free(ppn):
                problems.append(
                    f"p{self.pid}: the PTE at {vpn << PGSHIFT:#x} names free frame {ppn}"
                )
        for core, vpn, ppn in self.mmu.cached_ppns(self.pid):
            if self.allocator.is_free(ppn):
                problems.append(
                    f"p{self.pid}: core {core}'s TLB maps {vpn << PGSHIFT:#x} to free frame {ppn}"
                )
        return problems

    def mapped_ppns(self) -> Iterator[tuple[int, int, int]]:
        """(vpn, pte, ppn) for every non-zero PTE; for oracles at quiescence."""
        for vpn, word in self.page_table.ptes(0, USER_TOP >> PGSHIFT):
            if word.value:
                yield vpn, word.value, pte_ppn(word.value)


def _base(v: VMR) -> int:
    return v.base


# -- what other kernel parts ask of mappings -----------------------------------------


def collect_mapped_dirty(mapping: PageMap, first: int, count: int) -> None:
    """Move the D bits of every shared mapping of pages [first, first + count)
    of `mapping` to PG_DIRTY, so that a writeback (fsync) sees stores made
    through mappings; msync does the same for one process's range."""
    with mapping.lock:
        for v in mapping.vmrs:
            span = vmr_overlap(v, first, first + count)
            proc = v.proc
            if span is None or not v.flags & MAP_SHARED or not isinstance(proc, Proc):
                continue
            a, b = span
            proc._collect_dirty(vmr_idx_to_va(v, a), vmr_idx_to_va(v, b - 1) + PGSIZE)


def drop_private_copies(mapping: PageMap, first: int) -> None:
    """Unmap and free the private copies of pages at or past `first` in every
    MAP_PRIVATE mapping of `mapping`, as Linux's truncate does: once the file
    ends before them, an access there is a bus error, copied or not."""
    with mapping.lock:
        regions = [
            (v.proc, vmr_idx_to_va(v, span[0]), vmr_idx_to_va(v, span[1] - 1) + PGSIZE)
            for v in mapping.vmrs
            if not v.flags & MAP_SHARED
            if (span := vmr_overlap(v, first, RADIX_MAX_INDEX + 1)) is not None
        ]
    for proc, lo, hi in regions:
        if isinstance(proc, Proc):
            proc._drop_copies(lo, hi)


__all__ = [
    "MMAP_BASE",
    "USER_MIN",
    "USER_TOP",
    "VMR",
    "AccessDenied",
    "BusError",
    "MappedFile",
    "NotMapped",
    "Proc",
    "SegmentationFault",
]
