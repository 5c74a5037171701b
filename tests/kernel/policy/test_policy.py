"""Replacement policies: hand-checked sequences, skipping, kept and removed
victims, misuse, reference models, invariants for all, and Belady's OPT."""

from __future__ import annotations

import errno
import functools
import re
from collections.abc import Callable, Hashable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagemap.kernel.errors import InvalidArgument, KernelBug
from pagemap.kernel.policy import (
    DEFAULT,
    FIFO,
    LRU,
    LRU2Q,
    POLICIES,
    S3FIFO,
    Clock,
    Policy,
    make_policy,
    misses,
    opt,
)

NAMES = sorted(POLICIES)


def filled(policy: Policy, keys: str) -> Policy:
    for key in keys:
        policy.insert(key)
    return policy


def order(policy: Policy, name: str) -> list[Hashable]:
    return [key for key, _ in policy.lists()[name]]


def never(key: Hashable) -> bool:
    return False


def all_but(keys: str) -> Callable[[Hashable], bool]:
    """An evictable() that pins the named keys."""
    pinned = set(keys)
    return lambda key: key not in pinned


# -- the registry -------------------------------------------------------------------------
def test_registry_names_every_policy_and_the_default() -> None:
    assert NAMES == ["clock", "fifo", "lru", "lru2q", "s3fifo"]
    assert DEFAULT in POLICIES
    for name in NAMES:
        policy = make_policy(name)
        assert policy.name == name and type(policy) is POLICIES[name] and len(policy) == 0


def test_unknown_policy_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown replacement policy 'lfu'.*clock.*s3fifo"):
        make_policy("lfu")


# -- hand-checked sequences ---------------------------------------------------------------
def test_fifo_evicts_the_oldest_whatever_was_used() -> None:
    p = filled(FIFO(), "abc")
    p.referenced("a")
    assert p.victims(1) == ["a"]
    p.removed("a")
    assert p.victims(5) == ["b", "c"]


def test_lru_evicts_the_least_recently_used() -> None:
    p = filled(LRU(), "abc")
    p.referenced("a")  # b c a
    assert p.victims(1) == ["b"]
    assert order(p, "lru") == ["c", "a"]
    assert p.victims(2) == ["c", "a"]


def test_clock_gives_a_referenced_page_a_second_chance() -> None:
    p = filled(Clock(), "abc")
    p.referenced("a")
    p.referenced("c")
    # a's bit is cleared and a goes behind c; b has no bit: b goes.
    assert p.victims(1) == ["b"]
    assert p.lists()["clock"] == [("c", 1), ("a", 0)]
    # c's bit is cleared, c goes behind a; a has used its chance.
    assert p.victims(1) == ["a"]
    assert p.lists()["clock"] == [("c", 0)]


def test_clock_sweeps_every_bit_before_it_takes_the_first_page_again() -> None:
    p = filled(Clock(), "abc")
    for key in "abc":
        p.referenced(key)
    assert p.victims(1) == ["a"]
    assert p.lists()["clock"] == [("b", 0), ("c", 0)]


def test_lru2q_promotes_on_the_second_use_and_trims_the_active_list() -> None:
    p = filled(LRU2Q(), "abcd")
    p.referenced("a")  # the miss was a's first use; this is its second
    assert p.lists() == {"inactive": [(k, 0) for k in "bcd"], "active": [("a", 1)]}
    assert p.victims(1) == ["b"]  # active 1 <= inactive 3: nothing to trim
    p.removed("b")
    p.referenced("c")
    # active [a c] outnumbers inactive [d]: a, least recent, goes to the inactive head.
    assert p.victims(1) == ["d"]
    assert p.lists() == {"inactive": [("a", 0)], "active": [("c", 1)]}
    p.referenced("a")
    p.referenced("c")  # a use of an active page makes it the most recent
    assert order(p, "active") == ["a", "c"]


def test_lru2q_a_scan_never_reaches_the_active_list() -> None:
    p = filled(LRU2Q(), "hot")
    for key in "hot":
        p.referenced(key)
    evicted = []
    for i in range(20):  # pages used once
        if len(p) >= 6:
            (victim,) = p.victims(1)
            p.removed(victim)
            evicted.append(victim)
        p.insert(i)
    assert set(order(p, "active")) | set(order(p, "inactive")) >= set("hot")
    assert not set("hot") & set(evicted)


