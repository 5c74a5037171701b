"""FrameLRU2Q, the kernel's lru2q over per-frame arrays, makes LRU2Q's choices."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagemap import KernelBug
from pagemap.kernel.policy import LRU2Q, FrameLRU2Q, make_policy

FRAMES = 12

calls = st.lists(
    st.tuples(
        st.sampled_from(["insert", "referenced", "victims", "removed", "kept", "discard_many"]),
        st.integers(0, FRAMES - 1),
        st.integers(1, 4),
        st.sets(st.integers(0, FRAMES - 1), max_size=4),
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(calls=calls)
def test_frame_lru2q_makes_the_choices_lru2q_makes(
    calls: list[tuple[str, int, int, set[int]]],
) -> None:
    ref, ours = LRU2Q(), FrameLRU2Q(FRAMES)
    for call, key, n, pinned in calls:
        if call == "insert":
            if key in ref:
                continue
            ref.insert(key)
            ours.insert(key)
        elif call == "referenced":
            ref.referenced(key)
            ours.referenced(key)
        elif call == "victims":
            got = ours.victims(n, lambda k: k not in pinned)
            assert got == ref.victims(n, lambda k: k not in pinned)
        elif call == "removed" and key in ref:
            ref.removed(key)
            ours.removed(key)
        elif call == "kept" and ref.is_in_flight(key):
            ref.kept(key)
            ours.kept(key)
        elif call == "discard_many":  # resident, in flight or absent alike
            ref.discard_many(sorted(pinned))
            ours.discard_many(sorted(pinned))
            assert not any(k in ours for k in pinned)
        assert ours.lists() == ref.lists()
        assert len(ours) == len(ref) and ours.in_flight() == ref.in_flight()


def test_the_kernel_gets_the_array_form_and_refuses_keys_outside_it() -> None:
    policy = make_policy("lru2q", frames=4)
    assert isinstance(policy, FrameLRU2Q)
    with pytest.raises(KernelBug):
        policy.insert(4)
    with pytest.raises(KernelBug):
        policy.insert("page")
    policy.insert(3)
    with pytest.raises(KernelBug):
        policy.insert(3)
    assert isinstance(make_policy("lru2q"), LRU2Q) and not isinstance(
        make_policy("lru2q"), FrameLRU2Q
    )
