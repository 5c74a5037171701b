"""Ctrl-C and SIGTERM stop `pagemap check` with every engine: it exits
130 (143 for SIGTERM) soon after, with the summary of what was explored and
a line saying it stopped.  Each test runs the command in a process of its
own, its output a terminal's as far as the progress display knows, and
signals it once the progress line shows schedules explored, so that what
was explored is never nothing, however slowly the engine starts on a busy
machine; the only time limit is a generous one on the whole test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

CHECK = "import sys; from pagemap.cli import main; sys.exit(main(sys.argv[1:]))"
LONG = ["check", "--strategy", "dpor", "--preemptions", "3"]  # some 100 s on one core
WHY = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
UNDER_WAY = re.compile(rb"units? \xc2\xb7 [1-9][\d,]* schedules")  # "· 84 schedules"
PATIENCE = 120.0  # seconds the exploration may take to get under way


def _read(stream: int, into: bytearray) -> None:
    while chunk := os.read(stream, 65536):
        into += chunk


@pytest.mark.parametrize(
    "engine, sig",
    [
        ([], signal.SIGINT),
        (["--jobs", "2"], signal.SIGINT),
        (["--jobs", "2"], signal.SIGTERM),
        (["--scheduler", "local", "--jobs", "2"], signal.SIGINT),
    ],
    ids=["serial-INT", "jobs-INT", "jobs-TERM", "dask-INT"],
)
def test_a_signal_stops_the_exploration_and_shows_what_was_explored(
    engine: list[str], sig: signal.Signals
) -> None:
    env = {**os.environ, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHECK, *LONG, *engine],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    out = bytearray()
    assert proc.stdout is not None and proc.stderr is not None
    reader = threading.Thread(target=_read, args=(proc.stdout.fileno(), out), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while not UNDER_WAY.search(out) and proc.poll() is None:
            assert time.monotonic() < deadline, f"no schedule explored in {PATIENCE} s"
            time.sleep(0.05)
        proc.send_signal(sig)
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    text = out.decode()
    assert proc.returncode == 128 + sig, err
    last = text.strip().splitlines()[-1]
    assert last.startswith(f"STOPPED by {WHY[sig]}: "), last
    assert int(last.split()[3].replace(",", "")) > 0  # schedules explored, and said
    assert "pagemap check" in text and "dpor ≤3" in text  # the summary table, with rows
    assert "Traceback" not in err and "Exception" not in err, err