def test_s3fifo_moves_a_page_used_twice_to_main_and_ghosts_the_rest() -> None:
    p = filled(S3FIFO(fill_main_first=False), "0123456789")
    p.referenced("0")
    p.referenced("0")
    p.referenced("1")
    # 10 cached: small's share 1, main's 9; main is empty, so small is cut:
    # 0 (used twice) moves to main with a count of 0, 1 (once) is the victim.
    assert p.victims(1) == ["1"]
    assert p.lists()["main"] == [("0", 0)]
    p.removed("1")
    assert p.lists()["ghost"] == [("1", 0)]
    p.insert("1")  # remembered by the ghost: straight to main
    assert p.lists()["main"] == [("0", 0), ("1", 0)]
    assert p.lists()["ghost"] == []
    assert order(p, "small") == list("23456789")


def test_s3fifo_main_queue_is_a_two_bit_clock() -> None:
    p = filled(S3FIFO(small_ratio=0.5, fill_main_first=False), "abcd")
    for key in "abc":
        p.referenced(key)
        p.referenced(key)
    assert p.victims(1) == ["d"]  # a, b, c move to main on the way
    p.removed("d")
    p.insert("e")
    p.referenced("a")
    for _ in range(5):
        p.referenced("c")  # the count stops at 3
    assert p.lists()["main"] == [("a", 1), ("b", 0), ("c", 3)]
    # main (3) is over its share (4 - 2): a spends its count, b goes.
    assert p.victims(1) == ["b"]
    assert p.lists()["main"] == [("c", 3), ("a", 0)]


def test_s3fifo_first_fill_sends_all_but_the_small_share_to_main() -> None:
    p = filled(S3FIFO(), "0123456789")
    # As libCacheSim's S3FIFO places pages while a cache fills: the first
    # tenth in small, the rest in main, in order.
    assert p.victims(1) == ["0"]
    assert order(p, "small") == []
    assert order(p, "main") == list("123456789")


# -- evictable: pass over, keep place and history -----------------------------------------
@pytest.mark.parametrize("cls", [FIFO, LRU])
def test_list_policies_skip_pinned_keys_in_place(cls: type[Policy]) -> None:
    p = filled(cls(), "abcd")
    before = p.lists()
    assert p.victims(2, all_but("a")) == ["b", "c"]
    (name,) = before
    assert order(p, name) == ["a", "d"]
    assert p.victims(1, never) == [] and order(p, name) == ["a", "d"]


def test_clock_skips_pinned_pages_under_the_hand_keeping_their_place() -> None:
    p = filled(Clock(), "abcde")
    p.referenced("c")
    assert p.victims(1, all_but("ab")) == ["d"]
    # a and b stay under the hand, in order; c, met on the way, spent its bit
    # and went behind the hand as it would anyway.
    assert p.lists()["clock"] == [("a", 0), ("b", 0), ("e", 0), ("c", 0)]
    assert p.victims(2) == ["a", "b"]


def test_s3fifo_skips_pinned_pages_in_both_queues_keeping_their_counts() -> None:
    p = filled(S3FIFO(small_ratio=0.5, fill_main_first=False), "abcdef")
    for key in "ab":
        p.referenced(key)
        p.referenced(key)
    p.referenced("d")
    # small [a b c d e f]: a, b move to main; c is pinned; d (count 1) goes.
    assert p.victims(1, all_but("c")) == ["d"]
    assert p.lists()["small"] == [("c", 0), ("e", 0), ("f", 0)]
    assert p.lists()["main"] == [("a", 0), ("b", 0)]
    # Pinned at the front of main: passed over, still first, count untouched.
    assert p.victims(3, all_but("ace")) == ["f", "b"]
    assert p.lists()["small"] == [("c", 0), ("e", 0)]
    assert p.lists()["main"] == [("a", 0)]


def test_lru2q_skips_pinned_inactive_pages_in_place() -> None:
    p = filled(LRU2Q(), "abcde")
    assert p.victims(2, all_but("ab")) == ["c", "d"]
    assert p.lists() == {"inactive": [("a", 0), ("b", 0), ("e", 0)], "active": []}


@pytest.mark.parametrize("name", NAMES)
def test_nothing_evictable_gives_nothing_and_keeps_every_key(name: str) -> None:
    p = make_policy(name)
    filled(p, "abcdefgh")
    for key in "aceg":
        p.referenced(key)
    assert p.victims(4, never) == []
    assert len(p) == 8 and all(k in p for k in "abcdefgh") and p.in_flight() == []


