"""The mapping calls: mmap, munmap, mprotect, msync, and exit.

Part of Proc (kernel/proc.py).  Rules: each call checks its arguments as
Linux does before it touches anything (_check_range for the calls that take
a range; _check_mmap, then _check_kind once it has room, for mmap's own),
then works under vmr_lock, following the rules of kernel/vmr.py (new VMRs
are registered before the old ones leave their page maps) and kernel/mm.py
(PTE bits are cleared, and their D bits settled, by MM._clear_ptes alone).
A call that fails part way leaves what Linux leaves: the regions it already
changed stay changed, every lock is released and every page it took is freed.

Before Linux's checks come the Python API's (kernel/owner.py): an argument
of the wrong type is TypeError, a file of another machine WrongMachine, a
closed file EBADF, and any call after exit() ESRCH.
"""

from __future__ import annotations

import errno

from pagemap.hw.memory import PGMASK, PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_D, PTE_W
from pagemap.kernel.errors import (
    AccessDenied,
    AlreadyExists,
    BusError,
    InvalidArgument,
    IOFailure,
    KernelError,
    NotMapped,
    OutOfMemory,
    SegmentationFault,
)
from pagemap.kernel.fault import FaultHandler
from pagemap.kernel.mm import MMAP_BASE, USER_MIN, USER_TOP
from pagemap.kernel.mman import (
    LEGACY_MAP_MASK,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_HUGETLB,
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_TYPE,
    PROT_ALL,
    PROT_WRITE,
)
from pagemap.kernel.owner import as_int, check_alive, check_machine, check_open, check_type
from pagemap.kernel.radix import RADIX_MAX_INDEX
from pagemap.kernel.vfs import File
from pagemap.kernel.vmr import (
    VMR,
    MappedFile,
    among,
    find_vmr,
    insert_vmr,
    is_free,
    merge_around,
    overlapping,
    register,
    split_outside,
    unregister,
    vmr_base,
)

# Linux's addresses and lengths are unsigned longs: an end at or past this wraps.
ADDRESS_WRAP = 1 << 64


def page_round_up(n: int) -> int:
    return (n + PGMASK) & ~PGMASK


