"""Replay an access trace through a policy, as a demand-paged cache of fixed size would.

Each access is a hit (`referenced`) or a miss; a miss with the cache full
evicts one victim first (`victims(1)` then `removed`), then `insert`s the
page, the order libCacheSim's simulators follow.  No page is ever pinned.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from pagemap.kernel.errors import InvalidArgument
from pagemap.kernel.policy.base import Policy


def misses(policy: Policy, trace: Iterable[Hashable], capacity: int) -> int:
    """How many accesses of `trace` miss in a cache of `capacity` pages run by `policy`."""
    if capacity < 1:
        raise InvalidArgument(f"a cache needs room for at least one page, not {capacity}")
    count = 0
    insert, referenced, victims, removed = (
        policy.insert,
        policy.referenced,
        policy.victims,
        policy.removed,
    )
    for key in trace:
        if key in policy:
            referenced(key)
            continue
        count += 1
        if len(policy) >= capacity:
            for victim in victims(1):
                removed(victim)
        insert(key)
    return count
