"""The mutant table covers every room of kernel/ that has a lock, a scheduling
point or an error path: each such module has at least one mutant whose seam
it defines.  A mutant's rooms are the modules that define the attributes it
replaces (the real ones, read outside `applied()`), so a mutant of a mixin's
method counts for the mixin's module, and one of a function looked up in its
caller's module (lock_page, merge_around) for the function's own module."""

from __future__ import annotations

import inspect
import pkgutil

import pytest

import pagemap.kernel
from pagemap.check.mutants import EQUIVALENT_MUTANTS, MUTANTS, Mutant, lookup_mutant

# Every module of kernel/ that needs mutants: each has a lock, a scheduling
# point, or an error it must report (not swallow).
ROOMS = (
    "pagemap.kernel.blockdev",
    "pagemap.kernel.cow",
    "pagemap.kernel.errseq",
    "pagemap.kernel.fallocate",
    "pagemap.kernel.fault",
    "pagemap.kernel.flusher",
    "pagemap.kernel.fork",
    "pagemap.kernel.gup",
    "pagemap.kernel.hostfs",
    "pagemap.kernel.hostio",
    "pagemap.kernel.madvise",
    "pagemap.kernel.invalidate",
    "pagemap.kernel.mkwrite",
    "pagemap.kernel.mm",
    "pagemap.kernel.mmap",
    "pagemap.kernel.mremap",
    "pagemap.kernel.page",
    "pagemap.kernel.pagemap",
    "pagemap.kernel.radix",
    "pagemap.kernel.reclaim",
    "pagemap.kernel.removal",
    "pagemap.kernel.rmap",
    "pagemap.kernel.uaccess",
    "pagemap.kernel.vfs",
    "pagemap.kernel.vmr",
    "pagemap.kernel.writeback",
    "pagemap.kernel.policy.base",
    "pagemap.kernel.fs.ext2.balloc",
    "pagemap.kernel.fs.ext2.bmap",
    "pagemap.kernel.fs.ext2.dir",
    "pagemap.kernel.fs.ext2.fs",
    "pagemap.kernel.fs.ext2.inode",
    "pagemap.kernel.fs.ext2.file",
    "pagemap.kernel.fs.ext2.namei",
    "pagemap.kernel.fs.ext2.truncate",
    "pagemap.kernel.runs",
    "pagemap.kernel.truncate_pages",
    "pagemap.kernel.unmap_marked",
)

