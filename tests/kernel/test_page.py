"""Frames and the page allocator."""

from __future__ import annotations

import errno

import pytest

from pagemap import PGSIZE, KernelBug, Machine, OutOfMemory
from pagemap.hw.memory import PhysicalMemory, parse_size


@pytest.mark.parametrize(
    ("text", "nbytes"),
    [("4096", 4096), ("64KiB", 65536), ("64MiB", 64 << 20), ("1G", 1 << 30), (" 8k ", 8192)],
)
def test_parse_size(text: str, nbytes: int) -> None:
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("text", ["", "lots", "12XB", "-4096", "1.5MiB"])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_memory_must_be_whole_frames() -> None:
    with pytest.raises(ValueError, match="multiple of the page size"):
        PhysicalMemory(PGSIZE + 1)
    with pytest.raises(ValueError, match="at least two frames"):
        PhysicalMemory(PGSIZE)


def test_frames_are_views_of_one_buffer() -> None:
    mem = PhysicalMemory(4 * PGSIZE)
    mem.frame(2)[:4] = b"abcd"
    assert bytes(mem.frame(2)[:4]) == b"abcd"
    assert bytes(mem.frame(1)[:4]) == b"\0\0\0\0"
    with pytest.raises(IndexError):
        mem.frame(4)


def test_frame_zero_is_never_handed_out_and_oom_is_clean() -> None:
    machine = Machine(cores=1, memory=8 * PGSIZE)
    alloc = machine.allocator
    assert alloc.nr_free == 7
    pages = [alloc.alloc() for _ in range(7)]
    assert sorted(p.ppn for p in pages) == list(range(1, 8))
    with pytest.raises(OutOfMemory) as info:
        alloc.alloc()
    assert info.value.errno == errno.ENOMEM
    assert "7 page frames" in str(info.value)
    assert alloc.nr_free == 0
    assert not alloc._lock.held


def test_last_decref_returns_the_frame() -> None:
    machine = Machine(cores=1, memory=4 * PGSIZE)
    alloc = machine.allocator
    page = alloc.alloc()
    alloc.incref(page)
    alloc.decref(page)
    assert not alloc.is_free(page.ppn)
    alloc.decref(page)
    assert alloc.is_free(page.ppn)
    assert alloc.nr_free == 3
    # LIFO: the frame just freed is the next one handed out.
    assert alloc.alloc() is page


def test_double_free_and_use_after_free_are_caught() -> None:
    machine = Machine(cores=1, memory=4 * PGSIZE)
    alloc = machine.allocator
    page = alloc.alloc()
    alloc.decref(page)
    with pytest.raises(KernelBug, match="double free"):
        alloc.decref(page)
    with pytest.raises(KernelBug, match="use after free"):
        alloc.incref(page)
    # Neither mistake corrupted the count or the free list.
    assert page.kref.value == 0
    assert alloc.nr_free == 3


def test_freed_page_forgets_its_past() -> None:
    machine = Machine(cores=1, memory=4 * PGSIZE)
    page = machine.allocator.alloc()
    page.flags.store(0x3F)
    page.index = 5
    machine.allocator.decref(page)
    assert page.flags.value == 0 and page.index == -1 and page.mapping is None


def test_a_batch_of_decrefs_frees_the_last_references_under_one_lock() -> None:
    machine = Machine(cores=1, memory=6 * PGSIZE)
    alloc = machine.allocator
    pages = [alloc.alloc() for _ in range(4)]
    alloc.incref(pages[1])  # a second holder: this frame stays
    frees = alloc.frees
    alloc.decref_many(pages)
    assert [alloc.is_free(p.ppn) for p in pages] == [True, False, True, True]
    assert alloc.frees == frees + 3 and pages[1].kref.value == 1
    assert not alloc._lock.held


def test_a_double_free_in_a_batch_still_frees_the_rest() -> None:
    machine = Machine(cores=1, memory=6 * PGSIZE)
    alloc = machine.allocator
    pages = [alloc.alloc() for _ in range(3)]
    alloc.decref(pages[0])
    with pytest.raises(KernelBug, match="double free"):
        alloc.decref_many(pages)
    assert all(alloc.is_free(p.ppn) for p in pages) and alloc.nr_free == 5
    assert pages[0].kref.value == 0 and not alloc._lock.held
