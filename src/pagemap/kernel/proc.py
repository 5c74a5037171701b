"""A process, as the kernel's other parts and its users see it.

Proc ties the rooms of the address space together: the state and its PTE
operations (MM, kernel/mm.py), the fault handler (kernel/fault.py), the
mapping calls (kernel/mmap.py, kernel/madvise.py), user access (kernel/uaccess.py) and fork
with copy-on-write (kernel/fork.py, kernel/cow.py).  Its
rules are theirs: the lock order and the PTE rules of kernel/mm.py, the VMR
rules of kernel/vmr.py.  Made by Machine.process(); to the page map's reverse
map it is an AddressSpace (kernel/rmap.py).
"""

from __future__ import annotations

from pagemap.kernel.fork import Fork
from pagemap.kernel.madvise import Advice
from pagemap.kernel.uaccess import UserAccess


class Proc(Fork, Advice, UserAccess):
    """A process's address space: mmap, munmap, mprotect, msync, madvise,
    mlock, munlock, exit, load, store, fork, and handle_page_fault."""


__all__ = ["Proc"]
