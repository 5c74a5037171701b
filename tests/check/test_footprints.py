"""Footprints checked, not trusted: every scenario under validation, and planted
mistakes that validation must catch (check/footprints.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pagemap.check import hidden
from pagemap.check.explore import explore_model
from pagemap.check.footprints import FOOTPRINT, VALIDATE_ENV
from pagemap.check.hidden import KNOWN_HIDDEN
from pagemap.check.model import FunctionModel
from pagemap.check.runner import run_schedule
from pagemap.check.scenarios import lookup, registry
from pagemap.check.strategies import Chooser, make_explorer
from pagemap.kernel.flusher import Flusher
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.page import Page
from pagemap.machine import Machine
from pagemap.oracles import MEMORY_SAFETY
from pagemap.sync.arrays import AtomicArray, SimAtomicArray
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.locks import SpinLock

# Schedules per scenario: random ones (each a different path through the
# kernel) and the first of a bounded DPOR search (the schedules that differ
# from the default by one preemption, where races are).
RANDOM_SCHEDULES = 12
DPOR_SCHEDULES = 12


def _explore(name: str, strategy: str, count: int) -> list[str]:
    model = lookup(name).model()
    explorer = make_explorer(strategy, 1, 1)
    problems = []
    for i in range(count):
        chooser = explorer.chooser(i)
        if chooser is None:
            break
        outcome = run_schedule(model, chooser, validate=True)
        explorer.finished(chooser, outcome)
        if outcome.violation is not None:
            problems.append(str(outcome.violation))
    return problems


@pytest.mark.parametrize("name", list(registry()))
def test_every_step_of_the_scenario_declares_what_it_changes(name: str) -> None:
    assert _explore(name, "random", RANDOM_SCHEDULES) == []
    assert _explore(name, "dpor", DPOR_SCHEDULES) == []


def test_a_reset_that_names_nothing_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plant the mistake the kernel once had: a per-frame word set with no
    point and no footprint (a fresh page's slot word).  DPOR would treat it as
    independent of a stale reader of that word."""
    monkeypatch.setattr(SimAtomicArray, "reset", AtomicArray.reset)
    outcome = run_schedule(lookup("store-remove").model(), _first(), validate=True)
    assert outcome.violation is not None
    assert outcome.violation.oracle == FOOTPRINT
    message = outcome.violation.message
    assert "which its footprint does not name" in message
    assert "pm.slot[" in message or "page[" in message  # the object, by name
    assert "kernel/" in message  # and where the step was


@dataclass
class Shared:
    lock: SpinLock
    word: AtomicWord


def _setup(machine: Machine) -> Shared:
    ex = machine.executor
    return Shared(ex.spinlock("L"), ex.atomic(0, "w"))


def _sneaky(s: Shared) -> None:
    with s.lock:
        s.word.value += 1  # no point: a write its step does not declare


def _honest(s: Shared) -> None:
    with s.lock:
        s.word.store(s.word.load() + 1)


def test_a_model_writing_a_word_without_a_point_is_caught() -> None:
    model = FunctionModel("sneaky", _setup, (_sneaky, _honest), None, cores=2, memory=8 * 4096)
    outcome = run_schedule(model, _first(), validate=True)
    assert outcome.violation is not None and outcome.violation.oracle == FOOTPRINT
    assert "changed w," in outcome.violation.message
    assert "test_footprints.py" in outcome.violation.message
    assert "_sneaky" in outcome.violation.message


def test_an_honest_model_passes_validation() -> None:
    model = FunctionModel("honest", _setup, (_honest, _honest), None, cores=2, memory=8 * 4096)
    assert run_schedule(model, _first(), validate=True).violation is None


def test_validation_is_on_with_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    model = FunctionModel("sneaky", _setup, (_sneaky, _honest), None, cores=2, memory=8 * 4096)
    monkeypatch.setenv(VALIDATE_ENV, "1")
    outcome = run_schedule(model, _first())
    assert outcome.violation is not None and outcome.violation.oracle == FOOTPRINT
    monkeypatch.setenv(VALIDATE_ENV, "0")
    assert run_schedule(model, _first()).violation is None


def _first() -> Chooser:
    chooser = make_explorer("dfs", 0, 0).chooser(0)
    assert chooser is not None
    return chooser


def test_a_violation_that_ends_a_step_midway_is_reported_as_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An oracle that ends the schedule inside a step (a load landing in a free
    frame) unwinds the task, which releases its core's lock with no point: no
    step's doing, so not a footprint violation."""
    monkeypatch.setenv(VALIDATE_ENV, "1")
    model = lookup("known-fault-truncate").model({"fix": 0})
    summary = explore_model(model, "dpor", bound=2, shrink=False)
    assert summary.trace is not None
    assert summary.trace.oracle == MEMORY_SAFETY


def _stop_unnamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flusher's stop flag as it once was: a plain attribute no step names."""

    def stop(self: Flusher) -> None:
        self.stopping = True
        self.kick.up()
        self.wb_kick.up()

    monkeypatch.setattr(Flusher, "stop_requested", lambda self: self.stopping)
    monkeypatch.setattr(Flusher, "stop", stop)


def test_a_plain_attribute_two_tasks_race_on_unseen_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kswapd's look at the stop flag and the last task's stop() touched no
    object in common: DPOR explored one order of them, and reclaim-contend at
    one preemption missed a final state DFS reached.  The hidden-state check
    (check/hidden.py) names the attribute, both tasks and both lines."""
    _stop_unnamed(monkeypatch)
    problems = _explore("reclaim-contend", "random", RANDOM_SCHEDULES)
    assert problems, "the unnamed flag went unseen"
    message = problems[0]
    assert message.startswith(FOOTPRINT)
    assert "Flusher.stopping" in message and "kswapd" in message
    assert "nothing declared orders the two steps" in message
    assert "test_footprints.py" in message  # the planted lines, by file


def test_the_hidden_state_check_restores_the_classes() -> None:
    """The check patches attribute access on the kernel's classes for one run
    only: after the run they are as they were."""
    before = {cls: dict(cls.__dict__) for cls in (Flusher, Page)}
    run_schedule(lookup("reclaim-contend").model(), _first(), validate=True)
    for cls, attrs in before.items():
        assert dict(cls.__dict__) == attrs


def _orphan_look_unnamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last close's look at an inode's link count as it once was: a read
    of the plain attribute that names nothing."""
    monkeypatch.setattr(
        Ext2Inode,
        "may_be_orphan",
        lambda self: not self.disk.links_count and not self.deleted,
    )


def test_an_unnamed_look_at_a_link_count_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The close's look and unlink's decrement (which names the count) are
    ordered by nothing else: the check names the attribute and the close."""
    _orphan_look_unnamed(monkeypatch)
    problems = _explore("ext2-unlink-reuse", "random", RANDOM_SCHEDULES)
    assert any("both touch DiskInode.links_count," in p for p in problems), problems[:1]


def test_a_listed_hidden_race_is_not_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """KNOWN_HIDDEN holds what is found and not yet fixed; it is empty, and
    an entry there silences its attribute (and only it)."""
    assert KNOWN_HIDDEN == {}
    _orphan_look_unnamed(monkeypatch)
    monkeypatch.setattr(hidden, "KNOWN_HIDDEN", {"DiskInode.links_count": "planted"})
    assert _explore("ext2-unlink-reuse", "random", RANDOM_SCHEDULES) == []
