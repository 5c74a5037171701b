"""A replayed counterexample as a Timeline: each step's source, seed function,
bytes, marks and the machine's state after it; text that reads at 80 columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemap.check import CounterexampleFound, explore
from pagemap.check.counterexample import as_text, timeline_of, title_of
from pagemap.check.explore import explore_model
from pagemap.check.mutants import MUTANTS
from pagemap.check.replay import replay
from pagemap.check.report import Timeline, render_html
from pagemap.check.scenarios import lookup
from pagemap.check.trace import Trace
from pagemap.kernel.slot import slot_check_refcnt, slot_check_removal, slot_inc_refcnt
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord


def mutant_timeline(name: str, states: bool = True) -> tuple[Trace, Timeline]:
    mutant = next(m for m in MUTANTS if m.name == name)
    model = lookup(mutant.scenario).model(mutant.params)
    with mutant.applied():
        summary = explore_model(model, "dfs", bound=mutant.bound, budget=mutant.budget)
        assert summary.trace is not None
        result = replay(model, summary.trace, states=states)
    return summary.trace, timeline_of(summary.trace, result, "pagemap replay t.json")


@pytest.fixture(scope="module")
def lost_write() -> tuple[Trace, Timeline]:
    """A durability counterexample: the remover writes a page back before its TLB
    shootdown, so a store through the stale entry is lost."""
    return mutant_timeline("dirty-before-shootdown")


def test_each_step_says_where_it_was_taken(lost_write: tuple[Trace, Timeline]) -> None:
    trace, t = lost_write
    t.validate()
    assert len(t.rows) == trace.steps
    assert all(r.location for r in t.rows)
    # No row points into the executor or the simulated MMU: the code that made the
    # access is named instead.
    assert not any(r.location.startswith(("sync/", "hw/")) for r in t.rows)
    seeds = {r.seed_function for r in t.rows}
    assert {"pm_remove_contig", "pm_find_page", "lock_page"} <= seeds
    removal = [r for r in t.rows if r.location.startswith("kernel/removal.py")]
    assert removal and all(r.seed_function for r in removal)


def test_a_step_lists_what_its_task_ran_and_not_what_the_recorder_did(
    lost_write: tuple[Trace, Timeline],
) -> None:
    _, t = lost_write
    ran = {name for r in t.rows for name in r.ran}
    assert "Removal._slot_get_page" in ran  # called and returned between two points
    # The recorder decodes every slot, flags and PTE word it shows, with the
    # kernel's own decoders: no step of the run called them.
    assert not ran & {"decode_slot", "flag_names", "pte_bits"}
    for r in t.rows:
        assert r.location.partition(" ")[2] not in r.ran  # its own function goes without saying


def test_stores_and_writes_carry_their_bytes(lost_write: tuple[Trace, Timeline]) -> None:
    _, t = lost_write
    stores = [r for r in t.rows if r.operation == "frame.store"]
    writes = [r for r in t.rows if r.operation == "writepage"]
    assert stores and writes
    for r in stores:
        assert len(bytes.fromhex(r.data)) == 8 and r.value.startswith("8 B at 0x")
    for r in writes:
        assert len(bytes.fromhex(r.data)) == 4096
    # Rows that write nothing carry no data.
    assert all(not r.data for r in t.rows if r.operation not in ("frame.store", "writepage"))


def test_preemptions_and_failing_rows_are_marked(lost_write: tuple[Trace, Timeline]) -> None:
    trace, t = lost_write
    assert t.preemptions == trace.preemptions >= 1
    assert t.failing_steps and t.failing_steps[-1] == t.rows[-1].step
    assert t.verdict is not None and t.verdict.oracle == trace.oracle == "durability"
    assert t.verdict.replay_command == "pagemap replay t.json"


def test_the_state_after_each_step_is_the_machines(lost_write: tuple[Trace, Timeline]) -> None:
    _, t = lost_write
    assert t.initial["free frames"]
    for i, r in enumerate(t.rows):
        assert r.state, f"step {r.step} has no state"
        before = t.state_before(i)
        if r.slot and " -> " in r.slot:  # a step that changed a slot word shows it changed
            after = r.slot.split(" -> ")[1]
            assert r.state[r.obj] == after != before.get(r.obj)
        if r.flags and " -> " in r.flags:
            assert r.state[r.obj] == r.flags.split(" -> ")[1]
        if r.operation == "lock":
            assert r.state[r.obj] == f"held by {r.task}"
    # PTEs, TLBs, page flags and the free-frame count all appear.
    names = set().union(*(r.state for r in t.rows))
    assert any(n.startswith("pte[") for n in names)
    assert any(n.startswith("tlb[") for n in names)
    assert any(n.endswith(".flags") for n in names)
    assert any(n.startswith("frame ") for n in names)


def test_without_states_a_replay_records_none() -> None:
    _, t = mutant_timeline("lookup-keeps-removal", states=False)
    assert t.initial == {} and all(r.state == {} for r in t.rows)


def test_the_text_reads_at_80_columns(lost_write: tuple[Trace, Timeline]) -> None:
    trace, t = lost_write
    text = as_text(t, 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == title_of(trace)
    assert "{" not in lines[0]  # parameters in words, not a Python dict
    steps = [int(line.split()[0]) for line in lines if line[:5].strip().isdigit()]
    assert steps == [r.step for r in t.rows]  # every step keeps its number, in order
    assert text.count("⇆") >= t.preemptions
    assert "✗" in text and "VIOLATION durability" in text


def test_titles_are_in_words() -> None:
    trace = Trace(
        model={"scenario": "store-remove"},
        params={"pages": 1, "rounds": 2},
        cores=2,
        memory=65536,
        max_steps=100,
        strategy="dfs",
        seed=0,
        schedule_index=3,
        preemption_bound=2,
        schedule=[0, 1],
        steps=2,
        preemptions=1,
        oracle="durability",
        message="lost",
    )
    assert title_of(trace) == "store-remove, with pages=1 and rounds=2: a counterexample"
    assert title_of(Trace(**{**trace.__dict__, "params": {}})) == "store-remove: a counterexample"


class Counter:
    def __init__(self, machine: Machine) -> None:
        self.word: AtomicWord = machine.executor.atomic(0, "counter")


def bump(c: Counter) -> None:
    v = c.word.load()
    c.word.store(v + 1)


def test_a_users_model_gets_its_own_words_in_the_state(tmp_path: Path) -> None:
    with pytest.raises(CounterexampleFound) as info:
        explore(Counter, bump, bump, check=lambda c: c.word.value == 2, strategy="dfs")
    from pagemap.check.model import model

    trace = info.value.trace
    m = model(Counter, bump, bump, check=lambda c: c.word.value == 2)
    t = timeline_of(trace, replay(m, trace, states=True))
    assert [r.state["counter"] for r in t.rows] == ["0", "0", "1", "1"]  # decimal
    # The lost update says what it lost: the last store is blind to the other's.
    assert [r.note for r in t.rows] == ["", "", "", "overwrote step 3's store of 1"]
    assert "overwrote step 3&#x27;s store of 1" in render_html(t)
    assert Timeline.from_json(t.to_json()).rows[3].note == t.rows[3].note
    assert [r.location.split(":")[0] for r in t.rows] == ["test_counterexample.py"] * 4
    message = str(info.value)
    assert "bump#0" in message and "test_counterexample.py:" in message


def test_the_last_step_reads_as_the_run_left_it() -> None:
    """A deadlock ends with tasks holding locks; the last row and its state show
    them held, as the run stopped, not as unwinding the tasks left them."""
    from tests.check.test_replay_cli import TwoLocks, ab, ba

    with pytest.raises(CounterexampleFound) as info:
        explore(TwoLocks, ab, ba)
    from pagemap.check.model import model

    trace = info.value.trace
    t = timeline_of(trace, replay(model(TwoLocks, ab, ba), trace, states=True))
    last = t.rows[-1]
    assert last.value == f"free -> held by {last.task}"
    assert {t.rows[-1].state["a"], t.rows[-1].state["b"]} == {"held by ab#0", "held by ba#1"}


class HostFileState:
    def __init__(self, machine: Machine) -> None:
        import tempfile

        self.dir = tempfile.TemporaryDirectory(prefix="pagemap-test-")
        self.file = machine.open(f"{self.dir.name}/data.bin", "w+")


def write_and_sync(s: HostFileState) -> None:
    s.file.pwrite(b"hello, host", 0)
    s.file.fsync()


def never(s: HostFileState) -> bool:
    s.file.close()
    s.dir.cleanup()
    return False  # a counterexample on purpose, to see its rows


def test_host_writes_carry_their_bytes() -> None:
    from pagemap.check.model import model

    with pytest.raises(CounterexampleFound) as info:
        explore(HostFileState, write_and_sync, check=never, strategy="dfs")
    trace = info.value.trace
    t = timeline_of(trace, replay(model(HostFileState, write_and_sync, check=never), trace))
    (write,) = [r for r in t.rows if r.operation == "host_write"]
    assert bytes.fromhex(write.data).startswith(b"hello, host")
    assert write.value.endswith("at 0x0")


def counted(c: Counter) -> None:
    slot_check_removal(0)  # before the task's first point: no step's
    v = c.word.load()
    c.word.store(slot_inc_refcnt(v))  # after the load's point: the load's step ran it
    slot_check_refcnt(v)  # after the task's last point: its last step's


def test_each_step_lists_the_kernel_functions_it_ran() -> None:
    """A step is its point's operation and the code its task runs on, alone, to
    its next point: a kernel function called and returned in between (no point
    of its own) is that step's, and its row says so, in every view."""
    from pagemap.check.model import model

    with pytest.raises(CounterexampleFound) as info:
        explore(Counter, counted, counted, check=lambda c: False, strategy="dfs")
    trace = info.value.trace
    m = model(Counter, counted, counted, check=lambda c: False)
    t = timeline_of(trace, replay(m, trace, states=True))
    by_task: dict[str, list[list[str]]] = {}
    for r in t.rows:
        by_task.setdefault(r.task, []).append(r.ran)
    assert by_task == {
        "counted#0": [["slot_inc_refcnt"], ["slot_check_refcnt"]],
        "counted#1": [["slot_inc_refcnt"], ["slot_check_refcnt"]],
    }
    load = next(r for r in t.rows if r.operation == "load")
    assert "ran: slot_inc_refcnt" in " ".join(as_text(t, 100).split())
    assert "ran: slot_inc_refcnt" in render_html(t)
    assert Timeline.from_json(t.to_json()).rows[t.rows.index(load)].ran == ["slot_inc_refcnt"]


def test_a_task_the_watchdog_stopped_replays_and_so_does_what_follows() -> None:
    """Once the watchdog has stopped a task, CPython 3.11 keeps signalling an
    asynchronous exception it cleared, and a profile function set then (what
    notes each step's calls) would spin for ever: the replay of the stuck run,
    and any replay after it, must still end."""
    from pagemap.check.model import FunctionModel
    from tests.check.test_replay_cli import Counter as Word
    from tests.check.test_replay_cli import bump as bumped
    from tests.check.test_replay_cli import looping

    model = FunctionModel("looping", Word, (looping, bumped), None, 2, 8 * 4096)
    trace = explore_model(model, "dfs", budget=1, watchdog=0.5, shrink=False).trace
    assert trace is not None and trace.oracle == "liveness"
    for _ in range(2):
        result = replay(model, trace, watchdog=0.5, explain=True)
        assert result.violation is not None and "looping" in result.violation.message
        assert result.rows and result.rows[0].task.startswith("looping")
