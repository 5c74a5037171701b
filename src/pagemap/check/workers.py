"""Fresh interpreters fed one JSON line at a time: the workers of `pagemap check
--coverage` and `--mutants --jobs N`.

A worker runs a script (`python -c`) that reads one JSON document a line from
its stdin and answers each with one JSON line on stdout, in order; at the end
of its stdin it finishes (coverage saves its data there) and exits 0.  The pool
hands each worker the next item as soon as it answers, so a slow item holds up
one worker only.

Rules: a worker is a fresh interpreter, never a fork, so it inherits none of
the driver's threads or imports (coverage must start before the kernel is
imported).  It runs in a session of its own: Ctrl-C at the terminal reaches the
driver alone, which kills the workers when it stops, before it removes anything
they write to.  What a worker prints on stderr goes to an unnamed temp file,
whose last line says why it failed; its stdout carries the answers alone.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NoReturn

from pagemap.check.fanout import Stop

POLL = 0.2  # seconds between looks at `stop` while the workers run

# Told (items answered, items in all, the index of the item just answered).
Progress = Callable[[int, int, int], None]

# The head of a worker's script: its own prints go to stderr, the answers to `answer`.
PRELUDE = """
import json, sys
_answers = sys.stdout
sys.stdout = sys.stderr
def answer(doc):
    _answers.write(json.dumps(doc) + "\\n")
    _answers.flush()
"""


class Stopped(Exception):
    """Ctrl-C or SIGTERM asked the pool to stop before every item was answered."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"stopped after {done} of {total}")
        self.done, self.total = done, total


class WorkerFailed(RuntimeError):
    """A worker exited, or answered nothing, before its work was done."""


class _Worker:
    def __init__(self, script: str, args: Sequence[str]) -> None:
        self.errors = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by kill)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
            start_new_session=True,
        )
        self.item: int | None = None  # the index of the item it works on

    def send(self, index: int, item: object) -> None:
        assert self.proc.stdin is not None
        self.item = index
        self.proc.stdin.write(json.dumps(item) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.fail("answered nothing")
        self.item = None
        return json.loads(line)

    def finish(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            self.fail(f"exited {self.proc.returncode}")

    def fail(self, what: str) -> NoReturn:
        self.proc.wait()
        self.errors.seek(0)
        last = (self.errors.read().strip().splitlines() or ["no output"])[-1]
        raise WorkerFailed(f"a worker process {what}: {last}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.errors.close()


class Pool:
    """One worker per entry of `args` (its command-line arguments), each
    running `script` after PRELUDE; killed when the `with` block ends."""

    def __init__(self, script: str, args: Sequence[Sequence[str]]) -> None:
        self.workers: list[_Worker] = []
        try:
            for a in args:
                self.workers.append(_Worker(script, a))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def map(
        self,
        items: Sequence[object],
        progress: Progress | None = None,
        stop: Stop | None = None,
    ) -> list[Any]:
        """The answers to `items`, in their order; Stopped once `stop` is requested."""
        answers: list[Any] = [None] * len(items)
        pending = iter(enumerate(items))
        done = 0
        with selectors.DefaultSelector() as sel:
            for w in self.workers:
                nxt = next(pending, None)
                if nxt is None:
                    break
                w.send(*nxt)
                sel.register(w.proc.stdout, selectors.EVENT_READ, w)  # type: ignore[arg-type]
            while done < len(items):
                if stop is not None and stop.requested:
                    raise Stopped(done, len(items))
                for key, _ in sel.select(POLL):
                    w = key.data
                    index = w.item
                    try:
                        answers[index] = w.answer()
                    except WorkerFailed:
                        # A signal to the whole process group ends the workers too:
                        # that is the stop, not a failure.
                        if stop is not None and stop.requested:
                            raise Stopped(done, len(items)) from None
                        raise
                    done += 1
                    if progress is not None:
                        progress(done, len(items), index)
                    nxt = next(pending, None)
                    if nxt is not None:
                        w.send(*nxt)
                    else:
                        sel.unregister(key.fileobj)
        return answers

    def finish(self) -> None:
        """Close every worker's input and wait for it to finish and exit 0."""
        for w in self.workers:
            w.finish()

    def close(self) -> None:
        for w in self.workers:
            w.kill()


__all__ = ["PRELUDE", "Pool", "Progress", "Stopped", "WorkerFailed"]
