"""The memory-management unit: PTE bits, page tables, per-core TLBs, and the
access path that user loads and stores take.

A PTE is a 64-bit word: the frame number shifted left by PGSHIFT, plus the
bits below.  The MMU sets A and D on its own, concurrently with the kernel,
which is why the kernel changes a PTE only with single atomic operations.

The access path, as on x86:

- a load or store first looks in the core's TLB, whose entries are tagged by
  address space and cache the PTE's value;
- a miss walks the page table; a PTE that is not present, or not writable for
  a store, raises PageFault, which the kernel handles before the access is
  retried;
- a store through an entry whose cached D is clear re-walks and sets A and D
  in the PTE with one compare-and-swap, faulting if the PTE is no longer
  present or writable; a store through an entry with D set writes the frame
  directly, which is why the kernel must shoot down TLBs before it trusts D;
- a shootdown removes one address space's entries from every core's TLB:
  all of them, or only those of a range of pages (Linux's flush_tlb_range and
  flush_tlb_page; an entry outside the range survives, as on x86 with INVLPG).

Each core runs one instruction at a time, and a shootdown is an interrupt
taken between instructions: an access holds its core's `busy` lock from the
TLB lookup until its bytes have landed, and a shootdown takes that lock
before it flushes the core.  Without it a store could look up a stale entry,
let a shootdown finish, and then land, which no hardware allows.

This module knows nothing of the kernel: an address space is a PageTable
with an id (the ASID) and an opaque `owner` handed to the access hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pagemap.hw.memory import PGMASK, PGSHIFT, PGSIZE, PhysicalMemory
from pagemap.sync.atomic import AtomicWord, StatCounter
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor
from pagemap.sync.locks import SpinLock

PTE_P = 0x001  # present
PTE_W = 0x002  # writable
PTE_U = 0x004  # user-accessible
PTE_A = 0x020  # accessed (set by the MMU)
PTE_D = 0x040  # dirty (set by the MMU on a store)

PTE_FLAGS_MASK = (1 << PGSHIFT) - 1

# Entries a core's TLB holds before it evicts its oldest; eviction only
# costs a re-walk, so the exact figure changes speed, never meaning.
TLB_ENTRIES = 64

# (owner, va, ppn, write), called as each access lands in a frame.
AccessHook = Callable[[object, int, int, bool], None]


def pte_ppn(pte: int) -> int:
    """The frame number a PTE names (PTE2PPN)."""
    return pte >> PGSHIFT


def make_pte(ppn: int, bits: int) -> int:
    return (ppn << PGSHIFT) | bits


def pte_bits(pte: int) -> str:
    """ "P|W|U|A|D" style summary; "0" for an empty PTE."""
    if pte == 0:
        return "0"
    names = [
        n
        for bit, n in ((PTE_P, "P"), (PTE_W, "W"), (PTE_U, "U"), (PTE_A, "A"), (PTE_D, "D"))
        if pte & bit
    ]
    return f"ppn={pte_ppn(pte)}:{'|'.join(names) or '-'}"


class PageFault(Exception):
    """The access at `va` needs the kernel: no present PTE, or a store to a
    PTE that is not writable.  The kernel handles it and retries the access."""

    def __init__(self, va: int, write: bool) -> None:
        super().__init__(f"page fault: {'store to' if write else 'load from'} {va:#x}")
        self.va = va
        self.write = write


class PageTable:
    """One address space's PTEs: vpn -> AtomicWord, sparse.

    The kernel creates PTE words (`pte`) and lists them (`ptes`) only under
    its page-table lock; the MMU only looks words up, so it never sees the
    dict change size under it.  Words are never deleted: an unmapped page's
    PTE is the word 0.
    """

    def __init__(self, executor: Executor, asid: int, owner: object) -> None:
        self.executor = executor
        self.asid = asid
        self.owner = owner
        self._ptes: dict[int, AtomicWord] = {}

    def lookup(self, vpn: int) -> AtomicWord | None:
        """The PTE word for `vpn`, or None if there has never been one."""
        return self._ptes.get(vpn)

    def pte(self, vpn: int) -> AtomicWord:
        """The PTE word for `vpn`, created (as 0) if need be."""
        word = self._ptes.get(vpn)
        if word is None:
            word = self.executor.atomic(0, f"pte[p{self.asid}:{vpn << PGSHIFT:#x}]")
            self._ptes[vpn] = word
        return word

    def ptes(self, vpn_lo: int, vpn_hi: int) -> list[tuple[int, AtomicWord]]:
        """(vpn, word) for every word in [vpn_lo, vpn_hi), in address order."""
        table = self._ptes
        if vpn_hi - vpn_lo <= len(table):
            found = ((v, table.get(v)) for v in range(vpn_lo, vpn_hi))
            return [(v, w) for v, w in found if w is not None]
        return sorted((v, w) for v, w in table.items() if vpn_lo <= v < vpn_hi)

    def __len__(self) -> int:
        return len(self._ptes)


# A TLB entry's key: the address space's id above the page number (user
# addresses have 47 bits, so a vpn has fewer than 40), one int to hash.
_ASID_SHIFT = 40
_VPN_MASK = (1 << _ASID_SHIFT) - 1


def tlb_key(asid: int, vpn: int) -> int:
    return (asid << _ASID_SHIFT) | vpn


class TLB:
    """One core's translation cache: (asid, vpn) -> the PTE value it cached."""

    def __init__(self, executor: Executor, core: int) -> None:
        self.executor = executor
        self.core = core
        self.name = f"tlb[{core}]"
        # Held by the core's instruction in flight; see the module docstring.
        self.busy: SpinLock = executor.spinlock(f"core{core}.insn")
        executor.register(self)
        self._entries: dict[int, int] = {}  # tlb_key -> PTE value
        # Under OS threads a point does nothing: the access path skips the call.
        self.points = executor.has_points

    def lookup(self, asid: int, vpn: int) -> int | None:
        if self.points:
            self.executor.point("tlb.lookup", self, READ)
        return self._entries.get((asid << _ASID_SHIFT) | vpn)

    def fill(self, asid: int, vpn: int, pte: int) -> None:
        if self.points:
            # Part of the walk's step, whose point is the PTE: name the TLB too.
            self.executor.touch(self, WRITE)
        entries = self._entries
        key = (asid << _ASID_SHIFT) | vpn
        if len(entries) >= TLB_ENTRIES and key not in entries:
            del entries[next(iter(entries))]
        entries[key] = pte

    def invalidate(self, asid: int, vpn: int) -> None:
        if self.points:
            self.executor.touch(self, WRITE)
        self._entries.pop((asid << _ASID_SHIFT) | vpn, None)

    def flush(self, asid: int) -> None:
        """Forget every entry of address space `asid` (the core's side of a
        shootdown); the caller holds `busy`."""
        self.executor.point("tlb.flush", self, WRITE)
        entries = self._entries
        for key in [k for k in entries if k >> _ASID_SHIFT == asid]:
            del entries[key]

    def flush_range(self, asid: int, vpn_lo: int, vpn_hi: int) -> None:
        """Forget the entries of address space `asid` for pages in
        [vpn_lo, vpn_hi), and only those; the caller holds `busy`.  The same
        point as a whole flush: to DPOR both write this core's TLB."""
        self.executor.point("tlb.flush", self, WRITE)
        entries = self._entries
        lo, hi = tlb_key(asid, vpn_lo), tlb_key(asid, vpn_hi)
        for key in [k for k in entries if lo <= k < hi]:
            del entries[key]

    def entries(self, asid: int | None = None) -> list[tuple[int, int, int]]:
        """(asid, vpn, pte) for each entry, or each of one address space; for oracles."""
        return [
            (k >> _ASID_SHIFT, k & _VPN_MASK, p)
            for k, p in self._entries.items()
            if asid is None or k >> _ASID_SHIFT == asid
        ]

    def __repr__(self) -> str:
        return f"TLB(core {self.core}, {len(self._entries)} entries)"


