"""The lock mutants (check/mutants/auto.py): one per lock a `with` takes in
kernel/, that lock not taken, and the rest of the function the same.  The full
sweep (`pagemap check --mutants --auto`) is long and runs in `make soak`; here,
the generator, one mutant against the scenario its hand-written twin dies in,
and the command on one mutant."""

from __future__ import annotations

import ast
import dis
import inspect
from pathlib import Path

import pytest

from pagemap.check.cli.auto import default_equivalents, load_equivalents, mutant_scenarios
from pagemap.check.explore import explore_model
from pagemap.check.mutants import lookup_mutant
from pagemap.check.mutants.auto import LOCKLIKE, LockMutant, generate
from pagemap.check.mutants.auto_census import ATOMIC, RACED, UNCONTENDED, Census
from pagemap.check.mutants.auto_map import calls
from pagemap.check.scenarios import lookup, registry, zoo
from pagemap.cli import main
from pagemap.kernel.hostfs import HostInode
from pagemap.kernel.mm import MM

WRITEPAGE = "kernel/hostfs.py:HostInode.writepage:self.host_lock"
UNMAP_MARKED = "kernel/unmap_marked.py:UnmapMarked._unmap_marked:proc.pte_lock"


@pytest.fixture(scope="module")
def generated() -> tuple[list[LockMutant], list[object]]:
    mutants, skipped = generate()
    return mutants, list(skipped)


def _names(code: object) -> set[str]:
    return {i.argval for i in dis.get_instructions(code) if isinstance(i.argval, str)}  # type: ignore[arg-type]


def test_every_lock_with_of_the_kernel_is_a_mutant_or_skipped(
    generated: tuple[list[LockMutant], list[object]],
) -> None:
    mutants, skipped = generated
    root = Path(inspect.getfile(MM)).parent
    items = 0
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.With):
                items += sum(bool(LOCKLIKE.search(ast.unparse(i.context_expr))) for i in node.items)
    assert items > 50
    assert len(mutants) + len(skipped) == items
    assert len({m.name for m in mutants}) == len(mutants)
    assert all(m.broken.endswith(f"not taken in {m.site.function}") for m in mutants)


def test_the_mutant_drops_that_one_lock_and_nothing_else(
    generated: tuple[list[LockMutant], list[object]],
) -> None:
    mutants, _ = generated
    both = {m.site.expr: m for m in mutants if m.site.function == "MM.drop_private_copies"}
    assert set(both) == {"self.vmr_lock", "self.pte_lock"}  # `with self.vmr_lock, self.pte_lock:`
    real = MM.drop_private_copies.__code__
    assert {"vmr_lock", "pte_lock"} <= _names(real)
    for expr, m in both.items():
        other = ({"self.vmr_lock", "self.pte_lock"} - {expr}).pop()
        assert m.function is MM.drop_private_copies
        assert expr.removeprefix("self.") not in _names(m.code)
        assert other.removeprefix("self.") in _names(m.code)
        # The same place: its file, first line and qualified name.
        assert (m.code.co_filename, m.code.co_firstlineno, m.code.co_qualname) == (
            real.co_filename,
            real.co_firstlineno,
            real.co_qualname,
        )
        with m.applied():
            assert MM.drop_private_copies.__code__ is m.code
        assert MM.drop_private_copies.__code__ is real


def test_the_writepage_mutant_is_the_hand_written_one_and_is_killed(
    generated: tuple[list[LockMutant], list[object]],
) -> None:
    """writepage-unlocked (check/mutants/mm.py) is a lock not taken: the
    generated mutant of that site must die where it does, as soon."""
    mutant = next(m for m in generated[0] if m.name == WRITEPAGE)
    twin = lookup_mutant("writepage-unlocked")
    assert mutant.function is HostInode.writepage
    model = lookup(twin.scenario).model(twin.params)
    assert (HostInode.writepage.__code__.co_filename, mutant.site.first_line) in calls(
        lookup(twin.scenario)
    )
    with mutant.applied():
        summary = explore_model(model, "dpor", budget=twin.budget, bound=twin.bound)
    assert summary.trace is not None, f"survived {summary.schedules} schedules"
    assert not any(e in summary.trace.message for e in ("TypeError", "NameError"))
    # The real writepage holds the lock: the same search finds nothing.
    assert explore_model(model, "dpor", budget=twin.budget, bound=twin.bound).trace is None