# -- kept ---------------------------------------------------------------------------------
def test_fifo_puts_a_victim_it_keeps_at_the_back() -> None:
    p = filled(FIFO(), "abc")
    assert p.victims(1) == ["a"]
    p.kept("a")  # never the next victim again at once: it may be pinned
    assert order(p, "queue") == ["b", "c", "a"] and p.in_flight() == []


def test_lru_keeps_a_victim_as_just_used() -> None:
    p = filled(LRU(), "abc")
    assert p.victims(1) == ["a"]
    p.kept("a")
    assert order(p, "lru") == ["b", "c", "a"]


def test_clock_keeps_a_victim_under_the_hand_with_its_bit_set() -> None:
    p = filled(Clock(), "abc")
    assert p.victims(1) == ["a"]
    p.kept("a")
    assert p.lists()["clock"] == [("a", 1), ("b", 0), ("c", 0)]
    assert p.victims(1) == ["b"]


def test_s3fifo_keeps_a_victim_in_its_queue_with_one_more_use() -> None:
    p = filled(S3FIFO(fill_main_first=False), "0123456789")
    assert p.victims(1) == ["0"]
    p.kept("0")
    assert p.lists()["small"][0] == ("0", 1) and p.lists()["ghost"] == []


def test_lru2q_activates_a_victim_it_keeps() -> None:
    p = filled(LRU2Q(), "abc")
    assert p.victims(1) == ["a"]
    p.kept("a")
    assert p.lists() == {"inactive": [("b", 0), ("c", 0)], "active": [("a", 1)]}


@pytest.mark.parametrize("name", NAMES)
def test_a_victim_in_flight_is_cached_but_never_handed_out_twice(name: str) -> None:
    p = make_policy(name)
    filled(p, "abcd")
    first = p.victims(2)
    assert len(first) == 2 and all(k in p for k in first) and len(p) == 4
    second = p.victims(4)
    assert not set(first) & set(second) and len(second) == 2
    assert sorted(map(str, p.in_flight())) == list("abcd")


# -- removed, from anywhere ----------------------------------------------------------------
def busy(name: str) -> Policy:
    """A policy with keys in every list it has, some used, two in flight."""
    p = make_policy(name)
    filled(p, "abcdefghij")
    for key in "acegg":
        p.referenced(key)
    for victim in p.victims(3):
        p.removed(victim)
    filled(p, "klm")
    for key in "ikk":
        p.referenced(key)
    p.victims(2)
    return p


@pytest.mark.parametrize("name", NAMES)
def test_removed_takes_a_key_out_of_any_list(name: str) -> None:
    keys = [k for k in "abcdefghijklm" if k in busy(name)]
    assert len(keys) == 10
    for key in keys:
        p = busy(name)
        before = p.lists()
        pending = [k for k in p.in_flight() if k != key]
        p.removed(key)
        assert key not in p and len(p) == 9 and p.in_flight() == pending
        after = p.lists()
        for lst, entries in before.items():
            if lst != "ghost":
                assert after[lst] == [e for e in entries if e[0] != key]
        with pytest.raises(KernelBug):
            p.removed(key)


def test_s3fifo_ghosts_only_what_it_evicted_from_small() -> None:
    p = filled(S3FIFO(fill_main_first=False), "0123456789")
    p.removed("5")  # truncated, say: not an eviction
    (victim,) = p.victims(1)
    p.removed(victim)
    assert p.lists()["ghost"] == [(victim, 0)]


# -- misuse -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_misuse_is_a_kernel_bug_that_changes_nothing(name: str) -> None:
    p = make_policy(name)
    filled(p, "ab")
    (victim,) = p.victims(1)
    before = (p.lists(), p.in_flight())
    for call, key, what in (
        (p.insert, "b", "already cached"),
        (p.insert, victim, "already cached"),
        (p.removed, "z", "not cached"),
        (p.kept, "b", "did not hand out"),
        (p.kept, "z", "did not hand out"),
    ):
        with pytest.raises(KernelBug, match=what) as info:
            call(key)
        assert info.value.errno == errno.EFAULT and name in str(info.value)
        assert (p.lists(), p.in_flight()) == before
    with pytest.raises(InvalidArgument) as bad:
        p.victims(-1)
    assert bad.value.errno == errno.EINVAL and "negative" in str(bad.value)
    p.referenced("z")  # a harvest that raced with removal: ignored
    assert "z" not in p and (p.lists(), p.in_flight()) == before


