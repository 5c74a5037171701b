"""Writeback errors reported: every fsync's (and msync's) answer matches the
errors recorded since that file description last saw one.

The kernel keeps one errseq word per mapping (kernel/errseq.py); this oracle
keeps, independently, the list of errors recorded on the mapping and, for
each open file, how far into that list it has been told.  Fed by the word's
hooks (WritebackErrors.on_record, on_sample, on_check), each called in the
same atomic step as the kernel's own access to the word:

- record(errno): a writeback failed; the error joins the list;
- sample(file): a file is opened; it has been told of every error some file
  has already been told of (Linux 4.17: an error nobody saw is still news);
- seen(): a check marked the word SEEN, and from then on the errors so far
  count as told (a file opened between a check's look and its mark is told
  again, as on Linux: over-reporting, never under);
- check(file, errno): the file's fsync or msync looks; it must report an
  error if any was recorded past its mark, and then the latest one's errno
  (ENOSPC stays ENOSPC), and 0 if none was.  Its mark moves to the end.

A check that answers 0 with an error pending is fsyncgate (scenarios/known/
fsyncgate.py): the data may be gone, and the caller was told all is well.

Rules: plain Python, fed from the kernel's steps with no scheduling point of
its own; a violation is handed to `fail` at once.  Files are told apart by
identity, looked up and never iterated, so no order depends on addresses.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field

from pagemap.oracles import DURABILITY


def _name(code: int) -> str:
    return errno.errorcode.get(code, str(code)) if code else "0"


@dataclass
class ErrseqOracle:
    """The errors of one mapping, and each file's mark in them."""

    fail: Callable[[str, str], object]
    name: str = "file"
    errors: list[int] = field(default_factory=list)
    seen_upto: int = 0  # errors before this index have been reported to some file
    marks: dict[int, int] = field(default_factory=dict)  # id(file) -> index
    checks: int = 0

    def record(self, code: int) -> None:
        self.errors.append(code)

    def sample(self, file: object) -> None:
        self.marks[id(file)] = self.seen_upto

    def seen(self) -> None:
        self.seen_upto = len(self.errors)

    def check(self, file: object, code: int) -> None:
        self.checks += 1
        mark = self.marks.get(id(file), 0)
        pending = self.errors[mark:]
        self.marks[id(file)] = len(self.errors)
        if pending and not code:
            self.fail(
                DURABILITY,
                f"a sync of {self.name} reported success, but {len(pending)} writeback "
                f"error(s) ({', '.join(_name(c) for c in pending)}) were recorded since this "
                "file description last saw one: what failed to be written may be lost unseen",
            )
        elif not pending and code:
            self.fail(
                DURABILITY,
                f"a sync of {self.name} reported {_name(code)}, but no writeback error was "
                "recorded since this file description last saw one",
            )
        elif pending and code != pending[-1]:
            self.fail(
                DURABILITY,
                f"a sync of {self.name} reported {_name(code)}, but the latest writeback error "
                f"recorded since this file description last saw one is {_name(pending[-1])}",
            )


__all__ = ["ErrseqOracle"]
