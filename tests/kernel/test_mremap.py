"""mremap (kernel/mremap.py), one behaviour at a time: grow in place, move,
shrink, MREMAP_FIXED, what follows a moved page, the flush of the old range
before the page-table lock is released, and the errors, each leaving no
lock held.  Linux itself judges the same calls in test_linux_diff_mremap.py."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from pagemap import MAP_ANONYMOUS, MAP_LOCKED, MAP_PRIVATE, MAP_SHARED, PGSIZE, PROT_READ, Machine
from pagemap.kernel.errors import KernelError, SegmentationFault
from pagemap.kernel.mman import PROT_RW
from pagemap.kernel.mremap import MREMAP_FIXED, MREMAP_MAYMOVE, page_align
from pagemap.kernel.proc import Proc

FIXED = MREMAP_FIXED | MREMAP_MAYMOVE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def _proc() -> tuple[Machine, Proc]:
    m = Machine(cores=2, memory=32 * PGSIZE, executor="sim", seed=0)
    return m, m.process()


def _no_lock_held(p: Proc) -> None:
    assert not p.vmr_lock.held and not p.pte_lock.held


def test_a_grow_with_room_stays_in_place_and_a_blocked_one_moves_with_its_bytes() -> None:
    _, p = _proc()
    a = p.mmap(PGSIZE, PROT_RW, ANON)
    p.store(a, b"first")
    assert p.mremap(a, PGSIZE, 3 * PGSIZE) == a
    p.store(a + 2 * PGSIZE, b"third")
    p.mmap(PGSIZE, PROT_READ, ANON, addr=a + 3 * PGSIZE)  # blocks the next grow
    with pytest.raises(KernelError) as exc:
        p.mremap(a, 3 * PGSIZE, 4 * PGSIZE)
    assert exc.value.errno == errno.ENOMEM
    b = p.mremap(a, 3 * PGSIZE, 4 * PGSIZE, MREMAP_MAYMOVE)
    assert b != a
    assert p.load(b, 5) == b"first" and p.load(b + 2 * PGSIZE, 5) == b"third"
    assert p.load(b + 3 * PGSIZE, 4) == bytes(4)
    with pytest.raises(SegmentationFault):
        p.load(a, 1)
    assert p.check_quiescent() == []


def test_a_shrink_unmaps_the_tail_and_a_fixed_move_replaces_the_target() -> None:
    _, p = _proc()
    a = p.mmap(4 * PGSIZE, PROT_RW, ANON)
    for i in range(4):
        p.store(a + i * PGSIZE, bytes([i + 1]))
    assert p.mremap(a, 4 * PGSIZE, 2 * PGSIZE) == a
    with pytest.raises(SegmentationFault):
        p.load(a + 2 * PGSIZE, 1)
    t = p.mmap(2 * PGSIZE, PROT_READ, ANON)
    assert p.mremap(a, 2 * PGSIZE, 2 * PGSIZE, FIXED, t) == t
    assert p.load(t, 1) == b"\x01" and p.load(t + PGSIZE, 1) == b"\x02"
    p.store(t, b"w")  # the moved region's protection, not the target's
    assert len(p.anon) == 2  # the private pages followed; the target's went
    assert p.check_quiescent() == []


def test_a_private_copy_and_its_file_page_move_together(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * PGSIZE + b"b" * PGSIZE)
    m, p = _proc()
    f = m.open(path)
    a = p.mmap(2 * PGSIZE, PROT_RW, MAP_PRIVATE, f)
    p.store(a, b"mine")
    b = p.mremap(a, 2 * PGSIZE, 2 * PGSIZE, FIXED, a + 8 * PGSIZE)
    assert p.load(b, 5) == b"minea" and p.load(b + PGSIZE, 1) == b"b"
    f.pwrite(b"B", PGSIZE)
    assert p.load(b + PGSIZE, 1) == b"B"  # still the file's page: no copy made
    p.exit()
    assert path.read_bytes()[:4] == b"aaaa"


def test_a_grow_of_a_locked_mapping_populates_the_new_pages(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(3 * PGSIZE))
    m, p = _proc()
    f = m.open(path)
    a = p.mmap(PGSIZE, PROT_READ, MAP_SHARED | MAP_LOCKED, f)
    assert p.mremap(a, PGSIZE, 3 * PGSIZE) == a
    assert len(list(p.mapped_ppns())) == 3


def test_the_old_range_is_flushed_before_the_page_table_lock_is_released(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """eb66ae030829's order: by the time another task can take pte_lock, no
    core's TLB holds the old address."""
    m, p = _proc()
    a = p.mmap(PGSIZE, PROT_RW, ANON)
    seen: list[set[int]] = []

    def toucher() -> None:
        p.store(a, b"x")  # caches the entry on core 1

    m.spawn(toucher, core=1)
    m.run()
    lock_type = type(p.pte_lock)
    release, leave = lock_type.release, lock_type.__exit__

    def look(lock: object) -> None:
        if lock is p.pte_lock:
            seen.append({vpn for _, vpn, _ in m.mmu.cached_ppns(p.pid)})

    def watching(lock: object) -> None:
        look(lock)
        release(lock)  # type: ignore[arg-type]

    def watching_exit(lock: object, *exc: object) -> None:
        look(lock)
        leave(lock, *exc)  # type: ignore[arg-type]

    # A release by call and the end of a `with` block (which releases on its
    # own, one call for the lock's common path): watched both.
    monkeypatch.setattr(lock_type, "release", watching)
    monkeypatch.setattr(lock_type, "__exit__", watching_exit)
    b = p.mremap(a, PGSIZE, PGSIZE, FIXED, a + 4 * PGSIZE)
    monkeypatch.undo()
    assert seen and all(a // PGSIZE not in s for s in seen)
    assert p.load(b, 1) == b"x"


BAD = [
    ("unknown flag", (0, PGSIZE, PGSIZE, 8, 0), errno.EINVAL),
    ("MREMAP_DONTUNMAP", (0, PGSIZE, PGSIZE, MREMAP_MAYMOVE | 4, 0), errno.EINVAL),
    ("unaligned", (8, PGSIZE, PGSIZE, 0, 0), errno.EINVAL),
    ("new length 0", (0, PGSIZE, 0, 0, 0), errno.EINVAL),
    ("new length wraps", (0, PGSIZE, (1 << 64) - 1, 0, 0), errno.EINVAL),
    ("fixed without maymove", (0, PGSIZE, PGSIZE, MREMAP_FIXED, 8 * PGSIZE), errno.EINVAL),
    ("fixed unaligned", (0, PGSIZE, PGSIZE, FIXED, 8 * PGSIZE + 1), errno.EINVAL),
    ("fixed overlapping", (0, 2 * PGSIZE, 2 * PGSIZE, FIXED, PGSIZE), errno.EINVAL),
    ("nothing mapped", (16 * PGSIZE, PGSIZE, PGSIZE, MREMAP_MAYMOVE, 0), errno.EFAULT),
    ("grow past the region", (0, 3 * PGSIZE, 4 * PGSIZE, MREMAP_MAYMOVE, 0), errno.EFAULT),
    ("old length 0, private", (0, 0, PGSIZE, MREMAP_MAYMOVE, 0), errno.EINVAL),
    ("negative", (0, -1, PGSIZE, 0, 0), errno.EINVAL),
]


@pytest.mark.parametrize(("name", "args", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_with_linuxs_errno_and_no_lock_held(
    name: str, args: tuple[int, int, int, int, int], code: int
) -> None:
    _, p = _proc()
    a = p.mmap(2 * PGSIZE, PROT_RW, ANON)
    p.store(a, b"kept")
    addr, old, new, flags, new_addr = args
    with pytest.raises(KernelError) as exc:
        p.mremap(a + addr, old, new, flags, a + new_addr if new_addr else 0)
    assert exc.value.errno == code, exc.value
    _no_lock_held(p)
    assert p.load(a, 4) == b"kept"


def test_mremap_checks_types_and_answers_esrch_after_exit() -> None:
    _, p = _proc()
    with pytest.raises(TypeError):
        p.mremap("0", PGSIZE, PGSIZE)  # type: ignore[arg-type]
    p.exit()
    with pytest.raises(KernelError) as exc:
        p.mremap(0, PGSIZE, PGSIZE)
    assert exc.value.errno == errno.ESRCH


def test_page_align_wraps_as_an_unsigned_long() -> None:
    assert page_align(1) == PGSIZE and page_align(0) == 0
    assert page_align((1 << 64) - 1) == 0