# The other modules, each with why it has no mutant (yet).
LEFT_OUT = {
    "pagemap.kernel": "the package: no code",
    "pagemap.kernel.errors": "exception classes only",
    "pagemap.kernel.mman": "constants only",
    "pagemap.kernel.owner": "argument checks, pure functions of their arguments: no lock, no point",
    "pagemap.kernel.proc": "joins the mixins (mm, fault, mmap, mremap, madvise, uaccess, gup, "
    "fork): no code of its own",
    "pagemap.kernel.mapcount": "one atomic count per frame, read and changed by cow.py, fork.py "
    "and mm.py's disown, whose mutants break its uses (reuse-shared, fork-no-wrprotect)",
    "pagemap.kernel.slot": "pure functions of one slot word; the CAS loops using them are "
    "pagemap.py's and removal.py's (lookup-keeps-removal, free-after-reuse)",
    "pagemap.kernel.fs": "the package: no code",
    "pagemap.kernel.policy": "make_policy: a table of names",
    "pagemap.kernel.policy.clock": "a pure policy behind reclaim's lock; the calls' "
    "bookkeeping and misuse checks are base.py's (kept-victim-lost)",
    "pagemap.kernel.policy.fifo": "as policy.clock",
    "pagemap.kernel.policy.lru": "as policy.clock",
    "pagemap.kernel.policy.lru2q": "as policy.clock",
    "pagemap.kernel.policy.opt": "as policy.clock",
    "pagemap.kernel.policy.replay": "as policy.clock",
    "pagemap.kernel.policy.s3fifo": "as policy.clock",
    "pagemap.kernel.fs.ext2": "the package: re-exports Ext2FS",
    "pagemap.kernel.fs.ext2.errors": "exception classes only",
    "pagemap.kernel.fs.ext2.punch": "fallocate on ext2 (an extension), under the inode's "
    "i_rwsem and the invalidate lock, checked by e2fsck in tests/kernel/fs/ext2/"
    "test_fallocate.py; no scenario races it yet",
    "pagemap.kernel.fs.ext2.layout": "on-disk formats: pack and parse, no lock, no point",
    "pagemap.kernel.fs.ext2.volume": "state set at mount; check_writable's refusals are "
    "asked by every modifying call and seen by no race",
    "pagemap.kernel.pagemap_info": "info and check_quiescent: a page map described and "
    "checked after a run, outside any task",
    "pagemap.kernel.pagecopy": "the byte copies of read and write between a page and a "
    "buffer, under the page reference their callers in vfs.py hold; the copies' points "
    "are the callers' (pwrite-store, pwrite-remove race them)",
    "pagemap.kernel.fs.ext2.itable": "an inode-table record read and checked at iget, under "
    "the namespace lock, through a buffer whose locking is blockdev.py's",
    "pagemap.kernel.fs.ext2.lookup": "path walks under the namespace lock: reads of "
    "directories whose changes namei.py makes under the same lock",
    "pagemap.kernel.fs.ext2.stat": "stat, readdir and statfs: reads under the namespace lock",
    "pagemap.kernel.fs.ext2.unmount": "sync and unmount, run by the scenarios once their "
    "tasks are done; the writeback they call is writeback.py's and inode.py's",
    "pagemap.kernel.fs.ext2.super": "mount-time checks, and write_super at sync, whose "
    "copies under a group's lock have no point inside; no scenario syncs beside allocation",
}


def kernel_modules() -> set[str]:
    names = {pagemap.kernel.__name__}
    for info in pkgutil.walk_packages(pagemap.kernel.__path__, "pagemap.kernel."):
        names.add(info.name)
    return names


def rooms_of(mutant: Mutant) -> set[str]:
    """The modules defining the attributes the mutant replaces."""
    rooms = set()
    for attr in mutant.patches:
        real = getattr(mutant.target, attr)
        module = inspect.getmodule(real)
        assert module is not None, f"{mutant.name}: {attr} has no module"
        rooms.add(module.__name__)
    return rooms


def test_every_module_of_the_kernel_is_a_room_or_left_out_with_a_reason() -> None:
    listed = set(ROOMS) | set(LEFT_OUT)
    assert not set(ROOMS) & set(LEFT_OUT)
    assert kernel_modules() - listed == set(), "a new kernel module: a room, or say why not"
    assert listed - kernel_modules() == set(), "a module listed here is no longer in kernel/"
    assert all(reason.strip() for reason in LEFT_OUT.values())


@pytest.mark.parametrize("room", ROOMS)
def test_the_room_has_a_mutant(room: str) -> None:
    killers = [m.name for m in MUTANTS if room in rooms_of(m)]
    assert killers, f"{room} has no mutant in check/mutants/"


@pytest.mark.parametrize("mutant", MUTANTS + EQUIVALENT_MUTANTS, ids=lambda m: m.name)
def test_every_mutant_replaces_kernel_code(mutant: Mutant) -> None:
    rooms = rooms_of(mutant)
    assert rooms and rooms <= kernel_modules(), f"{mutant.name} patches {rooms}"


def test_a_seam_counts_for_the_module_that_defines_it() -> None:
    # A mixin's method: removal.py, not pagemap.py, whose class it is patched on.
    assert rooms_of(lookup_mutant("free-after-reuse")) == {"pagemap.kernel.removal"}
    # A function patched where mmap.py looks it up counts for vmr.py.
    assert rooms_of(lookup_mutant("merge-unregisters-first")) == {"pagemap.kernel.vmr"}
    assert rooms_of(lookup_mutant("munmap-drops-dirty")) == {"pagemap.kernel.mm"}
