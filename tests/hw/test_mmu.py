"""The simulated MMU (hw/mmu.py): PTE bits, page tables, tagged TLBs, the
access path of DESIGN.md, and shootdowns, with no kernel involved."""

from __future__ import annotations

import pytest

from pagemap import PGSIZE, Machine
from pagemap.hw.mmu import (
    MMU,
    PTE_A,
    PTE_D,
    PTE_P,
    PTE_U,
    PTE_W,
    TLB_ENTRIES,
    PageFault,
    PageTable,
    make_pte,
    pte_bits,
    pte_ppn,
)

RW = PTE_P | PTE_U | PTE_W
RO = PTE_P | PTE_U
VA = 0x4000_0000
SIM_SEEDS = range(300)


def rig(executor: str = "sim", seed: int = 0, cores: int = 2) -> tuple[Machine, MMU, PageTable]:
    m = Machine(cores=cores, memory=16 * PGSIZE, executor=executor, seed=seed)
    return m, m.mmu, PageTable(m.executor, 7, owner="space7")


def test_pte_helpers_round_trip() -> None:
    pte = make_pte(5, RW | PTE_D)
    assert pte_ppn(pte) == 5
    assert pte & PTE_W and pte & PTE_D and not pte & PTE_A
    assert pte_bits(pte) == "ppn=5:P|W|U|D"
    assert pte_bits(0) == "0"


def test_page_table_words_are_named_sparse_and_listed_in_order() -> None:
    _m, _, pt = rig()
    assert pt.lookup(3) is None
    words = {vpn: pt.pte(vpn) for vpn in (9, 3, 400)}
    assert pt.pte(3) is words[3]
    assert words[3].name == "pte[p7:0x3000]" and words[3].value == 0
    assert [v for v, _ in pt.ptes(0, 1000)] == [3, 9, 400]  # sparse walk
    assert [v for v, _ in pt.ptes(3, 10)] == [3, 9]  # dense walk
    assert pt.ptes(10, 400) == []


def test_a_load_with_no_pte_faults_and_a_store_to_a_read_only_pte_faults() -> None:
    _m, mmu, pt = rig()
    with pytest.raises(PageFault) as exc:
        mmu.load(0, pt, VA, 8)
    assert exc.value.va == VA and not exc.value.write
    pt.pte(VA >> 12).store(make_pte(3, RO))
    assert mmu.load(0, pt, VA, 4) == bytes(4)
    with pytest.raises(PageFault) as exc:
        mmu.store(0, pt, VA, b"x")
    assert exc.value.write


def test_loads_set_a_and_stores_set_a_and_d_in_the_pte() -> None:
    m, mmu, pt = rig()
    word = pt.pte(VA >> 12)
    word.store(make_pte(3, RW))
    mmu.load(0, pt, VA, 1)
    assert word.value == make_pte(3, RW | PTE_A)
    mmu.store(1, pt, VA + 8, b"hi")
    assert word.value == make_pte(3, RW | PTE_A | PTE_D)
    assert bytes(m.memory.frame(3)[8:10]) == b"hi"


def test_tlb_entries_are_tagged_by_address_space() -> None:
    m, mmu, pt = rig()
    other = PageTable(m.executor, 8, owner="space8")
    pt.pte(VA >> 12).store(make_pte(3, RW))
    other.pte(VA >> 12).store(make_pte(4, RW))
    m.memory.frame(3)[0] = 33
    m.memory.frame(4)[0] = 44
    assert mmu.load(0, pt, VA, 1) == bytes([33])
    assert mmu.load(0, other, VA, 1) == bytes([44])
    assert sorted(e[:2] for e in mmu.tlbs[0].entries()) == [(7, VA >> 12), (8, VA >> 12)]


def test_a_store_through_a_cached_entry_without_d_rewalks_and_faults_if_the_pte_went() -> None:
    m, mmu, pt = rig()
    word = pt.pte(VA >> 12)
    word.store(make_pte(3, RW))
    mmu.load(0, pt, VA, 1)  # cached, D clear
    word.swap(0)  # the kernel unmaps, no shootdown yet
    assert mmu.load(0, pt, VA, 1) == bytes(1)  # a load still hits the stale entry
    with pytest.raises(PageFault):
        mmu.store(0, pt, VA, b"x")
    assert mmu.tlbs[0].entries() == []  # the fault dropped the entry
    assert m.memory.frame(3)[0] == 0


def test_a_store_through_a_cached_entry_without_d_faults_if_the_pte_lost_w() -> None:
    _m, mmu, pt = rig()
    word = pt.pte(VA >> 12)
    word.store(make_pte(3, RW))
    mmu.load(0, pt, VA, 1)
    word.fetch_and(~PTE_W)
    with pytest.raises(PageFault):
        mmu.store(0, pt, VA, b"x")


def test_a_store_through_a_cached_entry_with_d_lands_until_the_shootdown() -> None:
    """Why removal must shoot down before it trusts D bits."""
    m, mmu, pt = rig()
    word = pt.pte(VA >> 12)
    word.store(make_pte(3, RW))
    mmu.store(1, pt, VA, b"a")  # cached with D set
    word.swap(0)
    mmu.store(1, pt, VA, b"b")  # no walk: lands in the frame regardless
    assert m.memory.frame(3)[0] == ord("b")
    mmu.shootdown(7)
    with pytest.raises(PageFault):
        mmu.store(1, pt, VA, b"c")
    assert m.memory.frame(3)[0] == ord("b")


