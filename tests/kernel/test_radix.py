"""The radix tree: index -> atomic slot."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagemap import AlreadyExists, InvalidArgument
from pagemap.kernel.radix import RADIX_MAX_INDEX, RadixTree
from pagemap.sync.threads import ThreadExecutor


def tree() -> RadixTree:
    return RadixTree(ThreadExecutor().atomic, "t")


def test_insert_lookup_cas_delete() -> None:
    t = tree()
    slot = t.insert(42, 7)
    assert t.lookup_slot(42) is slot
    assert slot.load() == 7
    assert slot.cas(7, 8) and not slot.cas(7, 9)
    assert t.lookup_slot(42).load() == 8  # type: ignore[union-attr]
    assert t.lookup_slot(41) is None
    assert t.delete(42) is slot
    assert t.lookup_slot(42) is None
    assert t.delete(42) is None
    assert t.nr_items == 0 and t.nr_nodes == 0


def test_insert_on_occupied_index_fails_and_changes_nothing() -> None:
    t = tree()
    slot = t.insert(3, 1)
    with pytest.raises(AlreadyExists) as info:
        t.insert(3, 2)
    assert info.value.errno == errno.EEXIST
    assert t.lookup_slot(3) is slot and slot.value == 1 and t.nr_items == 1


@pytest.mark.parametrize("index", [0, 63, 64, 4095, 2**52 - 1, 2**52, RADIX_MAX_INDEX])
def test_large_indices(index: int) -> None:
    t = tree()
    t.insert(index, index & 0xFFFF)
    assert t.lookup_slot(index).value == index & 0xFFFF  # type: ignore[union-attr]
    assert [i for i, _ in t.items()] == [index]
    t.delete(index)
    assert t.nr_items == 0


def test_out_of_range_index_is_rejected() -> None:
    with pytest.raises(InvalidArgument):
        tree().insert(-1, 0)
    with pytest.raises(InvalidArgument):
        tree().insert(RADIX_MAX_INDEX + 1, 0)


def test_memory_grows_with_entries_not_with_the_largest_index() -> None:
    t = tree()
    t.insert(2**52, 1)
    one_far = t.nr_nodes
    assert one_far <= 9  # one path of at most nine levels
    for i in range(1, 64):
        t.insert(2**52 + i, 1)  # same leaf
    assert t.nr_nodes == one_far
    t.delete(2**52)
    for i in range(1, 64):
        t.delete(2**52 + i)
    assert t.nr_nodes == 0  # emptied nodes are pruned


@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.integers(0, 5000) | st.integers(0, 2**53)), max_size=60
    ),
    lo=st.integers(0, 6000),
    width=st.integers(0, 6000),
)
def test_matches_a_dict(ops: list[tuple[bool, int]], lo: int, width: int) -> None:
    t = tree()
    model: dict[int, int] = {}
    for insert, index in ops:
        if insert:
            if index in model:
                with pytest.raises(AlreadyExists):
                    t.insert(index, index)
            else:
                t.insert(index, index)
                model[index] = index
        else:
            removed = t.delete(index)
            assert (removed is not None) == (index in model)
            model.pop(index, None)
    assert [i for i, _ in t.items()] == sorted(model)
    assert [i for i, _ in t.items(lo, lo + width)] == sorted(
        i for i in model if lo <= i < lo + width
    )
    for index in model:
        assert t.lookup_slot(index).value == index  # type: ignore[union-attr]
    assert t.nr_items == len(model)
