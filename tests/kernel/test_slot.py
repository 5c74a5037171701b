"""The slot word, bit for bit as in the seed: ppn 0-51, REMOVAL 52, refcount 53-63."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagemap import RefcountOverflow, decode_slot, encode_slot
from pagemap.kernel import slot as pmm
from pagemap.kernel.errors import InvalidArgument, KernelBug
from tests.conftest import CountingOps, sim


def test_layout_constants_match_the_seed() -> None:
    assert pmm.PM_FLAGS_SHIFT == 52
    assert pmm.PM_REFCNT_SHIFT == 53
    assert pmm.PM_REMOVAL == 1 << 52
    assert pmm.PM_REFCNT_MAX == 2047


def test_encode_places_every_field() -> None:
    assert encode_slot(5) == 5
    assert encode_slot(5, removal=True) == 5 | (1 << 52)
    assert encode_slot(5, refcnt=3) == 5 | (3 << 53)
    assert encode_slot((1 << 52) - 1, True, 2047) == (1 << 64) - 1


@given(ppn=st.integers(0, (1 << 52) - 1), removal=st.booleans(), refcnt=st.integers(0, 2047))
def test_helpers_agree_with_the_layout(ppn: int, removal: bool, refcnt: int) -> None:
    val = encode_slot(ppn, removal, refcnt)
    assert decode_slot(val) == (refcnt, removal, ppn)
    assert pmm.slot_get_ppn(val) == ppn
    assert pmm.slot_check_removal(val) is removal
    assert pmm.slot_check_refcnt(val) == refcnt
    assert pmm.slot_check_removal(pmm.slot_set_removal(val))
    assert not pmm.slot_check_removal(pmm.slot_clear_removal(val))
    assert pmm.slot_clear_removal(pmm.slot_set_removal(val)) == val & ~(1 << 52)
    # Changing the page never disturbs the flag or the count.
    other = pmm.slot_set_ppn(val, 7)
    assert decode_slot(other) == (refcnt, removal, 7)
    if refcnt < 2047:
        assert pmm.slot_check_refcnt(pmm.slot_inc_refcnt(val)) == refcnt + 1
        assert pmm.slot_get_ppn(pmm.slot_inc_refcnt(val)) == ppn
    if refcnt > 0:
        assert pmm.slot_check_refcnt(pmm.slot_dec_refcnt(val)) == refcnt - 1


def test_clearing_the_page_leaves_clean_bits() -> None:
    # The seed computed page2ppn(NULL) here; "no page" must be exactly ppn 0.
    val = encode_slot(12345, removal=True, refcnt=0)
    cleared = pmm.slot_set_ppn(val, 0)
    assert cleared == 1 << 52
    assert decode_slot(cleared) == (0, True, 0)


def test_decode_prints_refcount_removal_ppn() -> None:
    assert str(decode_slot(encode_slot(9, True, 2))) == "2|R|9"
    assert str(decode_slot(encode_slot(9))) == "0|-|9"


def test_refcount_refuses_to_wrap() -> None:
    full = encode_slot(3, False, 2047)
    with pytest.raises(RefcountOverflow) as info:
        pmm.slot_inc_refcnt(full)
    assert info.value.errno == errno.EOVERFLOW
    assert "2047" in str(info.value)
    with pytest.raises(KernelBug):
        pmm.slot_dec_refcnt(encode_slot(3))


def test_bad_fields_are_rejected() -> None:
    with pytest.raises(InvalidArgument):
        encode_slot(1 << 52)
    with pytest.raises(InvalidArgument):
        encode_slot(1, refcnt=2048)


def test_the_2048th_concurrent_reference_raises() -> None:
    machine = sim(0)
    pm = machine.page_map(CountingOps())
    pages = [pm.load_page(0) for _ in range(2047)]
    assert decode_slot(pages[0].tree_slot.value).refcnt == 2047  # type: ignore[union-attr]
    with pytest.raises(RefcountOverflow):
        pm.load_page(0)
    # The failed attempt changed nothing and left no lock held.
    assert decode_slot(pages[0].tree_slot.value).refcnt == 2047  # type: ignore[union-attr]
    assert not pm.lock.held
    for page in pages:
        pm.put_page(page)
    assert machine.check_quiescent() == []
