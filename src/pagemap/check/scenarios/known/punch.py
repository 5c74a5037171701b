"""The zoo's hole-punching rows: a page read back in while its hole is punched.

Rules as in bugs.py: the scenario sets the kernel's switch (here the
mapping's InvalidateLock.enabled, kernel/invalidate.py) before any task runs
and carries no kernel code of its own.
"""

from __future__ import annotations

from pagemap.check.context import RunContext
from pagemap.check.scenario import Params, Scenario
from pagemap.check.scenarios.known.bugs import FIX, Bug, Step
from pagemap.check.scenarios.punch import punch_race


def _punch_fault(ctx: RunContext, p: Params) -> None:
    """fault vs punch hole: Linux ea3d7209ca01 (2015, "ext4: fix races between
    page faults and hole punching").

    Racing paths: a fault on a page of a shared mapping that is not cached
    (look it up, read it from the backing store, install the PTE) and a hole
    punch over that page (drop the range's cached pages, then free the
    blocks: here the host's own fallocate).  Interleaving: the punch drops
    the range (nothing cached yet); the fault reads the page from the blocks
    still there; the punch frees them.  Broken: the cache keeps a page of
    bytes the file no longer holds, and a read of the hole returns them
    (coherence).  The fix takes the mapping's invalidate lock shared where a
    page is added, exclusive across the punch (Linux 5.15's
    mapping->invalidate_lock, after ext4's i_mmap_sem of this commit); fix=0
    is InvalidateLock.enabled = False.
    """
    punch_race(ctx, ("fault",), bool(p["fix"]))


def _punch_read(ctx: RunContext, p: Params) -> None:
    """read vs punch hole: Linux 730633f0b7f9 (2021, "mm: Protect operations
    adding pages to page cache with invalidate_lock").

    Racing paths: a pread of a page that is not cached (read it in through
    the page cache) and a hole punch over that page.  Interleaving, broken
    state and oracle as for the fault (known-punch-fault): ea3d7209ca01
    covered faults only; reads (and readahead) could still add a page from
    blocks being freed until this commit took the invalidate lock in every
    path that adds pages.  fix=0 is InvalidateLock.enabled = False.
    """
    punch_race(ctx, ("read",), bool(p["fix"]))


SCENARIOS = (
    Scenario(
        "known-punch-fault",
        "Linux 2015: a fault reads a page back in from blocks a hole punch is freeing",
        _punch_fault,
        {"fix": 1},
        limits=FIX,
    ),
    Scenario(
        "known-punch-read",
        "Linux 2021: a read adds a page back from blocks a hole punch is freeing",
        _punch_read,
        {"fix": 1},
        limits=FIX,
    ),
)


def _mechanism(reader: str) -> tuple[Step, ...]:
    return (
        Step("kernel/truncate_pages.py", "TruncatePages.truncate_pages", "swap", "punch"),
        Step("kernel/hostio.py", "HostIO._enter", "host_read", reader),
        # The host punch itself is no step of its own: the lock around it
        # is let go once it is done.
        Step("kernel/hostfs.py", "HostInode.punch_backing", "unlock", "punch"),
    )


def _racy(reader: str) -> tuple[Step, Step]:
    return (
        Step("kernel/invalidate.py", "InvalidateLock.down_write", "fetch_or", "punch"),
        Step("kernel/invalidate.py", "InvalidateLock.down_read", "cas", reader),
    )


BUGS = (
    Bug(
        "known-punch-fault",
        2015,
        "ea3d7209ca01",
        "fault vs punch hole: a fault re-reads a page from blocks being freed",
        racy=_racy("fault"),
        mechanism=_mechanism("fault"),
    ),
    Bug(
        "known-punch-read",
        2021,
        "730633f0b7f9",
        "read vs punch hole: a read adds a page from blocks being freed",
        racy=_racy("read"),
        mechanism=_mechanism("read"),
    ),
)
