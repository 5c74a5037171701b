"""The Dask engine: units on a Dask distributed cluster (`--scheduler ADDRESS`).

Each unit is one Dask task: `run_remote` (this module's function, found by
its import path on the worker, which needs only `pip install
pagemap[cluster]`) with the unit as plain data, so a worker runs only
pagemap's code and the models a unit names by import path.  `--scheduler
local` starts a cluster of `--jobs` worker processes on 127.0.0.1 for
trying it out.

Rules: only the driver's thread calls the engine.  Tasks are submitted with
a priority that keeps the fixed order's early units first.  A worker that
dies has its task re-run elsewhere by the Dask scheduler, up to its
`distributed.scheduler.allowed-failures` (3 by default) times; then the
unit is given up (WorkerLost).  A stop (Ctrl-C, or the end of the
exploration) cancels every task not yet started and sets a Dask Event
that running tasks poll between batches (check/fanout/work.py, every
0.2 s): they end where they are and hand back what they explored, which
the engine waits for a moment (`halt`, `close`), so that nothing runs on
after the driver and the workers' own clients close cleanly.
"""

from __future__ import annotations

import errno
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from pagemap.check.fanout.errors import ClusterUnavailable, UnitFailed, WorkerLost
from pagemap.check.fanout.local import describe
from pagemap.check.fanout.unit import Batch, Unit
from pagemap.check.fanout.work import run_whole

CONNECT_SECONDS = 10
LOCAL = "local"
POLL = 0.05  # seconds between looks at the tasks while a stop waits for them
HALT_GRACE = 1.0  # seconds `close` waits for running tasks to notice a stop


def run_remote(uid: int, unit: Unit, stop: str) -> Batch:
    """A Dask task: one unit to its end; the Event named `stop` ends it early."""
    event = _distributed().Event(stop)
    return run_whole(uid, unit, event.is_set)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ClusterUnavailable(
            "--scheduler needs Dask's distributed package: pip install 'pagemap[cluster]'",
            errno.ENOPKG,
        ) from None
    return distributed


class DaskEngine:
    name = "Dask"

    def __init__(self, address: str, jobs: int = 2, connect: float = CONNECT_SECONDS) -> None:
        distributed = _distributed()
        self.cluster: Any = None
        self.client: Any = None
        try:
            if address == LOCAL:
                self.cluster = distributed.LocalCluster(
                    n_workers=jobs,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",
                    silence_logs=logging.ERROR,
                )
                self.client = distributed.Client(self.cluster)
            else:
                self.client = distributed.Client(address, timeout=connect)
        except OSError as exc:
            self._close_cluster()
            raise ClusterUnavailable(
                f"cannot reach the Dask scheduler at {address}: {exc}"
            ) from None
        except BaseException:
            self._close_cluster()  # a second Ctrl-C while the cluster starts
            raise
        where = "a local Dask cluster" if self.cluster is not None else "the Dask cluster"
        self.name = f"on {where} at {self.client.scheduler.address} ({self.workers()} workers)"
        self.token = uuid.uuid4().hex[:12]
        self.stop_event = f"pagemap-stop-{self.token}"
        self.done = distributed.as_completed()
        self.futures: dict[int, Any] = {}
        self.units: dict[int, Unit] = {}
        self.killed = distributed.KilledWorker

    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def pids(self) -> list[int]:
        """The worker processes' ids (a local cluster's; a test kills one)."""
        found = self.client.run(lambda: __import__("os").getpid())
        return sorted(found.values())

    def submit(self, uid: int, unit: Unit) -> None:
        fut = self.client.submit(
            run_remote,
            uid,
            unit,
            self.stop_event,
            key=f"pagemap-{self.token}-{uid}",
            pure=False,
            priority=-uid,
        )
        self.futures[uid] = fut
        self.units[uid] = unit
        self.done.add(fut)

    def pump(self, want: int | None, timeout: float) -> list[Batch]:
        deadline = time.monotonic() + timeout
        while not self.done.has_ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        out: list[Batch] = []
        for fut in self.done.next_batch(block=False):
            uid = int(fut.key.rsplit("-", 1)[1])
            unit = self.units.pop(uid, None)
            if self.futures.pop(uid, None) is None or unit is None or fut.cancelled():
                continue
            try:
                batch = fut.result()
            except self.killed as exc:
                raise WorkerLost(
                    f"Dask workers died running unit {uid}, {describe(unit)}, as many times "
                    f"as the scheduler allows; it was given up ({exc})"
                ) from None
            except Exception as exc:
                raise UnitFailed(
                    f"unit {uid}, {describe(unit)}, failed on its Dask worker: {exc}"
                ) from None
            out.append(batch)
        return out

    def cancel(self, uids: Iterable[int]) -> None:
        gone = list(uids)
        futs = [f for f in (self.futures.pop(u, None) for u in gone) if f is not None]
        for u in gone:
            self.units.pop(u, None)
        if futs:
            self.client.cancel(futs)

    def halt(self, grace: float) -> list[Batch]:
        """Cancel the tasks not started, stop the running ones, and take
        what they hand back within `grace` seconds."""
        running = {key for keys in self.client.processing().values() for key in keys}
        waiting = [u for u, f in self.futures.items() if f.key not in running]
        self.cancel(waiting)
        _distributed().Event(self.stop_event, client=self.client).set()
        out: list[Batch] = []
        deadline = time.monotonic() + grace
        while self.futures and time.monotonic() < deadline:
            out += self.pump(None, min(POLL, max(deadline - time.monotonic(), 0.0)))
        return out

    def close(self) -> None:
        try:
            if self.futures:
                self.halt(HALT_GRACE)
            if self.futures:
                self.client.cancel(list(self.futures.values()), force=True)
            self.futures.clear()
        finally:
            self.client.close(timeout=CONNECT_SECONDS)
            self._close_cluster()

    def _close_cluster(self) -> None:
        if self.cluster is not None:
            self.cluster.close(timeout=CONNECT_SECONDS)
            self.cluster = None


__all__ = ["LOCAL", "DaskEngine", "run_remote"]