class Mappings(FaultHandler):
    """mmap(2) and friends, on this address space."""

    def _check_range(self, op: str, addr: int, length: int) -> tuple[int, int]:
        """[addr, addr + length) rounded out to whole pages, for the calls
        that take a range: EINVAL for an address that is negative or not page
        aligned, or a negative length."""
        check_alive(self.exited, op, self.pid)
        addr, length = as_int(addr, op, "the address"), as_int(length, op, "the length")
        if addr & PGMASK or addr < 0:
            raise InvalidArgument(f"{op}: address {addr:#x} is not page aligned")
        if length < 0:
            raise InvalidArgument(f"{op}: length {length} is negative")
        return addr, addr + page_round_up(length)

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

        MAP_SHARED or MAP_PRIVATE (for a file, both together are
        MAP_SHARED_VALIDATE: MAP_SHARED that refuses, EOPNOTSUPP, the flags
        it does not know); MAP_ANONYMOUS ignores `file` and `offset`, as
        Linux ignores the fd; MAP_FIXED maps exactly at `addr`, replacing
        what was there, MAP_FIXED_NOREPLACE likewise but EEXIST over a
        mapping; otherwise `addr` is a hint.  MAP_LOCKED faults every page in
        now (up to the end of the file) and keeps them from removal.  Other
        flags are ignored, but as on Linux MAP_HUGETLB and MAP_GROWSDOWN of a
        regular file are EINVAL.
        """
        check_alive(self.exited, "mmap", self.pid)
        length, prot, flags, offset = (
            as_int(length, "mmap", "the length"),
            as_int(prot, "mmap", "prot"),
            as_int(flags, "mmap", "flags"),
            as_int(offset, "mmap", "the offset"),
        )
        addr = None if addr is None else as_int(addr, "mmap", "the address")
        if file is not None:
            check_type(file, File, "mmap", "the file")
        length = self._check_mmap(length, flags, file, offset, addr)
        prot &= PROT_ALL  # as Linux's mmap (not its mprotect), unknown bits are ignored
        if flags & MAP_ANONYMOUS:
            file, offset = None, 0
        with self.vmr_lock:
            # Linux finds the address (EPERM, ENOMEM, EEXIST) before it looks
            # at the mapping type and the file's mode.
            base = self._place(addr, length, flags)
            flags = self._check_kind(prot, flags, file)
            if flags & MAP_FIXED:
                self._unmap_locked(base, base + length)
            vmr = VMR(self, base, base + length, prot, flags, file, offset)
            register(vmr)
            insert_vmr(self.vmrs, vmr)
            merge_around(self.vmrs, base, base + length)
        if flags & MAP_LOCKED:
            self._populate(base, base + length, prot, flags)
        return base

    def _check_mmap(
        self,
        length: int,
        flags: int,
        file: MappedFile | None,
        offset: int,
        addr: int | None,
    ) -> int:
        """Validate as Linux does before it looks for room, in its order (the
        offset, the fd and MAP_HUGETLB of it, the length, the address); the
        length rounded up to whole pages."""
        anonymous = bool(flags & MAP_ANONYMOUS)
        if offset < 0 or offset & PGMASK:
            raise InvalidArgument(f"mmap: offset {offset} is not a page-aligned file offset")
        if not anonymous:
            self._check_file(file)
            if flags & MAP_HUGETLB:
                raise InvalidArgument("mmap: MAP_HUGETLB of a file not on hugetlbfs")
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
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) and (addr is None or addr & PGMASK):
            raise InvalidArgument(f"mmap: MAP_FIXED address {addr} is not page aligned")
        return rounded

    def _check_kind(self, prot: int, flags: int, file: MappedFile | None) -> int:
        """Check the mapping type and the file's mode as Linux's do_mmap does
        once it has found room (`file` None: anonymous); the flags the VMR
        keeps, MAP_SHARED_VALIDATE become MAP_SHARED.  Nothing is changed yet."""
        kind = flags & MAP_TYPE
        if file is None:
            if kind not in (MAP_SHARED, MAP_PRIVATE):
                raise InvalidArgument(
                    f"mmap: flags {flags:#x} must have exactly one of MAP_SHARED and "
                    "MAP_PRIVATE for anonymous memory"
                )
            if kind == MAP_SHARED and flags & MAP_GROWSDOWN:
                raise InvalidArgument("mmap: shared anonymous memory cannot be MAP_GROWSDOWN")
            return flags
        if kind not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
            raise InvalidArgument(
                f"mmap: flags {flags:#x} must have exactly one of MAP_SHARED and MAP_PRIVATE, "
                "or both (MAP_SHARED_VALIDATE), and no other mapping type bits"
            )
        if kind == MAP_SHARED_VALIDATE and flags & ~LEGACY_MAP_MASK:
            raise KernelError(
                f"mmap: MAP_SHARED_VALIDATE with flags {flags & ~LEGACY_MAP_MASK:#x} that "
                "this file does not support",
                errno=errno.EOPNOTSUPP,
            )
        if kind != MAP_PRIVATE and prot & PROT_WRITE and not file.writable:
            raise AccessDenied(
                "mmap: PROT_WRITE on a MAP_SHARED mapping of a file not open for writing"
            )
        if not file.readable:
            raise AccessDenied("mmap: the file is not open for reading")
        if flags & MAP_GROWSDOWN:
            raise InvalidArgument("mmap: a mapping of a file cannot be MAP_GROWSDOWN")
        return flags & ~MAP_TYPE | (MAP_PRIVATE if kind == MAP_PRIVATE else MAP_SHARED)

    def _check_file(self, file: MappedFile | None) -> None:
        """EBADF for no file or a closed one, WrongMachine for another machine's."""
        if file is None:
            raise KernelError("mmap: no file given and not MAP_ANONYMOUS", errno=errno.EBADF)
        assert isinstance(file, File)
        check_open(file.closed, "mmap", f"the file {file.path}")
        check_open(file.inode.released, "mmap", f"the machine of {file.path}")
        check_machine(file.mapping.allocator, self.allocator, "mmap", f"the file {file.path}")

    def _place(self, addr: int | None, length: int, flags: int) -> int:
        """Where to map; vmr_lock held."""
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            assert addr is not None
            if addr < USER_MIN:
                raise KernelError(
                    f"mmap: MAP_FIXED address {addr:#x} is below the lowest user address "
                    f"{USER_MIN:#x}",
                    errno=errno.EPERM,
                )
            if addr + length > USER_TOP:
                raise NotMapped(f"mmap: {addr:#x}+{length:#x} passes the top of user space")
            if flags & MAP_FIXED_NOREPLACE and not is_free(self.vmrs, addr, addr + length):
                raise AlreadyExists(
                    f"mmap: MAP_FIXED_NOREPLACE at {addr:#x}+{length:#x}, where something is mapped"
                )
            return addr
        if addr is not None:
            hint = max(addr & ~PGMASK, USER_MIN)
            if hint + length <= USER_TOP and is_free(self.vmrs, hint, hint + length):
                return hint
        return self._find_room(length)

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

    # -- munmap and exit ---------------------------------------------------------------
    def munmap(self, addr: int, length: int) -> None:
        """Unmap [addr, addr + length), as Linux's munmap(2); a range with
        nothing mapped is fine."""
        lo, hi = self._check_range("munmap", addr, length)
        if hi > USER_TOP:
            raise InvalidArgument(f"munmap: {addr:#x}+{length:#x} passes the top of user space")
        if lo == hi:
            raise InvalidArgument("munmap: length 0")
        with self.vmr_lock:
            self._unmap_locked(lo, hi)

    def exit(self) -> None:
        """Unmap everything: the process is gone, and every later call of it
        answers ESRCH.  Exiting twice is harmless."""
        with self.vmr_lock:
            self._unmap_locked(0, USER_TOP)
        self.exited = True

    def _unmap_locked(self, lo: int, hi: int) -> None:
        """Take [lo, hi) out of the address space; vmr_lock held."""
        victims = overlapping(self.vmrs, lo, hi)
        if not victims:
            return
        keep = [p for v in victims for p in split_outside(v, lo, hi)]
        for piece in keep:
            register(piece)
        self.vmrs = sorted([v for v in self.vmrs if not among(v, victims)] + keep, key=vmr_base)
        freed = self._zap(lo, hi, free_owned=True)
        # Only now may the victims leave their maps: until every PTE they had
        # is zero, removal must still find them (munmap-remove; "munmap leaves
        # the page map before zeroing PTEs" in tests/check/test_mm_mutants.py).
        for v in victims:
            unregister(v)
        for page in freed:
            self.allocator.decref(page)

    # -- mprotect ------------------------------------------------------------------
    def mprotect(self, addr: int, length: int, prot: int) -> None:
        """Change the protection of [addr, addr + length), as Linux's
        mprotect(2): ENOMEM if part of the range is unmapped, EACCES for
        PROT_WRITE on a shared mapping of a file not open for writing; as on
        Linux, regions before the offending one keep their new protection.
        A range whose end wraps past 2**64 is ENOMEM before anything changes.
        A private MAP_LOCKED region made writable gets its private copies
        now, as MAP_LOCKED gives them at mmap."""
        check_alive(self.exited, "mprotect", self.pid)
        prot = as_int(prot, "mprotect", "prot")
        if prot & ~PROT_ALL:
            raise InvalidArgument(f"mprotect: unknown protection bits {prot & ~PROT_ALL:#x}")
        lo, hi = self._check_range("mprotect", addr, length)
        if lo == hi:
            return
        if hi >= ADDRESS_WRAP:
            # Linux's end <= start, checked before any region is looked at:
            # nothing changes (a length whose round up is 2**64 wraps to 0,
            # so its end is its start, and counts here too).
            raise NotMapped(f"mprotect: {addr:#x}+{length:#x} wraps past 2**64")
        populate: list[tuple[int, int]] = []
        try:
            with self.vmr_lock:
                try:
                    self._protect_locked(lo, hi, prot, populate)
                finally:
                    merge_around(self.vmrs, lo, hi)
        finally:
            # Outside vmr_lock, which a fault takes (and may sleep reading the
            # page in); what changed before a failure is populated too, as
            # Linux populates each region as it changes it.
            for a, b in populate:
                self._populate(a, b, prot, MAP_PRIVATE)

    def _protect_locked(self, lo: int, hi: int, prot: int, populate: list[tuple[int, int]]) -> None:
        """Change the regions in [lo, hi) one by one; vmr_lock held.  Adds to
        `populate` the ranges of private MAP_LOCKED regions made writable:
        Linux's mprotect_fixup populates them for writing there and then, so
        that their pages get their private copies now (a locked region takes
        no copy-on-write fault later) and a later change to the file is no
        longer seen through them."""
        pos = lo
        while pos < hi:
            vmr = find_vmr(self.vmrs, pos)
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
                if vmr.flags & MAP_LOCKED and not vmr.shared and prot & ~vmr.prot & PROT_WRITE:
                    populate.append((pos, end))
            pos = end

    def _reprotect(self, vmr: VMR, lo: int, hi: int, prot: int) -> None:
        """Give [lo, hi) of `vmr` protection `prot`; vmr_lock held."""
        pieces = [*split_outside(vmr, lo, hi), vmr.slice(lo, hi, prot)]
        for piece in pieces:
            register(piece)
        self.vmrs = sorted([v for v in self.vmrs if v is not vmr] + pieces, key=vmr_base)
        if not prot & PROT_ALL:
            self._zap(lo, hi, free_owned=False)
        elif vmr.prot & ~prot & PROT_WRITE:
            self._clear_ptes(lo, hi, PTE_W | PTE_D)  # later stores fault, and set D afresh
        else:
            self._modify_ptes(lo, hi)  # Linux's change_pte_range, for a change that keeps W
        unregister(vmr)

    # -- msync -----------------------------------------------------------------------
    def msync(self, addr: int, length: int) -> None:
        """Write back the dirty file pages of the shared mappings in
        [addr, addr + length), evicting none, and make them durable (MS_SYNC:
        Linux's vfs_fsync_range, here the file's sync_backing, a host fsync).
        ENOMEM, after the rest is written, if part of the range is unmapped,
        as on Linux."""
        lo, hi = self._check_range("msync", addr, length)
        if lo == hi or hi - lo == ADDRESS_WRAP:
            return  # Linux rounds the length up in an unsigned long: 2**64 is 0
        if hi >= ADDRESS_WRAP:
            raise NotMapped(f"msync: {addr:#x}+{length:#x} wraps past 2**64")  # end < start
        with self.vmr_lock:
            work, hole = self._harvest(lo, hi)
        first_error: OSError | None = None
        for file, ranges in work:
            try:
                for first, count in ranges:
                    file.mapping.writeback(first, count)
                # Only once the pages are written: what the backing store makes
                # durable must include them (a file whose writeback failed is
                # not synced, as vfs_fsync_range returns that error first).
                file.sync_backing()
            except OSError as exc:
                file.advance_wb_err()  # told, as fsync is (kernel/errseq.py)
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        if hole is not None:
            raise NotMapped(f"msync: nothing is mapped at {hole:#x}")

    def _harvest(
        self, lo: int, hi: int
    ) -> tuple[list[tuple[MappedFile, list[tuple[int, int]]]], int | None]:
        """Move D bits to PG_DIRTY in every shared file mapping in [lo, hi);
        each file with its page ranges to write back (a file once, so it is
        synced once), and the first unmapped address."""
        work: list[tuple[MappedFile, list[tuple[int, int]]]] = []
        hole: int | None = None
        pos = lo
        for v in overlapping(self.vmrs, lo, hi):
            if v.base > pos and hole is None:
                hole = pos
            a, b = max(lo, v.base), min(hi, v.end)
            if v.file is not None and v.shared:
                self.collect_dirty(a, b)
                ranges = next((r for f, r in work if f is v.file), None)
                if ranges is None:
                    ranges = []
                    work.append((v.file, ranges))
                ranges.append((v.index_of(a), (b - a) >> PGSHIFT))
            pos = b
        if pos < hi and hole is None:
            hole = pos
        return work, hole