def test_a_shootdown_forgets_one_address_space_on_every_core() -> None:
    m, mmu, pt = rig(cores=3)
    other = PageTable(m.executor, 8, owner=None)
    pt.pte(1).store(make_pte(3, RW))
    other.pte(1).store(make_pte(4, RW))
    for core in range(3):
        mmu.load(core, pt, PGSIZE, 1)
        mmu.load(core, other, PGSIZE, 1)
    mmu.shootdown(7)
    assert mmu.cached_ppns(7) == []
    assert mmu.cached_ppns(8) == [(0, 1, 4), (1, 1, 4), (2, 1, 4)]


def test_a_ranged_shootdown_forgets_the_range_and_keeps_what_is_outside() -> None:
    """flush_tlb_range: entries of pages overlapping [lo, hi) go on every core
    (the end rounded up to a page); those outside it, and other address
    spaces' entries in it, survive."""
    m, mmu, pt = rig(cores=2)
    other = PageTable(m.executor, 8, owner=None)
    for vpn in (1, 2, 3, 4):
        pt.pte(vpn).store(make_pte(vpn + 2, RW))
    other.pte(2).store(make_pte(9, RW))
    for core in range(2):
        for vpn in (1, 2, 3, 4):
            mmu.load(core, pt, vpn * PGSIZE, 1)
        mmu.load(core, other, 2 * PGSIZE, 1)
    mmu.shootdown(7, 2 * PGSIZE, 3 * PGSIZE + 1)  # pages 2 and 3
    assert sorted(mmu.cached_ppns(7)) == [(0, 1, 3), (0, 4, 6), (1, 1, 3), (1, 4, 6)]
    assert mmu.cached_ppns(8) == [(0, 2, 9), (1, 2, 9)]
    mmu.shootdown(7, 4 * PGSIZE, 4 * PGSIZE)  # an empty range flushes nothing
    assert len(mmu.cached_ppns(7)) == 4
    mmu.shootdown(7, PGSIZE, 2 * PGSIZE, cores=[1])  # page 1 on core 1 alone
    assert sorted(mmu.cached_ppns(7)) == [(0, 1, 3), (0, 4, 6), (1, 4, 6)]


def test_a_store_through_an_entry_outside_a_ranged_shootdown_still_lands() -> None:
    """What the range buys, and what it costs a caller that names the wrong
    one: the entry outside it keeps storing, with D cached, after the PTE went."""
    m, mmu, pt = rig()
    for vpn in (1, 2):
        pt.pte(vpn).store(make_pte(vpn + 2, RW))
        mmu.store(1, pt, vpn * PGSIZE, b"a")
        pt.pte(vpn).swap(0)
    mmu.shootdown(7, PGSIZE, 2 * PGSIZE)
    with pytest.raises(PageFault):
        mmu.store(1, pt, PGSIZE, b"b")
    mmu.store(1, pt, 2 * PGSIZE, b"b")  # page 2 was outside the range
    assert m.memory.frame(4)[0] == ord("b")


def test_the_tlb_evicts_its_oldest_entry_when_full() -> None:
    _m, mmu, pt = rig()
    for vpn in range(TLB_ENTRIES + 1):
        pt.pte(vpn + 16).store(make_pte(3, RO))
        mmu.load(0, pt, (vpn + 16) * PGSIZE, 1)
    cached = [vpn for _, vpn, _ in mmu.tlbs[0].entries()]
    assert len(cached) == TLB_ENTRIES and 16 not in cached


def test_the_access_hook_sees_every_access_as_it_lands() -> None:
    m, mmu, pt = rig()
    seen: list[tuple[object, int, int, bool]] = []
    m.on_access = lambda owner, va, ppn, write: seen.append((owner, va, ppn, write))
    pt.pte(VA >> 12).store(make_pte(5, RW))
    mmu.load(0, pt, VA + 3, 2)
    mmu.store(1, pt, VA + 4, b"z")
    mmu.store(1, pt, VA + 5, b"z")  # a TLB hit is seen too
    assert seen == [
        ("space7", VA + 3, 5, False),
        ("space7", VA + 4, 5, True),
        ("space7", VA + 5, 5, True),
    ]


def test_an_access_may_not_cross_a_page() -> None:
    _m, mmu, pt = rig()
    with pytest.raises(ValueError, match="cross a page"):
        mmu.load(0, pt, VA + PGSIZE - 2, 4)


@pytest.mark.parametrize("seed", SIM_SEEDS)
def test_no_store_lands_after_the_shootdown_returns(seed: int) -> None:
    """A store in flight when the kernel clears a PTE either lands before the
    shootdown completes or faults; none lands after (the core's busy lock)."""
    m, mmu, pt = rig("sim", seed)
    word = pt.pte(VA >> 12)
    word.store(make_pte(3, RW))
    mmu.store(1, pt, VA, b"\x00")  # core 1 caches the entry with D set
    after: list[int] = []

    def storer() -> None:
        for n in range(1, 30):
            try:
                mmu.store(1, pt, VA, bytes([n]))
            except PageFault:
                return

    def unmapper() -> None:
        old = word.swap(0)
        assert old & PTE_D
        mmu.shootdown(7)
        after.append(m.memory.frame(3)[0])

    m.spawn(storer, core=1)
    m.spawn(unmapper, core=0)
    m.run()
    assert m.memory.frame(3)[0] == after[0]
