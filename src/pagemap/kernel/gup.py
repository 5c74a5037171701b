"""The kernel's own access to a process's memory: get_user_pages, pins, and
access_remote_vm (what /proc/pid/mem and ptrace use), with FOLL_FORCE.

Part of Proc (kernel/proc.py).  The kernel walks the target's page table for
a page that allows the access (_follow, Linux's follow_page), faults it in if
there is none (handle_page_fault, with `force` letting a write into a
read-only private region take its copy there), takes a reference on it, and
reads or writes the frame through the kernel's own mapping, never through the
target's PTEs or TLBs.  A reference held past the call is a pin (Pin), which
keeps the frame from being freed: an anonymous page by its page reference, a
file page by a slot reference (PageMap.lookup), so removal passes it over.

Three published fixes live here, each on a switch of the Proc (check/
scenarios/known/cow.py turns each off):

- 19be0eaffa3a (Dirty COW): after a forced write fault in a read-only region,
  whose PTE stays read-only, the retry accepts a read-only PTE only if it maps
  the copy the fault made (our own anonymous page, shared with no one):
  FOLL_COW.  Without it (`foll_cow` off) the retry drops the write and looks
  for any readable page, which after a MADV_DONTNEED is the file's.
- 17839856fd58 (COW breaks either way): a pin of a private region breaks COW
  for the pinner, as a write would (`gup_breaks_cow`), so a pinned page is
  never one another process may reuse and write.

Rules: called with no lock held; _follow runs under vmr_lock and pte_lock and
takes its reference there (an anonymous page) or looks the file page up with
no lock held and checks again under them that the PTE still maps it; no lock
is held while the kernel copies bytes, the reference alone keeps the frame.
Errors: a region that does not allow the access is EFAULT (check_vma_flags);
access_remote and read_remote answer EIO if not one byte moved (mem_rw),
otherwise the count moved before the failure.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from pagemap.hw.memory import PGMASK, PGSHIFT, PGSIZE
from pagemap.hw.mmu import PTE_P, PTE_W, pte_ppn
from pagemap.kernel.errors import KernelError
from pagemap.kernel.fault import FaultHandler
from pagemap.kernel.mapcount import shared
from pagemap.kernel.mman import PROT_WRITE
from pagemap.kernel.owner import as_buffer, as_int, check_alive
from pagemap.kernel.page import PG_DIRTY, Page, PageAllocator
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.vmr import VMR, find_vmr, prot_allows
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor


@dataclass
class Pin:
    """A page the kernel holds for its own use (get_user_pages' reference):
    the frame cannot be freed until `release`.  Reads and writes go through
    the kernel's mapping of the frame."""

    page: Page
    mapping: PageMap | None  # the page map of a file page, None: anonymous
    executor: Executor
    allocator: PageAllocator
    released: bool = False

    def read(self, offset: int, n: int) -> bytes:
        self._check(offset, n, "read")
        self.executor.point("kmap.load", self.page.ppn, READ)
        return bytes(self.page.data[offset : offset + n])

    def write(self, offset: int, data: bytes) -> None:
        """Write through the kernel's mapping; a file page becomes dirty, as
        set_page_dirty_lock makes it after a forced write."""
        self._check(offset, len(data), "write")
        self.executor.point("kmap.store", self.page.ppn, WRITE)
        self.page.data[offset : offset + len(data)] = data
        if self.mapping is not None:
            self.page.flags.fetch_or(PG_DIRTY)

    def release(self) -> None:
        """put_page / unpin_user_page; releasing twice is a KernelError."""
        if self.released:
            raise KernelError(f"unpin of frame {self.page.ppn}, which is not pinned")
        self.released = True
        if self.mapping is not None:
            self.mapping.put_page(self.page)
        else:
            self.allocator.decref(self.page)

    def _check(self, offset: int, n: int, op: str) -> None:
        if self.released:
            raise KernelError(f"{op} through a released pin of frame {self.page.ppn}")
        if offset < 0 or n < 0 or offset + n > PGSIZE:
            raise KernelError(f"{op} of {n} bytes at {offset} passes the pinned page")


class RemoteAccess(FaultHandler):
    """get_user_pages, pins and access_remote_vm, on this address space."""

    def pin_user_page(self, addr: int, write: bool = False, force: bool = False) -> Pin:
        """The page at `addr`, faulted in for the access and held until the
        Pin is released (get_user_pages with FOLL_GET, or FOLL_FORCE)."""
        check_alive(self.exited, "pin_user_page", self.pid)
        addr = as_int(addr, "pin_user_page", "the address")
        page, mapping = self._get_user_page(addr, bool(write), bool(force), pin=True)
        return Pin(page, mapping, self.executor, self.allocator)

    def access_remote(self, addr: int, data: bytes, force: bool = False) -> int:
        """Write `data` at `addr` as the kernel does for /proc/pid/mem or
        ptrace(POKEDATA): page by page through pins; the bytes written."""
        check_alive(self.exited, "access_remote", self.pid)
        addr = as_int(addr, "access_remote", "the address")
        src = bytes(as_buffer(data, "access_remote"))
        done = 0
        while done < len(src):
            va = addr + done
            chunk = min(len(src) - done, PGSIZE - (va & PGMASK))
            pin = self._pin_or_none(va, True, force, done)
            if pin is None:
                break
            try:
                pin.write(va & PGMASK, src[done : done + chunk])
            finally:
                pin.release()
            done += chunk
        return done

    def read_remote(self, addr: int, n: int, force: bool = False) -> bytes:
        """`n` bytes at `addr`, read as the kernel reads /proc/pid/mem."""
        check_alive(self.exited, "read_remote", self.pid)
        addr, n = as_int(addr, "read_remote", "the address"), as_int(n, "read_remote", "n")
        out: list[bytes] = []
        done = 0
        while done < n:
            va = addr + done
            chunk = min(n - done, PGSIZE - (va & PGMASK))
            pin = self._pin_or_none(va, False, force, done)
            if pin is None:
                break
            try:
                out.append(pin.read(va & PGMASK, chunk))
            finally:
                pin.release()
            done += chunk
        return b"".join(out)

    def _pin_or_none(self, va: int, write: bool, force: bool, done: int) -> Pin | None:
        """A pin of the page at `va`, or None to stop a transfer that moved
        `done` bytes already; EIO if it moved none (mem_rw)."""
        try:
            page, mapping = self._get_user_page(va, write, force, pin=False)
        except OSError as exc:
            if done:
                return None
            raise KernelError(
                f"p{self.pid}: {'write to' if write else 'read of'} {va:#x} by the kernel: {exc}",
                errno=errno.EIO,
            ) from exc
        return Pin(page, mapping, self.executor, self.allocator)

    # -- get_user_pages --------------------------------------------------------------
    def _get_user_page(
        self, va: int, write: bool, force: bool, pin: bool
    ) -> tuple[Page, PageMap | None]:
        """__get_user_pages for one page: follow, or fault and follow again."""
        foll_write, foll_cow, first = write, False, True
        while True:
            with self.vmr_lock:
                vmr = self._gup_vmr(va, write, force)
                if first and pin and self.gup_breaks_cow and not vmr.shared:
                    # 17839856fd58: a pin of a COW mapping breaks COW now.
                    foll_write = True
                first = False
                with self.pte_lock:
                    page = self._follow(va, foll_write, foll_cow)
                    if page is not None and page.mapping is None:
                        self.allocator.incref(page)  # mapped, so alive: ours now too
                        return page, None
            if page is not None:
                got = self._grab_file_page(vmr, va, page, foll_write, foll_cow)
                if got is not None:
                    return got, vmr.mapping
                continue
            self.handle_page_fault(va, foll_write, force=force or (foll_write and not write))
            if foll_write and not vmr.prot & PROT_WRITE:
                # The fault copied the page but left its PTE read-only.
                if self.foll_cow:
                    foll_cow = True  # 19be0eaffa3a: accept that copy, and only it
                else:
                    foll_write = False  # the bug: retry as a read

    def _gup_vmr(self, va: int, write: bool, force: bool) -> VMR:
        """The region at `va` if it allows the access (check_vma_flags);
        EFAULT otherwise.  vmr_lock held."""
        vmr = find_vmr(self.vmrs, va)
        if vmr is None:
            raise KernelError(f"p{self.pid}: nothing is mapped at {va:#x}", errno=errno.EFAULT)
        if not prot_allows(vmr.prot, False) or (
            write and not vmr.prot & PROT_WRITE and not (force and not vmr.shared)
        ):
            raise KernelError(
                f"p{self.pid}: the region at {vmr.base:#x} does not allow a "
                f"{'forced ' if force else ''}{'write' if write else 'read'}",
                errno=errno.EFAULT,
            )
        return vmr

    def _follow(self, va: int, write: bool, foll_cow: bool) -> Page | None:
        """The page the PTE at `va` maps, if it allows the access (follow_page);
        with `foll_cow`, a read-only PTE does for a write if it maps our own
        copy, shared with no one.  vmr_lock and pte_lock held."""
        vpn = va >> PGSHIFT
        word = self.page_table.lookup(vpn)
        pte = word.load() if word is not None else 0
        if not pte & PTE_P:
            return None
        if write and not pte & PTE_W:
            own = self.anon.get(vpn)
            if not foll_cow or own is None or own.ppn != pte_ppn(pte) or shared(own):
                return None
        return self.allocator.pages[pte_ppn(pte)]

    def _grab_file_page(
        self, vmr: VMR, va: int, seen: Page, write: bool, foll_cow: bool
    ) -> Page | None:
        """A slot reference on the file page `seen` that the PTE at `va`
        mapped, taken with no lock held (lookup may sleep), if the PTE still
        maps it; None (the reference given back) to try again."""
        mapping = vmr.mapping
        assert mapping is not None
        page, _ = mapping.lookup(vmr.index_of(va))  # a read error passes on
        with self.vmr_lock, self.pte_lock:
            if find_vmr(self.vmrs, va) is vmr and self._follow(va, write, foll_cow) is page:
                return page
        mapping.put_page(page)
        return None


__all__ = ["Pin", "RemoteAccess"]
