"""A process, as the kernel's other parts and its users see it.

Proc ties the rooms of the address space together: the state and its PTE
operations (MM, kernel/mm.py), the fault handler (kernel/fault.py) with its
copy on write (kernel/cow.py), the mapping calls (kernel/mmap.py,
kernel/madvise.py), user access (kernel/uaccess.py), the kernel's own access
(kernel/gup.py) and fork (kernel/fork.py).  Its rules are theirs: the lock
order and the PTE rules of kernel/mm.py, the VMR rules of kernel/vmr.py.
Made by Machine.process(); to the page map's reverse map it is an
AddressSpace (kernel/rmap.py).
"""

from __future__ import annotations

from pagemap.kernel.fork import Fork
from pagemap.kernel.gup import RemoteAccess
from pagemap.kernel.madvise import Advice
from pagemap.kernel.mremap import Remapping
from pagemap.kernel.uaccess import UserAccess


class Proc(Fork, Advice, RemoteAccess, UserAccess, Remapping):
    """A process's address space: mmap, munmap, mprotect, mremap, msync,
    madvise, mlock, munlock, exit, load, store, fork, the kernel's access to
    it (access_remote, read_remote, pin_user_page), and handle_page_fault."""


__all__ = ["Proc"]
