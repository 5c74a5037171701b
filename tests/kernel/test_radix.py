"""The radix tree: index -> frame number, whose slot word the frame table holds."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagemap import AlreadyExists, InvalidArgument
from pagemap.kernel.radix import RADIX_MAX_INDEX, RadixTree
from pagemap.sync.threads import ThreadExecutor


def tree() -> RadixTree:
    return RadixTree(ThreadExecutor().atomic_array(1 << 16, "slots"), "t")


def test_insert_lookup_slot_delete() -> None:
    t = tree()
    t.insert(42, 7)
    assert t.lookup(42) == 7
    slot = t.lookup_slot(42)
    assert slot is not None and slot == t.lookup_slot(42)
    assert slot.cas(0, 8) and not slot.cas(0, 9)
    assert t.lookup_slot(42).load() == 8  # type: ignore[union-attr]
    assert t.lookup_slot(41) is None and t.lookup(41) == 0
    assert t.delete(42) == 7
    assert t.lookup_slot(42) is None
    assert t.delete(42) == 0
    assert t.nr_items == 0 and t.nr_nodes == 0


def test_insert_on_occupied_index_fails_and_changes_nothing() -> None:
    t = tree()
    t.insert(3, 1)
    with pytest.raises(AlreadyExists) as info:
        t.insert(3, 2)
    assert info.value.errno == errno.EEXIST
    assert t.lookup(3) == 1 and t.nr_items == 1


def test_frame_zero_is_never_an_entry() -> None:
    with pytest.raises(InvalidArgument):
        tree().insert(5, 0)


@pytest.mark.parametrize("index", [0, 63, 64, 4095, 2**52 - 1, 2**52, RADIX_MAX_INDEX])
def test_large_indices(index: int) -> None:
    t = tree()
    ppn = index & 0xFFFF or 1
    t.insert(index, ppn)
    assert t.lookup(index) == ppn
    assert list(t.items()) == [(index, ppn)]
    t.delete(index)
    assert t.nr_items == 0


def test_out_of_range_index_is_rejected() -> None:
    with pytest.raises(InvalidArgument):
        tree().insert(-1, 1)
    with pytest.raises(InvalidArgument):
        tree().insert(RADIX_MAX_INDEX + 1, 1)


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


def test_leaves_visit_each_leaf_once_in_order() -> None:
    t = tree()
    for i in (0, 5, 64, 200, 4096 * 64):
        t.insert(i, i % 1000 + 1)
    assert [base for base, _ in t.leaves()] == [0, 64, 192, 4096 * 64]
    assert [base for base, _ in t.leaves(65, 4096 * 64)] == [64, 192]


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
        ppn = index % 65521 + 1
        if insert:
            if index in model:
                with pytest.raises(AlreadyExists):
                    t.insert(index, ppn)
            else:
                t.insert(index, ppn)
                model[index] = ppn
        else:
            removed = t.delete(index)
            assert removed == model.get(index, 0)
            model.pop(index, None)
    assert list(t.items()) == sorted(model.items())
    assert [i for i, _ in t.items(lo, lo + width)] == sorted(
        i for i in model if lo <= i < lo + width
    )
    assert t.entries(lo, lo + width) == list(t.items(lo, lo + width))
    for index, ppn in model.items():
        assert t.lookup(index) == ppn
    assert t.nr_items == len(model)


@given(
    entries=st.sets(st.integers(0, 20_000), max_size=80),
    gone=st.sets(st.integers(0, 20_000), max_size=80),
    lo=st.integers(0, 20_000),
    width=st.integers(0, 20_000),
)
def test_clearing_leaves_then_pruning_equals_deleting_one_by_one(
    entries: set[int], gone: set[int], lo: int, width: int
) -> None:
    """What removal's fused pass does to the tree (empty entries leaf by leaf,
    with clear or clear_many, prune once) leaves the tree delete() would,
    entry for entry and node for node."""
    cleared, deleted = tree(), tree()
    for index in sorted(entries):
        cleared.insert(index, index + 1)
        deleted.insert(index, index + 1)
    hi = lo + width
    for n, (base, node) in enumerate(list(cleared.leaf_nodes(lo, hi))):
        js = [j for j in range(max(lo - base, 0), min(hi - base, 64)) if base + j in gone]
        if n % 2:
            cleared.clear_many(node, js)
        else:
            for j in js:
                assert cleared.clear(node, j) == (base + j + 1 if base + j in entries else 0)
    cleared.prune()
    for index in gone:
        if lo <= index < hi:
            deleted.delete(index)
    assert list(cleared.items()) == list(deleted.items())
    assert (cleared.nr_items, cleared.nr_nodes) == (deleted.nr_items, deleted.nr_nodes)