class MMU:
    """The machine's MMU: one TLB per core, the access path, and shootdowns."""

    def __init__(self, executor: Executor, memory: PhysicalMemory, nr_cores: int) -> None:
        self.executor = executor
        self.memory = memory
        self.tlbs = [TLB(executor, core) for core in range(nr_cores)]
        self.on_access: AccessHook | None = None
        self.shootdowns = StatCounter()  # statistics: not a scheduling point
        self._view = memory.view  # the one view of every frame; slices made on use
        self._points = executor.has_points

    # -- the access path ---------------------------------------------------------
    def load(self, core: int, space: PageTable, va: int, n: int) -> bytes:
        """`n` bytes at `va`, all within one page, through core `core`'s TLB."""
        off = va & PGMASK
        if n < 0 or off + n > PGSIZE:
            raise ValueError(f"an access of {n} bytes at {va:#x} would cross a page boundary")
        tlb = self.tlbs[core]
        busy = tlb.busy
        busy.acquire()
        try:
            if self._points:
                pte = tlb.lookup(space.asid, va >> PGSHIFT)
            else:  # the same lookup, with the point that does nothing left out
                pte = tlb._entries.get((space.asid << _ASID_SHIFT) | (va >> PGSHIFT))
            if pte is None:
                pte = self._walk(tlb, space, va, write=False)
            ppn = pte >> PGSHIFT
            if self._points or self.on_access is not None:
                self._land(space, va, ppn, False)
            start = (ppn << PGSHIFT) + off
            return self._view[start : start + n].tobytes()
        finally:
            busy.release()

    def store(self, core: int, space: PageTable, va: int, data: bytes) -> None:
        """Write `data` at `va`, all within one page, through core `core`'s TLB."""
        off = va & PGMASK
        if off + len(data) > PGSIZE:
            raise ValueError(
                f"an access of {len(data)} bytes at {va:#x} would cross a page boundary"
            )
        tlb = self.tlbs[core]
        busy = tlb.busy
        busy.acquire()
        try:
            if self._points:
                pte = tlb.lookup(space.asid, va >> PGSHIFT)
            else:
                pte = tlb._entries.get((space.asid << _ASID_SHIFT) | (va >> PGSHIFT))
            if pte is None or not pte & PTE_D:
                # A miss, or an entry cached before the page was dirtied (or
                # while it was read-only): the PTE must say D before the bytes land.
                pte = self._walk(tlb, space, va, write=True)
            ppn = pte >> PGSHIFT
            if self._points or self.on_access is not None:
                self._land(space, va, ppn, True)
            start = (ppn << PGSHIFT) + off
            self._view[start : start + len(data)] = data
        finally:
            busy.release()

    def _walk(self, tlb: TLB, space: PageTable, va: int, write: bool) -> int:
        """Walk the page table, set A (and D for a store) with one CAS, and
        cache the result; PageFault if the PTE does not allow the access."""
        vpn = va >> PGSHIFT
        word = space.lookup(vpn)
        while True:
            old = word.load() if word is not None else 0
            if not old & PTE_P or (write and not old & PTE_W):
                tlb.invalidate(space.asid, vpn)
                raise PageFault(va, write)
            assert word is not None
            new = old | PTE_A | (PTE_D if write else 0)
            # The kernel may change the PTE between our load and here; the CAS
            # then fails and we look again rather than resurrect what it cleared.
            if new == old or word.cas(old, new):
                tlb.fill(space.asid, vpn, new)
                return new

    def _land(self, space: PageTable, va: int, ppn: int, write: bool) -> None:
        self.executor.point("frame.store" if write else "frame.load", ppn, WRITE if write else READ)
        hook = self.on_access
        if hook is not None:
            hook(space.owner, va, ppn, write)

    # -- shootdowns ----------------------------------------------------------------
    def shootdown(
        self,
        asid: int,
        lo: int | None = None,
        hi: int | None = None,
        cores: Sequence[int] | None = None,
    ) -> None:
        """Remove address space `asid`'s entries from the TLBs of `cores`
        (every core by default), each core between two of its instructions:
        all of them, or with `lo` and `hi` only those of the pages that
        overlap [lo, hi) (a ranged shootdown; entries outside it survive)."""
        self.shootdowns.add(1)
        tlbs = self.tlbs if cores is None else [self.tlbs[c] for c in cores]
        if lo is None or hi is None:
            for tlb in tlbs:
                with tlb.busy:
                    tlb.flush(asid)
            return
        vpn_lo, vpn_hi = lo >> PGSHIFT, (hi + PGMASK) >> PGSHIFT
        if vpn_lo >= vpn_hi:
            return
        for tlb in tlbs:
            with tlb.busy:
                tlb.flush_range(asid, vpn_lo, vpn_hi)

    def cached_ppns(self, asid: int) -> list[tuple[int, int, int]]:
        """(core, vpn, ppn) for every TLB entry of `asid`; for oracles."""
        return [
            (tlb.core, vpn, pte_ppn(pte)) for tlb in self.tlbs for _, vpn, pte in tlb.entries(asid)
        ]
