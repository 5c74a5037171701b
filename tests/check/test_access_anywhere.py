"""The checker judges every access, of every mapping: the default access hook
(oracles/memory.py access_anywhere) with no scenario saying what is mapped."""

from __future__ import annotations

import pytest

from pagemap.check.context import RunContext
from pagemap.hw.memory import PGSHIFT, PGSIZE
from pagemap.kernel.mman import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from pagemap.machine import Machine
from pagemap.oracles import MEMORY_SAFETY, Violation
from pagemap.sync.sim import SimExecutor


def _context() -> RunContext:
    sched = SimExecutor()
    return RunContext(Machine(cores=1, memory="64KiB", executor=sched), sched)


def test_a_store_into_another_processs_anonymous_page_is_a_violation() -> None:
    ctx = _context()
    a, b = ctx.machine.process(), ctx.machine.process()
    rw, anon = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
    va_a, va_b = a.mmap(PGSIZE, rw, anon), b.mmap(PGSIZE, rw, anon)
    a.store(va_a, b"a")  # each process faults in its own zeroed page
    b.store(va_b, b"b")  # the hook is installed: both land where they should
    theirs = b.anon[va_b >> PGSHIFT].ppn
    with pytest.raises(Violation) as caught:
        ctx.memory.access_anywhere(a, va_a, theirs, True)
    assert caught.value.oracle == MEMORY_SAFETY
    assert "an anonymous page that is not the process's own" in caught.value.message


def test_an_access_to_a_free_frame_is_a_violation_wherever_it_is_mapped() -> None:
    ctx = _context()
    a = ctx.machine.process()
    free = next(
        p for p in range(1, ctx.machine.allocator.nr_frames) if ctx.machine.allocator.is_free(p)
    )
    with pytest.raises(Violation, match=f"landed in free frame {free}"):
        ctx.memory.access_anywhere(a, 0x10000000, free, False)
