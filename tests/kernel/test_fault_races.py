"""Page faults racing truncate, and each other, under the SimExecutor for every
seed in SIM_SEEDS.

The fault handler looks its file page up with no lock held, so the file may
shrink below the page meanwhile.  It checks the size again once it holds the
page, and once more under its pte_lock as it installs its PTE, which it
does before it drops its slot reference; truncate_pages drops even a page
a fault holds, after unmapping it under that same pte_lock: however the
race goes, the access either sees the old byte or is a bus error, no
PTE is left past the new end of the file, and no cached page there holds an
old byte.  Two faults that race to give one private page its copy install
one copy; the loser frees its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemap import (
    MAP_PRIVATE,
    MAP_SHARED,
    PGSIZE,
    PROT_READ,
    PROT_WRITE,
    VMR,
    BusError,
    Page,
    PageMap,
    Proc,
)
from pagemap.sync.executor import Task
from tests.conftest import SIM_SEEDS, sim


def test_a_fault_racing_truncate_unmaps_what_it_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[Task | None] = []  # the tasks that have been through lookup
    rechecks = 0  # bus errors raised by the size check after the lookup
    held_drops = 0  # pages truncate took out of the map while a fault held them

    lookup, check_eof, drop_held = PageMap.lookup, Proc._check_eof, PageMap._drop_held

    def looking_up(self: PageMap, index: int, load: bool = True) -> object:
        found = lookup(self, index, load)
        looked_up.append(self.executor.current_task())
        return found

    def checking(self: Proc, vmr: VMR, va: int, write: bool) -> None:
        nonlocal rechecks
        try:
            check_eof(self, vmr, va, write)
        except BusError:
            task = self.executor.current_task()
            rechecks += task is not None and task in looked_up
            raise

    def dropping_held(self: PageMap, page: Page) -> int:
        nonlocal held_drops
        dropped = drop_held(self, page)
        held_drops += dropped
        return dropped

    monkeypatch.setattr(PageMap, "lookup", looking_up)
    monkeypatch.setattr(Proc, "_check_eof", checking)
    monkeypatch.setattr(PageMap, "_drop_held", dropping_held)
    outcomes = set()
    for seed in SIM_SEEDS:
        machine = sim(seed, cores=2)
        path = tmp_path / f"f{seed}"
        path.write_bytes(b"a" * PGSIZE + b"b" * PGSIZE + b"c" * PGSIZE)
        f = machine.open(path, "r+")
        p = machine.process()
        base = p.mmap(3 * PGSIZE, PROT_READ, MAP_SHARED, f)
        got: list[bytes] = []
        looked_up.clear()

        def toucher() -> None:
            try:
                got.append(p.load(base + 2 * PGSIZE, 1))
            except BusError:
                got.append(b"SIGBUS")

        def truncater() -> None:
            f.pread(1, 0)  # a read first, so the fault gets ahead in some schedules
            f.truncate(PGSIZE)

        machine.spawn(toucher)
        machine.spawn(truncater)
        machine.run()
        assert got in ([b"c"], [b"SIGBUS"]), f"seed {seed}: {got}"
        outcomes.add(got[0])
        word = p.page_table.lookup((base + 2 * PGSIZE) >> 12)
        assert word is None or word.value == 0, f"seed {seed}: a PTE past the end survived"
        # A fault that looked before the size shrank may still read its page
        # in after truncate dropped the rest; readpage then fills it from the
        # new size, so it holds no old byte (and nothing maps it).
        for i in range(1, 3):
            page = f.mapping.find_page(i)
            if page is not None:
                assert bytes(page.data) == bytes(PGSIZE), f"seed {seed}: old bytes past the end"
                f.mapping.put_page(page)
        with pytest.raises(BusError):
            p.load(base + 2 * PGSIZE, 1)
        p.exit()
        assert machine.check_quiescent() == [], f"seed {seed}"
    # Both ways the race can go, and both defences, were exercised.
    assert outcomes == {b"c", b"SIGBUS"}
    assert rechecks > 0, "no fault found the file shrunk after its lookup"
    assert held_drops > 0, "truncate never met a page a fault held"


def test_two_faults_racing_to_copy_one_private_page_keep_one_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = 0  # installs refused because the other fault's copy got there first
    install = Proc._install

    def installing(self: Proc, vmr: VMR, va: int, page: Page, write: bool, owned: bool) -> bool:
        nonlocal lost
        done = install(self, vmr, va, page, write, owned)
        mine = self.anon.get(va >> 12)
        lost += not done and mine is not None and mine is not page
        return done

    monkeypatch.setattr(Proc, "_install", installing)
    for seed in SIM_SEEDS:
        machine = sim(seed, cores=2)
        path = tmp_path / f"f{seed}"
        path.write_bytes(b"f" * PGSIZE)
        f = machine.open(path, "r+")
        p = machine.process()
        base = p.mmap(PGSIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, f)

        def writer(at: int) -> None:
            p.store(base + at, b"w")

        machine.spawn(writer, 0)
        machine.spawn(writer, 1)
        machine.run()
        # One copy holds both stores; the file never sees them.
        assert p.load(base, 3) == b"wwf", f"seed {seed}"
        assert len(p.anon) == 1
        assert f.pread(3, 0) == b"fff"
        p.exit()
        f.mapping.remove_contig(0, 1)
        assert machine.check_quiescent() == [], f"seed {seed}"
        assert machine.allocator.nr_free == 16, f"seed {seed}: a copy leaked"
    assert lost > 0, "the two faults never raced to install their copies"