@pytest.mark.parametrize(
    ("name", "scenario"),
    [
        # Two splits of one region's list, each once built from the old one.
        ("kernel/mmap.py:Mappings.munmap:self.vmr_lock", "munmap-mprotect"),
        # mlock's pieces put back the part of the region munmap took away.
        ("kernel/madvise.py:Advice.mlock:self.vmr_lock", "mlock-munmap"),
        # msync finds the region, then no PTE: mremap moved it, D bit and all.
        ("kernel/mmap.py:Mappings.msync:self.vmr_lock", "mremap-msync"),
        # Removal's passes over PTEs against munmap's D bit in flight (the
        # second) and mprotect's PTE not present for an instant (the first).
        (f"{UNMAP_MARKED}#2", "munmap-shootdown-remove"),
        (UNMAP_MARKED, "mprotect-exec-remove"),
        # mprotect's PTE, not present for an instant, meets page_mkclean: only
        # a row of the zoo (its fix on) races the two, so the map takes the zoo.
        ("kernel/mm.py:MM._modify_ptes:self.pte_lock", "known-mkclean-skip"),
        ("kernel/rmap.py:ReverseMap.page_mkclean:proc.pte_lock", "known-mkclean-skip"),
        # A walk of the regions copies the list before mremap's new region
        # joins it, then finds the old address empty: the PTE moved.
        ("kernel/rmap.py:ReverseMap.page_mkclean:self.lock", "wp-mremap"),
        ("kernel/truncate_pages.py:TruncatePages._drop_held:self.lock", "punch-mremap"),
        # Reclaim looks at a victim (a point) while the removal frees it: the
        # page goes back into the policy's lists after the removal forgot it,
        # and its frame, loaded again, is inserted twice.
        ("kernel/reclaim.py:Reclaim.shrink:self.lock", "reclaim-remove-reuse"),
        ("kernel/reclaim.py:Reclaim.removed_many:self.lock", "reclaim-remove-reuse"),
        # Two creates find room for their entries in the same gap of one
        # directory block: the second writes over the first, a name lost.
        ("kernel/fs/ext2/fs.py:Ext2FS.create:self._ns('create')", "ext2-create-create"),
    ],
)
def test_a_scenario_kills_the_lock_mutant_it_was_made_for(
    generated: tuple[list[LockMutant], list[object]], name: str, scenario: str
) -> None:
    mutant = next(m for m in generated[0] if m.name == name)
    model = lookup(scenario).model()
    assert explore_model(model, "dpor", bound=2).trace is None  # the real kernel holds
    with mutant.applied():
        summary = explore_model(model, "dpor", bound=2, budget=1_000, shrink=False)
    assert summary.trace is not None, f"survived {summary.schedules} schedules"
    assert not any(e in summary.trace.message for e in ("TypeError", "NameError"))


def test_the_mutants_are_tried_against_the_zoo_too() -> None:
    # Each row with its fix on, as the default set's scenarios: the real kernel.
    tried = mutant_scenarios()
    assert set(registry()) < set(tried) and set(zoo()) < set(tried)
    assert all(tried[n].defaults.get("fix", 1) == 1 for n in zoo())


def test_the_census_tells_atomic_uncontended_and_raced_sites_apart(
    generated: tuple[list[LockMutant], list[object]],
) -> None:
    # fork-store: a fork copies the parent's VMRs and PTEs under the parent's
    # locks, which the other task's faults take too (raced), and under the
    # child's, which nobody else can see yet (never contended); the page
    # allocator's lock guards a few lines of plain Python (no point while held).
    mutants = generated[0]
    census = Census(mutants)
    calls(lookup("fork-store"), observe=census.observe, observed=5)
    got = {m.name: census.sections[n] for n, m in enumerate(mutants)}
    alloc = got["kernel/page.py:PageAllocator._try_alloc:self._lock"]
    assert alloc.category == ATOMIC and alloc.runs > 0 and alloc.points == 0
    child = got["kernel/fork.py:Fork.fork:child.vmr_lock"]
    assert child.category == UNCONTENDED and child.points > 0 and not child.contended
    parent = got["kernel/fork.py:Fork.fork:self.vmr_lock"]
    assert parent.category == RACED and parent.contended
    # A site no task of the scenario runs is never contended, not atomic.
    mkdir = got["kernel/fs/ext2/namei.py:Namespace.mkdir:self._ns('mkdir')"]
    assert mkdir.runs == 0 and mkdir.category == UNCONTENDED


def test_every_equivalent_names_a_site_with_a_reason(
    generated: tuple[list[LockMutant], list[object]],
) -> None:
    listed = default_equivalents()
    names = {m.name for m in generated[0]}
    assert set(listed) <= names
    assert all(len(reason) > 20 for reason in listed.values())
    with pytest.raises(ValueError, match="line 2"):
        load_equivalents("# a comment\nkernel/x.py:f:self.lock no reason\n")


def test_the_command_runs_one_lock_mutant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--mutants", "--auto", "--mutant", WRITEPAGE]) == 0
    out = capsys.readouterr().out
    assert "1 lock mutant" in out and "1 killed" in out
    # A survivor the census explains is reported as what it is, and passes.
    site = "kernel/gup.py:RemoteAccess._grab_file_page:self.vmr_lock"
    assert main(["check", "--mutants", "--auto", "--mutant", site, "--mutant-time", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 never contended" in out and "0 unexplained" in out
    assert main(["check", "--auto"]) == 2  # --auto goes with --mutants
    assert main(["check", "--mutants", "--auto", "--mutant", "kernel/nowhere.py:f:lock"]) == 2
