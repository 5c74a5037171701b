"""Stopping an exploration: Ctrl-C and SIGTERM become a flag the driver reads.

The first SIGINT or SIGTERM sets the flag and returns at once; the driver
sees it within a poll (0.1 s with worker processes, one schedule serially),
cancels what is pending, and reports what was explored.  A second SIGINT
raises KeyboardInterrupt, for a stop that will not wait even for that.

Rules: `on_signals` installs its handlers only in the main thread (elsewhere
the flag is set by hand) and restores the previous ones on exit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Stop:
    """Set once: by a signal (`signum`), or by `request()`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, signum: int = signal.SIGINT) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process it ended."""
        return 128 + (self.signum or signal.SIGINT)

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[Stop]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request(signum)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


__all__ = ["Stop"]
