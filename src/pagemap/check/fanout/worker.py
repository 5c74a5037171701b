"""A local worker process: `python -m pagemap.check.fanout.worker FD`.

It reads from the connection on file descriptor FD first the driver's
sys.path (so that models named by import path import here as they do
there), then units, one at a time, and streams back each unit's Batches
(check/fanout/work.py): ("batch", Batch) messages, or ("failed", uid,
sentence) when the unit raised.  None, or the driver going away, ends it.
The driver sends nothing while a unit runs but a stop (None): a message
waiting ends the unit where it is (STOPPED) at its next batch, and then the
worker.

It runs in a session of its own, so a Ctrl-C at the terminal reaches the
driver alone, which decides what stops; SIGTERM and SIGKILL end it.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from pagemap.check.fanout.work import run_unit
from pagemap.check.runner import DEFAULT_WATCHDOG
from pagemap.sync.watchdog import Watchdog


def serve(conn: Connection) -> None:
    """Run the units the driver sends, until it sends None or goes away."""
    with Watchdog(DEFAULT_WATCHDOG) as dog:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            uid, unit = msg
            try:
                for batch in run_unit(uid, unit, dog, conn.poll):
                    conn.send(("batch", batch))
            except (EOFError, OSError):
                return
            except Exception as exc:
                conn.send(("failed", uid, f"{type(exc).__name__}: {exc}"))


def main(argv: list[str]) -> int:
    conn = Connection(int(argv[1]))
    try:
        path = conn.recv()
    except (EOFError, OSError):
        return 0
    sys.path[:] = list(path)
    serve(conn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
