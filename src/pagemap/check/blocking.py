"""Blocking the scheduler cannot see: threading's primitives in a model.

A model's tasks run as greenlets on one thread, switched only at pagemap's
scheduling points.  A task that waits on a `threading.Lock` (or an RLock,
Condition, Semaphore, Event or queue) blocks that thread, and with it every
task: the run never reaches another point, and nothing but a watchdog ends
it.  This module finds such primitives before the first schedule runs, where
a task can reach them (the state `setup` returned, a task's globals and
closure), and names the line of the task that uses each, with the primitive
to use instead (`machine.executor.spinlock(name)`, `.semaphore(n, name)`,
`.atomic(value, name)`).  The cases the scan cannot see (a lock made inside
a task, or reached through a helper) end at the watchdog, which names the
held lock it finds (sync/watchdog.py `held_locks`).

Rules: it only reads; it never calls a model's code.
"""

from __future__ import annotations

import dis
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from types import CodeType
from typing import Any

_LOCK = type(threading.Lock())
_RLOCK = type(threading.RLock())
# Each kind, and what a model uses in its place.
_HIDDEN: tuple[tuple[type, str, str], ...] = (
    (_LOCK, "threading.Lock", "machine.executor.spinlock(name)"),
    (_RLOCK, "threading.RLock", "machine.executor.spinlock(name)"),
    (threading.Condition, "threading.Condition", "machine.executor.semaphore(0, name)"),
    (threading.Semaphore, "threading.Semaphore", "machine.executor.semaphore(n, name)"),
    (threading.Event, "threading.Event", "machine.executor.semaphore(0, name)"),
    (queue.Queue, "queue.Queue", "machine.executor.semaphore(n, name) and an atomic array"),
)


class HiddenBlocking(ValueError):
    """A model's task can reach a threading primitive the scheduler cannot see."""


def kind_of(value: object) -> tuple[str, str] | None:
    """(what it is, what to use instead) for a hidden primitive, else None."""
    for tp, name, instead in _HIDDEN:
        if isinstance(value, tp):
            return name, instead
    return None


def check_model(state: object, tasks: Sequence[Callable[..., object]]) -> None:
    """Raise HiddenBlocking naming the first hidden primitive a task uses."""
    for fn in tasks:
        code = getattr(fn, "__code__", None)
        if not isinstance(code, CodeType):
            continue
        for name, value, how in _reachable(fn, code, state):
            kind = kind_of(value)
            if kind is None:
                continue
            line = _line_using(code, name)
            what, instead = kind
            raise HiddenBlocking(
                f"{code.co_filename}:{line} {fn.__name__} uses {how}, a {what}: pagemap's "
                "scheduler cannot see it, and a task waiting on it would stop every task "
                f"for good; use {instead} (pagemap's primitives are scheduling points)"
            )


def _reachable(fn: Any, code: CodeType, state: object) -> Iterator[tuple[str, object, str]]:
    """(name, value, how the task reaches it) for what `fn` names: the
    state's attributes, its globals and its closure's cells."""
    names = set(code.co_names)
    for attr, value in _attributes(state):
        if attr in names:
            yield attr, value, f"the state's `{attr}`"
    globals_ = getattr(fn, "__globals__", {})
    for name in sorted(names):
        if name in globals_:
            yield name, globals_[name], f"the global `{name}`"
    cells = getattr(fn, "__closure__", None) or ()
    for name, cell in zip(code.co_freevars, cells, strict=False):
        try:
            yield name, cell.cell_contents, f"`{name}` from its closure"
        except ValueError:  # an empty cell
            continue


def _attributes(state: object) -> Iterator[tuple[str, object]]:
    found = getattr(state, "__dict__", None)
    if isinstance(found, dict):
        yield from found.items()
    for slot in getattr(type(state), "__slots__", ()):
        if isinstance(slot, str) and hasattr(state, slot):
            yield slot, getattr(state, slot)


def _line_using(code: CodeType, name: str) -> int:
    """The first line of `code` that loads `name` (an attribute, a global or
    a free variable), or its first line."""
    for ins in dis.get_instructions(code):
        if ins.argval == name and ins.opname.startswith(("LOAD", "STORE")):
            line = ins.positions.lineno if ins.positions is not None else None
            if line is not None:
                return line
    return code.co_firstlineno
