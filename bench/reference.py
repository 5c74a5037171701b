"""libCacheSim (PyPI `libcachesim`, a C cache simulator) on our traces: the
reference each of our policies is checked against, and Belady's OPT again.

Every object is one page (size 1), so a cache of size n holds n pages, and a
request is a hit or a miss exactly as in pagemap.kernel.policy.misses.  Where
libCacheSim's variant has parameters, they are set to what ours does:

    fifo    FIFO
    lru     LRU
    clock   Clock, init-freq=0, n-bit-counter=1 (one referenced bit, clear on insert)
    s3fifo  S3FIFO, small 0.10, ghost 0.90, move-to-main threshold 2 (its defaults)
    lru2q   SLRU with two equal segments (n-seg=2), the nearest it has: a
            probation and a protected LRU, promotion on a hit in probation

and, beside them, S3FIFOv0 (the paper's rule for a filling cache, our
S3FIFO(fill_main_first=False)), ARC and TwoQ (Johnson and Shasha's 2Q,
which is not Linux's two lists) for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import libcachesim as lcs
from libcachesim.libcachesim_python import (
    CommonCacheParams,
    S3FIFOv0_init,
    SLRU_init,
)

from pagemap.kernel.policy.opt import NEVER, next_uses

INT64_MAX = (1 << 63) - 1
HASHPOWER = 16  # the C hash table's buckets, 2**16: its default 2**24 costs 70 ms a cache

Make = Callable[[int], Any]


def _raw(init: Callable[[Any, str], Any], params: str) -> Make:
    """A cache class the Python package does not wrap with these parameters."""

    def make(capacity: int) -> Any:
        common = CommonCacheParams(
            cache_size=capacity,
            default_ttl=86400 * 300,
            hashpower=HASHPOWER,
            consider_obj_metadata=False,
        )
        return lcs.CacheBase(_cache=init(common, params))

    return make


# our policy name -> (libCacheSim's name for it, how to build it)
SAME: dict[str, tuple[str, Make]] = {
    "fifo": ("FIFO", lambda c: lcs.FIFO(c, hashpower=HASHPOWER)),
    "lru": ("LRU", lambda c: lcs.LRU(c, hashpower=HASHPOWER)),
    "clock": ("Clock", lambda c: lcs.Clock(c, hashpower=HASHPOWER, init_freq=0, n_bit_counter=1)),
    "s3fifo": ("S3FIFO", lambda c: lcs.S3FIFO(c, hashpower=HASHPOWER)),
    "lru2q": ("SLRU n-seg=2", _raw(SLRU_init, "n-seg=2")),
}

OTHERS: dict[str, Make] = {
    "S3FIFOv0": _raw(
        S3FIFOv0_init, "fifo-size-ratio=0.1,ghost-size-ratio=0.9,move-to-main-threshold=2"
    ),
    "ARC": lambda c: lcs.ARC(c, hashpower=HASHPOWER),
    "TwoQ": lambda c: lcs.TwoQ(c, hashpower=HASHPOWER),
}


def misses(make: Make, trace: Sequence[int], capacity: int) -> int:
    """Misses of the libCacheSim cache `make(capacity)` over `trace`."""
    cache = make(capacity)
    req = lcs.Request()
    req.obj_size = 1
    get = cache.get
    hits = 0
    for key in trace:
        req.obj_id = key
        hits += get(req)
    return len(trace) - hits


def belady_misses(trace: Sequence[int], capacity: int) -> int:
    """libCacheSim's Belady, told each request's next use (its position in the trace)."""
    cache = lcs.Belady(capacity, hashpower=HASHPOWER)
    req = lcs.Request()
    req.obj_size = 1
    hits = 0
    for key, nxt in zip(trace, next_uses(trace), strict=True):
        req.obj_id = key
        req.next_access_vtime = INT64_MAX if nxt == NEVER else nxt
        hits += cache.get(req)
    return len(trace) - hits


# libCacheSim's S3FIFO admits nothing when its small queue has room for only
# one page (it refuses an object as big as the queue), so every cache we
# compare holds at least this many pages: a small queue of two.
SMALLEST = 20
