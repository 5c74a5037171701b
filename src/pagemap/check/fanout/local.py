"""The local engine: units in worker processes on this machine (`--jobs N`).

Each worker is a fresh interpreter running check/fanout/worker.py, in a
session of its own, with a socket to the driver: it never inherits the
driver's threads, locks or __main__, and it runs only pagemap's code and
the models units name.  The driver hands a worker one unit at a time; the
worker streams Batches back as it runs and waits for the next.

Rules: only the driver's thread calls the engine.  A worker that dies
(killed, out of memory) has its unit handed to a fresh worker; after
RETRIES deaths on one unit it is given up (WorkerLost).  What a dead worker
reported stays: a unit run again reports the same schedules, and the ledger
drops the repeats.  `cancel` and `close` kill the workers that run what
nobody will read, so a stop takes effect at once, whatever a schedule was
doing; Ctrl-C at the terminal reaches the driver alone.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait

from pagemap.check.fanout.errors import UnitFailed, WorkerLost
from pagemap.check.fanout.unit import Batch, Unit

RETRIES = 3  # deaths of a worker running one unit before the unit is given up (as Dask's default)


def describe(unit: Unit) -> str:
    where = f", subtree at depth {len(unit.part.prefix)}" if not unit.part.whole else ""
    return f"{unit.scenario} ({unit.strategy}{where})"


class _Worker:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pagemap.check.fanout.worker", str(fd)],
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.conn.send(list(sys.path))
        self.uid: int | None = None  # the unit it runs

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.conn.close()


class LocalEngine:
    name = "in worker processes"

    def __init__(self, jobs: int, retries: int = RETRIES) -> None:
        if jobs < 1:
            raise ValueError(f"the local engine needs at least 1 worker, not {jobs}")
        self.retries = retries
        self.queue: deque[int] = deque()
        self.units: dict[int, Unit] = {}
        self.deaths: dict[int, int] = {}
        self.pool: list[_Worker] = []
        self.name = f"in {jobs} worker processes"
        for _ in range(jobs):
            self.pool.append(_Worker())

    def workers(self) -> int:
        return len(self.pool)

    def pids(self, busy: bool = False) -> list[int]:
        """The worker processes' ids (`busy`: those running a unit)."""
        return [w.proc.pid for w in self.pool if w.uid is not None or not busy]

    def submit(self, uid: int, unit: Unit) -> None:
        self.units[uid] = unit
        self.queue.append(uid)
        self._feed()

    def pump(self, want: int | None, timeout: float) -> list[Batch]:
        """What the workers reported within `timeout` seconds."""
        out: list[Batch] = []
        ready = wait([w.conn for w in self.pool], timeout)
        for worker in [w for w in self.pool if w.conn in ready]:
            for msg in self._drain(worker):
                self._receive(worker, msg, out)
        self._feed()
        return out

    def _drain(self, worker: _Worker, respawn: bool = True) -> list[tuple[object, ...]]:
        """What a worker sent; if it is gone, its unit goes to another
        (`respawn`), or nowhere (a halt)."""
        got = []
        try:
            while worker.conn.poll():
                got.append(worker.conn.recv())
        except (EOFError, ConnectionError, OSError):
            if respawn:
                self._lost(worker)
            else:
                worker.uid = None
        return got

    def _receive(self, worker: _Worker, msg: tuple[object, ...], out: list[Batch]) -> None:
        if msg[0] == "failed":
            uid = worker.uid
            assert uid is not None
            raise UnitFailed(f"unit {uid}, {describe(self.units[uid])}, failed: {msg[2]}")
        batch = msg[1]
        assert isinstance(batch, Batch)
        out.append(batch)
        if batch.end is not None:
            self.units.pop(batch.uid, None)
            worker.uid = None

    def _lost(self, worker: _Worker) -> None:
        """A worker died: its unit goes back to the front of the queue."""
        worker.kill()
        self.pool[self.pool.index(worker)] = _Worker()
        uid = worker.uid
        if uid is None or uid not in self.units:
            return
        deaths = self.deaths[uid] = self.deaths.get(uid, 0) + 1
        if deaths > self.retries:
            raise WorkerLost(
                f"worker processes died {deaths} times running unit {uid}, "
                f"{describe(self.units[uid])}; it was given up (the last exit status was "
                f"{worker.proc.returncode})"
            )
        self.queue.appendleft(uid)

    def _feed(self) -> None:
        for worker in self.pool:
            while worker.uid is None and self.queue:
                uid = self.queue.popleft()
                if uid not in self.units:
                    continue  # cancelled
                try:
                    worker.conn.send((uid, self.units[uid]))
                except OSError:
                    self.queue.appendleft(uid)
                    break  # dead: pump finds it
                worker.uid = uid

    def cancel(self, uids: Iterable[int]) -> None:
        gone = set(uids)
        for uid in gone:
            self.units.pop(uid, None)
        for i, worker in enumerate(self.pool):
            if worker.uid in gone:
                worker.kill()
                self.pool[i] = _Worker()
        self._feed()

    def halt(self, grace: float) -> list[Batch]:
        """Ask every busy worker to stop (its unit ends at its next batch, at
        most 0.2 s away, or after the schedule it is in); what they report
        within `grace` seconds."""
        self.queue.clear()
        busy = [w for w in self.pool if w.uid is not None]
        for worker in busy:
            with contextlib.suppress(OSError):  # dead: nothing more to hear from it
                worker.conn.send(None)
        out: list[Batch] = []
        deadline = time.monotonic() + grace
        while any(w.uid is not None for w in busy) and time.monotonic() < deadline:
            ready = wait([w.conn for w in busy if w.uid is not None], deadline - time.monotonic())
            for worker in [w for w in busy if w.conn in ready]:
                for msg in self._drain(worker, respawn=False):
                    if msg[0] == "batch":
                        self._receive(worker, msg, out)
                if worker.uid is not None and worker.proc.poll() is not None:
                    worker.uid = None  # it died: what it sent is all there is
        return out

    def close(self) -> None:
        for worker in self.pool:
            worker.kill()
        self.pool = []
        self.queue.clear()


__all__ = ["RETRIES", "LocalEngine", "describe"]
