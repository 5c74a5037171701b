"""Generated programs over every synchronisation primitive the kernel uses.

A program is 2 or 3 tasks; a task is a few blocks; a block is a guard and one
or two operations run under it.  The primitives are those the kernel gets
from its executor (sync/):

- atomic words (`executor.atomic`): two shared, x and y, and one private word
  per task; load, store, cas, fetch_add, fetch_or, fetch_and, swap;
- a per-frame array (`executor.atomic_array`, two words): the same
  operations, each a point on the key `(name, i)`;
- guards: a spinlock, a semaphore used as a mutex (count 1), and two
  sleeping locks of a lock table (`executor.lock_table`, the page lock);
- semaphores used as signals: `up` in one task, `down` in another, and timed
  downs (`down_timeout`, the flusher's kick) that may give up;
- `touch()` footprints: an operation on a word that, in the same step, also
  writes or reads a cell the point does not name (a registered object, a
  key, or a frame number), as the allocator does for a frame changing hands;
- a bounded spin: a CAS retried after `relax()`, the kernel's spin-retry.

Each program draws two to five kinds of operation and uses only those
(`kind_sets`), so that its operations meet on common objects; half the
programs also get a signal (an up, and a plain down in a later task).

Park and unpark are not generated: the kernel reaches them only through
the semaphores and the lock table, which are (sync/locks.py, sync/arrays.py).

A final state is every shared value (words, array, semaphore counts, cells)
and what each task observed (each load's value, each value a read-modify-write
returned, each CAS outcome, each timed down's and each spin's result), so two
schedules with the same final state are indistinguishable to any oracle.

Programs never deadlock, whatever the schedule: guards do not nest and hold
no plain down, and a plain down waits on a semaphore that only tasks of
lower index up, at least as often as it is downed (`repair` turns any other
plain down into a timed one).  So DFS, DPOR and the reference of
tests/check/reference.py all run every schedule to its end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from pagemap.check.model import FunctionModel
from pagemap.machine import Machine
from pagemap.sync.arrays import AtomicArray, LockTable
from pagemap.sync.atomic import AtomicWord
from pagemap.sync.core import READ, WRITE
from pagemap.sync.executor import Executor
from pagemap.sync.locks import Semaphore, SpinLock

# (kind, target, a, b).  Word kinds act on target 0 (x), 1 (y) or 2 (the
# task's private word); "a..." kinds on word `target` of the array.
Op = tuple[str, int, int, int]
# (guard, ops): guard "" (none), "spin", "sem" (the mutex semaphore), "page0", "page1".
Block = tuple[str, tuple[Op, ...]]
TaskProgram = tuple[Block, ...]
Program = tuple[TaskProgram, ...]

WORD_KINDS = ("load", "store", "cas", "add", "or", "and", "swap")
ARRAY_KINDS = ("aload", "astore", "acas", "aadd", "aor", "aand", "aswap")
GUARDS = ("", "spin", "sem", "page0", "page1")
SPIN_TRIES = 2  # a spin's CAS attempts, with a relax between two
SIGNAL = 0  # the semaphore plain downs wait on; SIGNAL + 1 is for timed downs only
TIMED = 1

# A final state: (shared values, what each task observed).
Final = tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]


class Cell:
    """Plain data a `touch` names: no point of its own, so only the touch
    tells the checker that a step changed or read it."""

    def __init__(self) -> None:
        self.v = 0
        self.sid = 0  # its stable identity once registered (sync/sim.py EventLog)


@dataclass
class World:
    ex: Executor
    words: list[AtomicWord]  # x, y
    private: list[AtomicWord]
    flags: AtomicArray
    spin: SpinLock
    mutex: Semaphore
    pages: LockTable
    signals: list[Semaphore]
    cells: list[Cell]  # the touched cells: [object, key, frame]
    seen: list[list[int]] = field(default_factory=list)


# The objects a touch names for cells 0, 1 and 2: the registered Cell, a
# tuple key, a frame number (frames of this machine are never used otherwise).
TOUCH_KEY = ("cell", 1)
TOUCH_FRAME = 7


def _touched(w: World, b: int) -> object:
    return w.cells[0] if b == 0 else TOUCH_KEY if b == 1 else TOUCH_FRAME


# -- generation --------------------------------------------------------------------


# The kinds of operation.  Each program draws its own few (swarm testing:
# Groce et al., ISSTA 2012), so that the operations it has meet often: a CAS
# that succeeds racing a load of its word, a touch racing a touch, a timed
# down racing an up.  Drawn from every kind at once, a program of six
# operations seldom has two that race on one object.
KINDS = (
    "load",
    "store",
    "cas",
    "add",
    "or",
    "and",
    "swap",
    "aload",
    "astore",
    "acas",
    "aadd",
    "aor",
    "aand",
    "aswap",
    "tset",
    "tget",
    "spin",
    "up",
    "down",
    "tdown",
)


def kind_sets() -> st.SearchStrategy[tuple[str, ...]]:
    """A program's kinds: two to five, each drawn by an index drawn evenly
    (Hypothesis draws the branches of a `one_of` far from evenly)."""
    one = st.integers(0, len(KINDS) - 1).map(lambda i: KINDS[i])
    return st.lists(one, min_size=2, max_size=5, unique=True).map(tuple)


@st.composite
def plain_op(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS) -> Op:
    """One operation of one of `kinds`.  A CAS half the time expects 0 (where
    every word starts) and never writes 0, so that a CAS that succeeds and
    changes its word is common (drawn alike, its two values would mostly
    leave the word as it was).  Array ops take word 0 three times in four:
    two tasks meet on it more often."""
    kind = kinds[draw(st.integers(0, len(kinds) - 1))]
    word = st.integers(0, 2)
    cell = st.sampled_from([0, 0, 0, 1])
    val = st.integers(0, 3)
    if kind == "load":
        return (kind, draw(word), 0, 0)
    if kind in ("cas", "acas"):
        return (
            kind,
            draw(word if kind == "cas" else cell),
            draw(st.integers(0, 1)),
            draw(st.integers(1, 3)),
        )
    if kind in ("store", "swap"):
        return (kind, draw(word), draw(val), 0)
    if kind in ("add", "aadd"):
        return (kind, draw(word if kind == "add" else cell), draw(st.integers(1, 2)), 0)
    if kind in ("or", "and", "aor", "aand"):
        return (kind, draw(word if kind in ("or", "and") else cell), draw(st.integers(1, 3)), 0)
    if kind == "aload":
        return (kind, draw(cell), 0, 0)
    if kind in ("astore", "aswap"):
        return (kind, draw(cell), draw(val), 0)
    if kind == "tset":
        return (kind, draw(word), draw(st.integers(1, 3)), draw(st.integers(0, 2)))
    if kind == "tget":
        return (kind, draw(word), 0, draw(st.integers(0, 2)))
    if kind == "spin":
        return (kind, draw(st.integers(0, 1)), draw(st.integers(1, 2)), 0)
    if kind == "up":
        return (kind, draw(st.integers(0, 1)), 0, 0)
    if kind == "down":
        return (kind, SIGNAL, 0, 0)
    return ("tdown", TIMED, draw(st.integers(1, 3)), 0)


def block(kinds: tuple[str, ...] = KINDS) -> st.SearchStrategy[Block]:
    single = st.tuples(st.just(""), st.tuples(plain_op(kinds)))
    guarded = st.tuples(
        st.sampled_from(GUARDS[1:]),
        st.one_of(st.tuples(plain_op(kinds)), st.tuples(plain_op(kinds), plain_op(kinds))),
    )
    return st.one_of(single, guarded)


def size(program: Program) -> int:
    """Scheduling points, roughly: an op is one (a spin up to three), a guard two."""
    n = 0
    for task in program:
        for guard, ops in task:
            n += (2 if guard else 0) + sum(2 * SPIN_TRIES - 1 if o[0] == "spin" else 1 for o in ops)
    return n


def programs(max_points_2: int = 15, max_points_3: int = 10) -> st.SearchStrategy[Program]:
    """Programs of 2 tasks up to `max_points_2` points, or of 3 up to
    `max_points_3` (the unbounded spaces grow as the multinomial of the
    tasks' points: these keep an exhaustive DFS within a second), with at
    least 5 points, and half of them with a signal (an up in one task, a
    plain down in a later one), which operations drawn one by one seldom
    make."""

    @st.composite
    def draw(draw_: st.DrawFn) -> Program:
        ntasks = draw_(st.integers(2, 3))
        kinds = draw_(kind_sets())
        tasks = [list(draw_(st.lists(block(kinds), min_size=1, max_size=3))) for _ in range(ntasks)]
        if draw_(st.booleans()):
            upper = draw_(st.integers(0, ntasks - 2))
            downer = draw_(st.integers(upper + 1, ntasks - 1))
            for t, op in ((upper, ("up", SIGNAL, 0, 0)), (downer, ("down", SIGNAL, 0, 0))):
                at = draw_(st.integers(0, len(tasks[t])))
                tasks[t].insert(at, ("", (op,)))
        return repair(tuple(tuple(t) for t in tasks))

    def fits(p: Program) -> bool:
        return 5 <= size(p) <= (max_points_2 if len(p) == 2 else max_points_3)

    return draw().filter(fits)


def repair(program: Program) -> Program:
    """The program with every plain down that could deadlock made a timed
    down: one inside a guard (its upper may need the guard), one in a task
    whose index is not above every task that ups the signal, and each past
    the number of ups."""
    uppers = {
        t
        for t, task in enumerate(program)
        for _, ops in task
        for o in ops
        if o[:2] == ("up", SIGNAL)
    }
    ups = sum(1 for task in program for _, ops in task for o in ops if o[:2] == ("up", SIGNAL))
    downs = 0
    out: list[TaskProgram] = []
    for t, task in enumerate(program):
        blocks: list[Block] = []
        for guard, ops in task:
            fixed: list[Op] = []
            for op in ops:
                if op[0] == "down":
                    ok = not guard and all(u < t for u in uppers) and downs < ups
                    if ok:
                        downs += 1
                    else:
                        op = ("tdown", TIMED, 1, 0)
                fixed.append(op)
            blocks.append((guard, tuple(fixed)))
        out.append(tuple(blocks))
    return tuple(out)


def from_soundness_encoding(program: list[list[list[tuple[str, int, int, int]]]]) -> Program:
    """A program of tests/check/test_dpor_soundness.py's generator (and of
    the findings): a block of two or more ops runs under the spinlock;
    "add" is fetch_add, as here."""
    return tuple(tuple(("spin" if len(b) > 1 else "", tuple(b)) for b in task) for task in program)


# The bounded-DPOR miss of ../shared/findings/dpor-bound-1.md: with at most one
# preemption DFS reaches 10 final states and DPOR (at 7fe8ba6) 9.
FINDING_BOUND_1: Program = from_soundness_encoding(
    [
        [
            [("load", 0, 0, 0)],
            [("load", 0, 0, 0), ("load", 0, 0, 0)],
            [("load", 0, 0, 0), ("load", 0, 0, 0)],
        ],
        [[("store", 0, 2, 0)], [("load", 0, 0, 0), ("store", 0, 1, 0)]],
    ]
)


# DPOR misses a final state after a relax (found by tests/check/test_reference.py
# at 75ec3e1, at bound 2 and with no bound; DFS reaches it).  The state: t1's
# spin fails twice (t0's store came first) and t0's load of y sees t1's store.
# That needs t1 to preempt t0 before t0's private load, so that the step the
# relax forces on t0 is the private load and not the load of y.  DPOR's second
# run goes t0 store, t0 load p, t1 cas, t1 relax, and the relax forces t0's
# load of y: the race of that load with t1's store starts at a step that is
# no choice point, so it was dropped, and nothing asked for t1 at the choice
# before the private load (fixed: backtrack.py `_before_forced`).
RELAX_MISS: Program = (
    (("", (("store", 0, 3, 0),)), ("", (("load", 2, 0, 0),)), ("", (("load", 1, 0, 0),))),
    (("", (("spin", 0, 2, 0),)), ("", (("store", 1, 1, 0),))),
)


# DPOR misses a final state at bound 0 (found by tests/check/test_reference.py,
# with the relax fixed): both tasks park in timed downs, wake together, and
# the choice made then, free whichever task goes, was not taken for a context
# switch, since a task that parks is logged only as it resumes; so the
# conservative backtrack for t1's store against t0's second or went nowhere.
TIMED_BOUND_0: Program = (
    (("page0", (("aor", 0, 2, 0),)), ("", (("tdown", 1, 2, 0),)), ("page0", (("aor", 0, 2, 0),))),
    (("", (("tdown", 1, 2, 0),)), ("spin", (("astore", 0, 1, 0),)), ("", (("tdown", 1, 2, 0),))),
)


def has_relax(program: Program) -> bool:
    return any(op[0] == "spin" for task in program for _, ops in task for op in ops)


# -- running -------------------------------------------------------------------------


def setup_world(machine: Machine, ntasks: int) -> World:
    ex = machine.executor
    cell = Cell()
    ex.register(cell)
    return World(
        ex,
        [ex.atomic(0, "x"), ex.atomic(0, "y")],
        [ex.atomic(0, f"p{i}") for i in range(ntasks)],
        ex.atomic_array(2, "flags"),
        ex.spinlock("L"),
        ex.semaphore(1, "M"),
        ex.lock_table(2, "pages"),
        [ex.semaphore(0, "S0"), ex.semaphore(0, "S1")],
        [cell, Cell(), Cell()],
        [[] for _ in range(ntasks)],
    )


def run_op(w: World, me: int, op: Op) -> None:
    kind, t, a, b = op
    seen = w.seen[me]
    if kind in WORD_KINDS:
        word = w.words[t] if t < 2 else w.private[me]
        if kind == "load":
            seen.append(word.load())
        elif kind == "store":
            word.store(a)
        elif kind == "cas":
            seen.append(int(word.cas(a, b)))
        elif kind == "add":
            seen.append(word.fetch_add(a))
        elif kind == "or":
            seen.append(word.fetch_or(a))
        elif kind == "and":
            seen.append(word.fetch_and(a))
        else:
            seen.append(word.swap(a))
    elif kind in ARRAY_KINDS:
        arr = w.flags
        if kind == "aload":
            seen.append(arr.load(t))
        elif kind == "astore":
            arr.store(t, a)
        elif kind == "acas":
            seen.append(int(arr.cas(t, a, b)))
        elif kind == "aadd":
            seen.append(arr.fetch_add(t, a))
        elif kind == "aor":
            seen.append(arr.fetch_or(t, a))
        elif kind == "aand":
            seen.append(arr.fetch_and(t, a))
        else:
            seen.append(arr.swap(t, a))
    elif kind in ("tset", "tget"):
        # One step: the word's point, then (no point in between) the cell,
        # which only the touch names.
        word = w.words[t] if t < 2 else w.private[me]
        seen.append(word.load())
        cell = w.cells[b]
        if kind == "tset":
            w.ex.touch(_touched(w, b), WRITE)
            cell.v = a
        else:
            w.ex.touch(_touched(w, b), READ)
            seen.append(cell.v)
    elif kind == "spin":
        word = w.words[t]
        got = -1
        for attempt in range(SPIN_TRIES):
            if word.cas(0, a):
                got = attempt
                break
            if attempt + 1 < SPIN_TRIES:
                w.ex.relax()
        seen.append(got)
    elif kind == "up":
        w.signals[t].up()
    elif kind == "down":
        w.signals[t].down()
    elif kind == "tdown":
        # `a` steps of virtual time (one step is a microsecond).
        seen.append(int(w.signals[t].down_timeout(a / 1_000_000)))
    else:
        raise ValueError(f"unknown op {op!r}")


def run_block(w: World, me: int, block: Block) -> None:
    guard, ops = block
    if guard == "spin":
        w.spin.acquire()
    elif guard == "sem":
        w.mutex.down()
    elif guard:
        w.pages.down(int(guard[-1]))
    for op in ops:
        run_op(w, me, op)
    if guard == "spin":
        w.spin.release()
    elif guard == "sem":
        w.mutex.up()
    elif guard:
        w.pages.up(int(guard[-1]))


def final_state(w: World) -> Final:
    shared = (
        *(x.value for x in w.words),
        *(p.value for p in w.private),
        *(w.flags.value(i) for i in range(len(w.flags))),
        *(s.count for s in w.signals),
        w.mutex.count,
        *(w.pages.count(i) for i in range(2)),
        *(c.v for c in w.cells),
    )
    return shared, tuple(tuple(s) for s in w.seen)


def task_functions(program: Program) -> tuple[Callable[[World], None], ...]:
    def make(me: int) -> Callable[[World], None]:
        def task(w: World) -> None:
            for b in program[me]:
                run_block(w, me, b)

        task.__name__ = f"t{me}"
        return task

    return tuple(make(i) for i in range(len(program)))


CORES_MEMORY = 8 * 4096


def build_model(program: Program, finals: set[Any]) -> FunctionModel[World]:
    """The program as a model whose check adds each schedule's final state to `finals`."""

    def setup(machine: Machine) -> World:
        return setup_world(machine, len(program))

    def check(w: World) -> bool:
        finals.add(final_state(w))
        return True

    return FunctionModel(
        "generated",
        setup,
        task_functions(program),
        check,
        cores=len(program),
        memory=CORES_MEMORY,
    )


def show(program: Program) -> str:
    """The program one task a line, for failure messages and the report."""
    lines = []
    for t, task in enumerate(program):
        parts = []
        for guard, ops in task:
            body = "; ".join(f"{k}({tg},{a},{b})" for k, tg, a, b in ops)
            parts.append(f"{guard} {{ {body} }}" if guard else body)
        lines.append(f"t{t}: " + " | ".join(parts))
    return "\n".join(lines)


__all__ = [
    "FINDING_BOUND_1",
    "RELAX_MISS",
    "TIMED_BOUND_0",
    "Block",
    "Final",
    "Op",
    "Program",
    "World",
    "build_model",
    "final_state",
    "from_soundness_encoding",
    "has_relax",
    "programs",
    "repair",
    "run_block",
    "setup_world",
    "show",
    "size",
    "task_functions",
]
