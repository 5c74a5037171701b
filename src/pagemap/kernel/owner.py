"""Checks at the Python API's doors: the argument's type, the machine it
belongs to, and whether it is still open.

Every public call of the kernel's objects (File, PageMap, BlockDevice, Proc)
checks its arguments here before it touches anything, so a bad argument
changes nothing.  Rules:

- A wrong type is the caller's programming error: TypeError.  Integers are
  taken through operator.index (an int, a bool, numpy's integers), never by
  truncating a float.
- A machine is known by its frames (its PageAllocator): every page map and
  process holds the allocator of the machine that made it, and a page is
  this machine's only if the allocator's page for its frame number is that
  very page.  An object of another machine is WrongMachine (EINVAL): a frame
  number of one machine names an unrelated frame of another.
- A closed object is AlreadyClosed (EBADF).

Nothing here takes a lock or reaches a scheduling point.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, TypeVar

from pagemap.kernel.errors import AlreadyClosed, NoSuchProcess, WrongMachine

if TYPE_CHECKING:
    from pagemap.kernel.page import Page, PageAllocator

Buffer = bytes | bytearray | memoryview
T = TypeVar("T")


def as_int(value: object, op: str, what: str) -> int:
    """`value` as an int, or TypeError naming the argument."""
    if type(value) is int:
        return value
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{op}: {what} must be an int, not {type(value).__name__} {value!r:.40}"
        ) from None


def as_buffer(data: object, op: str) -> memoryview:
    """The bytes of a bytes-like object (bytes, bytearray, memoryview, array),
    as a flat view of bytes; TypeError for anything else (an int or a list
    would otherwise be read as bytes by bytes())."""
    if isinstance(data, str) or not _is_buffer(data):
        raise TypeError(
            f"{op}: data must be bytes-like (bytes, bytearray, memoryview), "
            f"not {type(data).__name__}"
        )
    return memoryview(data).cast("B")  # type: ignore[arg-type]


def _is_buffer(data: object) -> bool:
    try:
        memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def check_type(value: object, cls: type[T], op: str, what: str) -> T:
    """`value` if it is a `cls`; TypeError naming what was expected."""
    if not isinstance(value, cls):
        raise TypeError(f"{op}: {what} must be a {cls.__name__}, not {type(value).__name__}")
    return value


def check_machine(frames: PageAllocator, mine: PageAllocator, op: str, what: str) -> None:
    """WrongMachine unless `frames` (the object's machine) is `mine`."""
    if frames is not mine:
        raise WrongMachine(f"{op}: {what} belongs to another Machine; use it only with its own")


def owns_page(allocator: PageAllocator, page: Page) -> bool:
    """Whether `page` is the record of one of `allocator`'s frames."""
    pages = allocator.pages
    return 0 <= page.ppn < len(pages) and pages[page.ppn] is page


def check_page(allocator: PageAllocator, page: Page, op: str, what: str = "the page") -> None:
    """WrongMachine unless `page` is one of this machine's pages."""
    if not owns_page(allocator, page):
        raise WrongMachine(f"{op}: {what} belongs to another Machine; use it only with its own")


def check_open(closed: bool, op: str, what: str) -> None:
    """AlreadyClosed if `closed`."""
    if closed:
        raise AlreadyClosed(f"{op}: {what} is closed")


def check_alive(exited: bool, op: str, pid: int) -> None:
    """NoSuchProcess (ESRCH) if process `pid` has exited."""
    if exited:
        raise NoSuchProcess(f"{op}: process {pid} has exited (exit(), or its machine was closed)")


__all__ = [
    "Buffer",
    "as_buffer",
    "as_int",
    "check_alive",
    "check_machine",
    "check_open",
    "check_page",
    "check_type",
    "owns_page",
]