@pytest.mark.parametrize("name", NAMES)
def test_evictable_raising_hands_out_nothing(name: str) -> None:
    p = make_policy(name)
    filled(p, "abcdefgh")
    p.victims(1)  # past S3-FIFO's first fill
    before = p.lists()  # nothing used: nothing for the search to age
    pending = p.in_flight()
    calls = []

    def flaky(key: Hashable) -> bool:
        calls.append(key)
        if len(calls) == 4:
            raise OSError(errno.EIO, "page state unreadable")
        return len(calls) != 2  # a victim, a page passed over, a victim, then the error

    with pytest.raises(OSError, match="unreadable"):
        p.victims(5, flaky)
    assert p.in_flight() == pending and len(p) == 8 and p.lists() == before
    assert len(p.victims(10)) == 7  # everything is still there to be found


@pytest.mark.parametrize(
    "make",
    [
        lambda: S3FIFO(small_ratio=0),
        lambda: S3FIFO(small_ratio=1.0),
        lambda: S3FIFO(ghost_ratio=-0.1),
        lambda: S3FIFO(move_to_main=0),
        lambda: LRU2Q(active_ratio=-1),
    ],
)
def test_bad_parameters_say_which(make: Callable[[], Policy]) -> None:
    with pytest.raises(InvalidArgument) as info:
        make()
    assert info.value.errno == errno.EINVAL


# -- against tiny reference models --------------------------------------------------------
def run(policy: Policy, trace: list[int], capacity: int) -> tuple[list[bool], list[Hashable]]:
    """(hit or miss per access, victims in order)."""
    hits, out = [], []
    for key in trace:
        hits.append(key in policy)
        if hits[-1]:
            policy.referenced(key)
            continue
        if len(policy) >= capacity:
            (victim,) = policy.victims(1)
            policy.removed(victim)
            out.append(victim)
        policy.insert(key)
    return hits, out


def model_list(trace: list[int], capacity: int, move: bool) -> tuple[list[bool], list[int]]:
    """LRU (move=True) or FIFO on a plain list, oldest first."""
    cache: list[int] = []
    hits, out = [], []
    for key in trace:
        hits.append(key in cache)
        if hits[-1]:
            if move:
                cache.remove(key)
                cache.append(key)
            continue
        if len(cache) >= capacity:
            out.append(cache.pop(0))
        cache.append(key)
    return hits, out


def model_clock(trace: list[int], capacity: int) -> tuple[list[bool], list[int]]:
    """The textbook ring of frames with a hand."""
    frames: list[int] = []
    bits: list[bool] = []
    hand = 0
    hits, out = [], []
    for key in trace:
        hits.append(key in frames)
        if hits[-1]:
            bits[frames.index(key)] = True
        elif len(frames) < capacity:
            frames.append(key)
            bits.append(False)
        else:
            while bits[hand]:
                bits[hand] = False
                hand = (hand + 1) % capacity
            out.append(frames[hand])
            frames[hand], bits[hand] = key, False
            hand = (hand + 1) % capacity
    return hits, out


def model_lru2q(trace: list[int], capacity: int) -> tuple[list[bool], list[int]]:
    """Two plain lists, oldest first; trim the active list at eviction time."""
    inactive: list[int] = []
    active: list[int] = []
    hits, out = [], []
    for key in trace:
        hits.append(key in inactive or key in active)
        if key in active:
            active.remove(key)
            active.append(key)
        elif key in inactive:
            inactive.remove(key)
            active.append(key)
        else:
            if len(inactive) + len(active) >= capacity:
                while active and (len(active) > len(inactive) or not inactive):
                    inactive.append(active.pop(0))
                out.append(inactive.pop(0))
            inactive.append(key)
    return hits, out


traces = st.lists(st.integers(0, 9), max_size=120)
capacities = st.integers(1, 7)


@settings(deadline=None)
@given(traces, capacities)
def test_lru_matches_a_list(trace: list[int], capacity: int) -> None:
    assert run(LRU(), trace, capacity) == model_list(trace, capacity, move=True)


@settings(deadline=None)
@given(traces, capacities)
def test_fifo_matches_a_list(trace: list[int], capacity: int) -> None:
    assert run(FIFO(), trace, capacity) == model_list(trace, capacity, move=False)


@settings(deadline=None)
@given(traces, capacities)
def test_clock_matches_a_ring_with_a_hand(trace: list[int], capacity: int) -> None:
    assert run(Clock(), trace, capacity) == model_clock(trace, capacity)


@settings(deadline=None)
@given(traces, capacities)
def test_lru2q_matches_two_lists(trace: list[int], capacity: int) -> None:
    assert run(LRU2Q(), trace, capacity) == model_lru2q(trace, capacity)


