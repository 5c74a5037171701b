"""Writeback errors, recorded on the mapping and reported once per open file.

Linux's errseq_t (lib/errseq.c, 5660e13d2fd6, 4.13; b4678df184b3, 4.17),
word for word: one 64-bit word on each page map holds the errno of the
latest failed writeback (bits 0-11), a SEEN bit (12) set once some file has
been told of it, and a counter (bits 13-63) bumped by a new error after the
last one was seen.  Each open file (kernel/vfs.py File) samples the word when
it is opened and, at each fsync or msync, reports an error if the word moved
since its sample, and takes the word as its new sample.  So every file
description hears of every error once, whichever file's writeback (or the
flusher's, or reclaim's, or removal's) met it; and a file opened after an
error that nobody has seen yet hears of it too (4.17: sample gives 0 for an
unseen error).  ENOSPC stays ENOSPC, EIO stays EIO: the word keeps the errno.

Two switches, attributes of the mapping's WritebackErrors, read where Linux
has the code they stand for:

- `per_file` (default True, the fix): with False, the mapping keeps the old
  single pair of flags (AS_EIO, AS_ENOSPC, before 4.13), which the first
  fsync to look tests and clears: every other file, and every later open,
  hears nothing (fsyncgate; scenarios/known/fsyncgate.py);
- `failed_page`: what becomes of a page whose writeback failed: "keep"
  (stays dirty, retried at the next writeback: our kernel's behaviour until
  now) or "clean" (Linux's: marked clean, its data dropped when the page is
  evicted, the error living on only in this record).

Rules: record() runs in the task whose writepage failed, with the page lock
held (PageMap._writeback_page); every operation on the word is one atomic
step, a scheduling point on `<map>.wb_err`, so the checker orders reports
against records.  Nothing here sleeps or takes a lock.  The `on_*` hooks are
for the errseq oracle (oracles/errseq.py); the kernel never sets them.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from pagemap.sync.executor import Executor

MAX_ERRNO = 0xFFF
ERRSEQ_SEEN = 1 << 12
ERRSEQ_CTR_INC = 1 << 13
_WORD = (1 << 64) - 1

# The pre-4.13 flags, in a word of their own: what the old fsync tested and cleared.
AS_EIO = 1
AS_ENOSPC = 2

FAILED_PAGE_MODES = ("keep", "clean")


def error_code(exc: BaseException) -> int:
    """The errno a failed writeback records: the exception's own, EIO if it has none."""
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) and 0 < code <= MAX_ERRNO else errno.EIO


class WritebackErrors:
    """mapping->wb_err (and, behind `per_file` off, the old AS_EIO/AS_ENOSPC flags)."""

    def __init__(self, executor: Executor, name: str) -> None:
        self.word = executor.atomic(0, f"{name}.wb_err")
        self.flags = executor.atomic(0, f"{name}.as_err")
        self.per_file = True
        self.failed_page = "keep"
        # The errseq oracle's ears: told (errno) as an error is recorded,
        # (file) as a file samples, (file, errno reported or 0) as one checks,
        # () as a check marks the word SEEN.
        self.on_record: Callable[[int], None] | None = None
        self.on_sample: Callable[[object], None] | None = None
        self.on_check: Callable[[object, int], None] | None = None
        self.on_seen: Callable[[], None] | None = None  # as a check sets SEEN

    def __repr__(self) -> str:
        word = self.word.value
        return (
            f"WritebackErrors({self.word.name}: errno {word & MAX_ERRNO}, "
            f"{'seen' if word & ERRSEQ_SEEN else 'unseen'}, counter {word >> 13})"
        )

    def set_failed_page(self, mode: str) -> None:
        """Choose what a failed writeback does to its page: "keep" or "clean"."""
        if mode not in FAILED_PAGE_MODES:
            raise ValueError(f"failed_page must be 'keep' or 'clean', not {mode!r}")
        self.failed_page = mode

    # -- recording -------------------------------------------------------------------
    def record(self, exc: BaseException) -> bool:
        """A writepage failed with `exc`: record its errno (errseq_set, and
        mapping_set_error's flags); True if the page is to stay dirty.  What
        is not an OSError (the task being torn down) records nothing."""
        if not isinstance(exc, OSError):
            return True
        code = error_code(exc)
        self.flags.fetch_or(AS_ENOSPC if code == errno.ENOSPC else AS_EIO)
        word = self.word
        old = word.load()
        while True:
            new = (old & ~(MAX_ERRNO | ERRSEQ_SEEN)) | code
            if old & ERRSEQ_SEEN:
                new = (new + ERRSEQ_CTR_INC) & _WORD  # someone saw the last one: a new error
            if new == old or word.cas(old, new):
                break
            old = word.load()
        if self.on_record is not None:
            self.on_record(code)
        return self.failed_page == "keep"

    # -- reporting -------------------------------------------------------------------
    def sample(self, file: object) -> int:
        """errseq_sample, as a file is opened: the word if its error was
        seen (or there is none), else 0, so the file reports it (4.17)."""
        old = self.word.load()
        if self.on_sample is not None:
            self.on_sample(file)
        return old if old & ERRSEQ_SEEN else 0

    def unchanged(self, file: object, since: int) -> bool:
        """errseq_check's fast path, with no lock: True if nothing was
        recorded since `since` (the file has nothing to report: the oracle
        hears so); False if the file must check and advance under its lock."""
        if not self.per_file:
            return False
        if self.word.load() != since:
            return False
        if self.on_check is not None:
            self.on_check(file, 0)
        return True

    def check_and_advance(self, file: object, since: int) -> tuple[int, int]:
        """errseq_check_and_advance, at a file's fsync or msync: (the errno
        to report, 0 for none; the file's new sample)."""
        if not self.per_file:
            # Before 4.13: one pair of flags for the whole mapping, cleared
            # by whoever looks first (filemap_check_errors).
            old = self.flags.fetch_and(0)
            code = errno.EIO if old & AS_EIO else errno.ENOSPC if old & AS_ENOSPC else 0
            if self.on_check is not None:
                self.on_check(file, code)
            return code, since
        word = self.word
        old = word.load()  # the moment of the check: the oracle hears of it here
        code = (old | ERRSEQ_SEEN) & MAX_ERRNO if old != since else 0
        if self.on_check is not None:
            self.on_check(file, code)
        if old != since:
            new = old | ERRSEQ_SEEN
            # Lost to a new record, that one stays unseen; to another reader,
            # it set SEEN.  Until SEEN is in, a file opened meanwhile samples
            # 0 and reports the error again, as on Linux (errseq-open).
            if new != old and word.cas(old, new) and self.on_seen is not None:
                self.on_seen()
            since = new
        return code, since


__all__ = [
    "ERRSEQ_CTR_INC",
    "ERRSEQ_SEEN",
    "FAILED_PAGE_MODES",
    "MAX_ERRNO",
    "WritebackErrors",
    "error_code",
]
