"""User access: loads and stores at user addresses, the model's copyin/copyout.

Part of Proc (kernel/proc.py).  Rules: called by a task (on its core, whose
TLB the access goes through; outside any task, on core 0) with no lock held.
Each page of an access goes through the MMU (hw/mmu.py); a page fault is
handled (kernel/fault.py) and that page's access retried, so an access that
spans pages is done page by page, in order, and a fault that cannot be
handled stops it there with what Linux would signal.  An address or length
that is not an int, or data that is not bytes-like, is TypeError; any access
after exit() is ESRCH (kernel/owner.py).
"""

from __future__ import annotations

import errno

from pagemap.hw.memory import PGMASK, PGSIZE
from pagemap.hw.mmu import PageFault
from pagemap.kernel.errors import InvalidArgument, SegmentationFault
from pagemap.kernel.fault import FaultHandler
from pagemap.kernel.mm import USER_TOP
from pagemap.kernel.owner import as_buffer, as_int, check_alive


class UserAccess(FaultHandler):
    """load and store through this address space."""

    def load(self, addr: int, n: int) -> bytes:
        """`n` bytes at `addr`, as a user load on the current task's core."""
        if self.exited or type(addr) is not int or type(n) is not int:  # the hot path skips it
            check_alive(self.exited, "load", self.pid)
            addr, n = as_int(addr, "load", "the address"), as_int(n, "load", "the length")
        if n < 0:
            raise InvalidArgument(f"p{self.pid}: load of {n} bytes: the length may not be negative")
        if n == 0:
            return b""  # touches nothing, so cannot fault
        core = self.current_core()
        if (addr & PGMASK) + n <= PGSIZE and 0 <= addr < USER_TOP:
            # One page, a user address: straight to the MMU (the hit path).
            try:
                return self.mmu.load(core, self.page_table, addr, n)
            except PageFault as fault:
                self.handle_page_fault(fault.va, fault.write)
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
        if self.exited or type(addr) is not int:  # the hot path skips it
            check_alive(self.exited, "store", self.pid)
            addr = as_int(addr, "store", "the address")
        src = data if type(data) is bytes else bytes(as_buffer(data, "store"))
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