@settings(deadline=None)
@given(traces, capacities, st.sampled_from(NAMES))
def test_misses_counts_what_run_sees(trace: list[int], capacity: int, name: str) -> None:
    hits, _ = run(make_policy(name), trace, capacity)
    assert misses(make_policy(name), trace, capacity) == hits.count(False)


# -- invariants, for every policy, under any sequence of calls ------------------------------
@settings(max_examples=100, deadline=None)
@given(st.sampled_from(NAMES), st.data())
def test_invariants(name: str, data: st.DataObject) -> None:
    p = make_policy(name)
    cached: set[int] = set()
    pending: set[int] = set()
    keys = st.integers(0, 11)
    for _ in range(data.draw(st.integers(0, 60), "steps")):
        op = data.draw(st.sampled_from(["insert", "ref", "victims", "removed", "kept"]))
        if op == "insert":
            key = data.draw(keys)
            if key in cached:
                continue
            p.insert(key)
            cached.add(key)
        elif op == "ref":
            p.referenced(data.draw(keys))
        elif op == "victims":
            n = data.draw(st.integers(0, 4))
            pinned = data.draw(st.frozensets(keys))
            asked: list[int] = []

            def evictable(k: Hashable, pinned: frozenset[int] = pinned) -> bool:
                assert isinstance(k, int)
                asked.append(k)
                return k not in pinned

            out = p.victims(n, evictable)
            assert len(out) <= n and len(set(out)) == len(out)
            for k in out:
                assert isinstance(k, int)
                assert k in cached and k not in pending and k not in pinned
            assert set(asked) <= cached - pending
            pending.update(k for k in out if isinstance(k, int))
            if len(out) < n:  # nothing else could go
                assert cached - pending <= pinned
        elif op == "removed":
            if not cached:
                continue
            key = data.draw(st.sampled_from(sorted(cached)))
            p.removed(key)
            cached.discard(key)
            pending.discard(key)
        elif pending:
            key = data.draw(st.sampled_from(sorted(pending)))
            p.kept(key)
            pending.discard(key)
        assert len(p) == len(cached)
        assert set(p.in_flight()) == pending
        listed = [k for lst, es in p.lists().items() if lst != "ghost" for k, _ in es]
        assert len(listed) == len(set(listed)) and set(listed) == cached - pending
        assert all(k in p for k in cached) and not any(k in p for k in set(range(12)) - cached)


# -- Belady's OPT -------------------------------------------------------------------------
def test_opt_by_hand() -> None:
    trace = [1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5]
    # With 3 frames: 1 2 3 miss; 4 evicts 3 (used last); 1 2 hit; 5 evicts 4;
    # 1 2 hit; 3 evicts 1 or 2 (never used again); 4 evicts another; 5 hits.
    assert opt(trace, 3) == 7
    assert opt(trace, 4) == 6
    assert opt(trace, 0) == len(trace)
    assert opt([], 3) == 0
    with pytest.raises(InvalidArgument):
        opt(trace, -1)


@functools.cache
def brute(trace: tuple[int, ...], capacity: int, cache: frozenset[int] = frozenset()) -> int:
    """The fewest misses over every choice of victim."""
    if not trace:
        return 0
    key, rest = trace[0], trace[1:]
    if key in cache:
        return brute(rest, capacity, cache)
    if len(cache) < capacity:
        return 1 + brute(rest, capacity, cache | {key})
    return 1 + min(brute(rest, capacity, cache - {v} | {key}) for v in cache)


@settings(deadline=None)
@given(st.lists(st.integers(0, 4), max_size=14), st.integers(1, 4))
def test_opt_is_the_minimum_over_every_choice(trace: list[int], capacity: int) -> None:
    assert opt(trace, capacity) == brute(tuple(trace), capacity)


@settings(deadline=None)
@given(st.lists(st.integers(0, 15), max_size=200), st.integers(1, 10), st.sampled_from(NAMES))
def test_no_policy_beats_opt(trace: list[int], capacity: int, name: str) -> None:
    assert opt(trace, capacity) <= misses(make_policy(name), trace, capacity)


def test_misses_needs_room_for_a_page() -> None:
    with pytest.raises(InvalidArgument, match="at least one page"):
        misses(LRU(), [1], 0)


def test_the_readme_example_runs() -> None:
    readme = Path(__file__).resolve().parents[3] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
    (example,) = [b for b in blocks if "make_policy" in b]
    scope: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), scope)  # its asserts are the test
    assert scope["counts"] == {"lru": 6, "clock": 6, "s3fifo": 7}
