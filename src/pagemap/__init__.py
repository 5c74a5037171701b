"""pagemap: the Akaros page cache, executable.

Start with `Machine`; `Machine.page_map(ops)` gives a page map, and
`Machine.spawn` / `Machine.run` run tasks against it on OS threads
("threads") or under the deterministic scheduler ("sim").
"""

from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.kernel.blockdev import BH_DIRTY, BH_UPTODATE, BlockDevice, BufferHead
from pagemap.kernel.errors import (
    AccessDenied,
    AlreadyClosed,
    AlreadyExists,
    BusError,
    FileTooLarge,
    InvalidArgument,
    IOFailure,
    KernelBug,
    KernelError,
    NoSuchProcess,
    NotMapped,
    OutOfMemory,
    RefcountOverflow,
    SegmentationFault,
    WrongMachine,
)
from pagemap.kernel.fs.ext2 import Ext2File, Ext2FS
from pagemap.kernel.hostfs import HostFile
from pagemap.kernel.hostio import HostFaults
from pagemap.kernel.mman import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_LOCKED,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from pagemap.kernel.page import (
    PG_BUFFER,
    PG_DIRTY,
    PG_LOCKED,
    PG_PAGEMAP,
    PG_REMOVAL,
    PG_UPTODATE,
    Page,
)
from pagemap.kernel.pagemap import PageMap, PageMapOps
from pagemap.kernel.proc import Proc
from pagemap.kernel.slot import decode_slot, encode_slot
from pagemap.kernel.vfs import File, Inode
from pagemap.kernel.vmr import VMR
from pagemap.machine import Machine
from pagemap.sync.core import Deadlock, StepBudgetExceeded, Strategy, Task, TaskStuck
from pagemap.sync.sim import SeededRandom, SimExecutor
from pagemap.sync.threads import ThreadExecutor

__version__ = "0.1.0"

__all__ = [
    "BH_DIRTY",
    "BH_UPTODATE",
    "MAP_ANONYMOUS",
    "MAP_FIXED",
    "MAP_LOCKED",
    "MAP_PRIVATE",
    "MAP_SHARED",
    "PGSHIFT",
    "PGSIZE",
    "PG_BUFFER",
    "PG_DIRTY",
    "PG_LOCKED",
    "PG_PAGEMAP",
    "PG_REMOVAL",
    "PG_UPTODATE",
    "PROT_EXEC",
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "VMR",
    "AccessDenied",
    "AlreadyClosed",
    "AlreadyExists",
    "BlockDevice",
    "BufferHead",
    "BusError",
    "Deadlock",
    "Ext2FS",
    "Ext2File",
    "File",
    "FileTooLarge",
    "HostFaults",
    "HostFile",
    "IOFailure",
    "Inode",
    "InvalidArgument",
    "KernelBug",
    "KernelError",
    "Machine",
    "NoSuchProcess",
    "NotMapped",
    "OutOfMemory",
    "Page",
    "PageMap",
    "PageMapOps",
    "Proc",
    "RefcountOverflow",
    "SeededRandom",
    "SegmentationFault",
    "SimExecutor",
    "StepBudgetExceeded",
    "Strategy",
    "Task",
    "TaskStuck",
    "ThreadExecutor",
    "WrongMachine",
    "__version__",
    "decode_slot",
    "encode_slot",
]
