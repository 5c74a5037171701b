"""`pagemap run` stopped by SIGTERM (what a CI timeout sends) or Ctrl-C: it exits
143 or 130 and leaves no temp file behind, under either executor.  A subprocess
each; the only time limit is a generous timeout on the child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RUN = [
    sys.executable,
    "-m",
    "pagemap",
    "run",
    "--memory",
    "1MiB",
    "--file-size",
    "4MiB",
    "--procs",
    "2",
    "--ops",
    "100000000",  # far more than it gets to do before the signal
]


def started(tmp: Path, proc: subprocess.Popen[str]) -> Path:
    """The run's temp directory, once its data file exists."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for d in tmp.glob("pagemap-run-*"):
            if (d / "data.bin").exists():
                return d
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the run never made its data file")


@pytest.mark.parametrize(
    ("executor", "signum", "code"),
    [
        ("threads", signal.SIGTERM, 143),
        ("sim", signal.SIGTERM, 143),
        ("threads", signal.SIGINT, 130),
        ("sim", signal.SIGINT, 130),
    ],
)
def test_a_stopped_run_leaves_no_temp_files(
    tmp_path: Path, executor: str, signum: int, code: int
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [*RUN, "--executor", executor, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    workdir = started(tmp, proc)
    time.sleep(0.3)  # well into the operations
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, (out, err)
    assert not workdir.exists()
    assert list(tmp.iterdir()) == []
    assert "Traceback" not in err
    said = out + err
    assert ("terminated" in said) if signum == signal.SIGTERM else ("interrupted" in said)
