"""Synthetic page-access traces, for measuring replacement policies.

Each trace is a list of page numbers, seeded, the same on every machine.
"""

from __future__ import annotations

import itertools
import random


def zipf(requests: int, pages: int, alpha: float, seed: int = 0) -> list[int]:
    """`requests` accesses to `pages` pages whose popularity follows Zipf's law.

    The i-th most popular page is drawn with weight 1 / i**alpha; which page
    number is the i-th most popular is a seeded shuffle, so popularity says
    nothing about a page's number.
    """
    if pages < 1 or requests < 0 or alpha < 0:
        raise ValueError(
            f"a Zipf trace needs pages >= 1, requests >= 0 and alpha >= 0 "
            f"(got pages={pages}, requests={requests}, alpha={alpha})"
        )
    rng = random.Random(f"zipf:{seed}")
    ranked = list(range(pages))
    rng.shuffle(ranked)
    weights = list(itertools.accumulate(1.0 / (rank + 1) ** alpha for rank in range(pages)))
    return rng.choices(ranked, cum_weights=weights, k=requests)


def scan_loop(
    rounds: int, hot: int = 1000, loops: int = 5, scan: int = 3000, region: int = 20000
) -> list[int]:
    """A hot loop with periodic scans.

    Each round reads the `hot` pages 0..hot-1 in order `loops` times, then
    scans the next `scan` pages of a `region` of cold pages (numbered from
    `hot`), carrying on where the last scan stopped and wrapping around.  An
    LRU cache bigger than the loop still loses it to every scan; a cache
    that tells one use from two need not.
    """
    if min(rounds, hot, loops, scan, region) < 0 or region == 0:
        raise ValueError("a scan-loop trace needs non-negative counts and a cold region")
    trace: list[int] = []
    pos = 0
    for _ in range(rounds):
        for _ in range(loops):
            trace.extend(range(hot))
        trace.extend(hot + (pos + i) % region for i in range(scan))
        pos = (pos + scan) % region
    return trace
