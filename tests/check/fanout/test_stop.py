"""Ctrl-C and SIGTERM stop `pagemap check` with every engine: it exits
130 (143 for SIGTERM) soon after, with the summary of what was explored and
a line saying it stopped.  Each test runs the command in a process of its
own and signals it once the exploration is under way; the only time limit
is a generous one on the whole test."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

CHECK = "import sys; from pagemap.cli import main; sys.exit(main(sys.argv[1:]))"
LONG = ["check", "--strategy", "dpor", "--preemptions", "3"]  # some 20 s on one core
WHY = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


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
    proc = subprocess.Popen(
        [sys.executable, "-c", CHECK, *LONG, *engine],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed once the engine is up
        assert "units of work" in banner, banner
        time.sleep(1.0)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"STOPPED by {WHY[sig]}: "), last
    assert int(last.split()[3].replace(",", "")) > 0  # schedules explored, and said
    assert "pagemap check" in out and "load-race" in out  # the summary table
    assert "Traceback" not in err and "Exception" not in err, err
