"""Shared test helpers: page-map ops that count, and seed ranges."""

from __future__ import annotations

import pytest

from pagemap import PG_UPTODATE, IOFailure, Machine, Page, PageMap

# Concurrency tests run each scenario under this many SimExecutor seeds.
SIM_SEEDS = range(500)


def page_bytes(index: int, version: int = 0) -> bytes:
    """A page's worth of bytes that names its index (and a version)."""
    return (index.to_bytes(6, "little") + version.to_bytes(2, "little")) * 512


class CountingOps:
    """Page-map ops over an in-memory backing store, counting every call.

    `store` maps index -> the bytes "on disk"; missing pages read as page_bytes(i).
    Set fail_reads / fail_writes to make the next N calls raise EIO.
    """

    def __init__(self) -> None:
        self.store: dict[int, bytes] = {}
        self.reads: dict[int, int] = {}
        self.writes: list[int] = []
        self.fail_reads = 0
        self.fail_writes = 0

    def readpage(self, pm: PageMap, page: Page) -> None:
        self.reads[page.index] = self.reads.get(page.index, 0) + 1
        if self.fail_reads:
            self.fail_reads -= 1
            raise IOFailure(f"injected read error on page {page.index}")
        page.data[:] = self.store.get(page.index, page_bytes(page.index))
        page.flags.fetch_or(PG_UPTODATE)

    def writepage(self, pm: PageMap, page: Page) -> None:
        if self.fail_writes:
            self.fail_writes -= 1
            raise IOFailure(f"injected write error on page {page.index}")
        self.store[page.index] = bytes(page.data)
        self.writes.append(page.index)


def sim(seed: int, frames: int = 16, cores: int = 4, max_steps: int | None = 200_000) -> Machine:
    """A small SimExecutor machine: `frames` usable frames (plus reserved frame 0)."""
    return Machine(
        cores=cores, memory=(frames + 1) * 4096, executor="sim", seed=seed, max_steps=max_steps
    )


@pytest.fixture
def ops() -> CountingOps:
    return CountingOps()
