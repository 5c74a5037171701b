"""Belady's OPT (MIN): the fewest misses any demand-paged cache can have.

It needs the whole future, so it is a function over a finished trace, not a
policy: on a miss with the cache full, evict the page whose next use lies
furthest ahead (or never comes).  The page that missed is always brought in,
as a page cache must.  O(n log n): one backward pass for next uses, then a
heap of (next use, key) with stale entries skipped as they surface.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence

from pagemap.kernel.errors import InvalidArgument

NEVER = 1 << 62  # the next use of a key that is not used again


def next_uses(trace: Sequence[Hashable]) -> list[int]:
    """For each position, the position of the next access to the same key (or NEVER)."""
    nxt = [NEVER] * len(trace)
    seen: dict[Hashable, int] = {}
    for i in range(len(trace) - 1, -1, -1):
        key = trace[i]
        nxt[i] = seen.get(key, NEVER)
        seen[key] = i
    return nxt


def opt(trace: Sequence[Hashable], capacity: int) -> int:
    """Misses of Belady's OPT on `trace` with room for `capacity` pages."""
    if capacity < 0:
        raise InvalidArgument(f"opt: a cache cannot hold {capacity} pages")
    if capacity == 0:
        return len(trace)
    nxt = next_uses(trace)
    cached: dict[Hashable, int] = {}  # key -> position of its next use
    heap: list[tuple[int, int, Hashable]] = []  # (-next use, tie, key); stale ones linger
    misses = 0
    for i, key in enumerate(trace):
        if key not in cached:
            misses += 1
            if len(cached) >= capacity:
                while True:
                    neg, _, victim = heapq.heappop(heap)
                    if cached.get(victim) == -neg:
                        del cached[victim]
                        break
        cached[key] = nxt[i]
        # The position breaks ties between keys never used again (all NEVER),
        # so keys themselves are never compared.
        heapq.heappush(heap, (-nxt[i], i, key))
    return misses
