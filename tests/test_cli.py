"""The `pagemap` command as a whole: one wording for every numeric option, one line
for every failure, `python -m pagemap`, and what `make run` installs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pagemap.cli import main

ROOT = Path(__file__).resolve().parent.parent

# Every numeric option of every command, with a value below its range, one above
# it (where it has an upper bound), and one that is not a number.
NUMERIC = [
    ("run", "--seed", ["-1", "x"]),
    ("run", "--cores", ["0", "-2", "257", "x"]),
    ("run", "--procs", ["0", "-2", "1025"]),
    ("run", "--ops", ["-5", "1.5"]),
    ("run", "--memory", ["4KiB", "64TiB", "lots"]),
    ("run", "--file-size", ["0", "64TiB", "big"]),
    ("run", "--flusher-period", ["0", "-1", "99999", "soon"]),
    ("check", "--budget", ["0", "-2", "x"]),
    ("check", "--time", ["0", "-1", "nan", "x"]),
    ("check", "--preemptions", ["-1", "1001"]),
    ("check", "--seed", ["-1"]),
    ("check", "--depth", ["0", "1001"]),
    ("check", "--jobs", ["0", "-2", "1025", "two"]),
    ("check", "--max-steps", ["0", "10000000000"]),
]
SAME_WORDING = re.compile(
    r"^pagemap (run|check): argument (--[a-z-]+): expected "
    r"(a whole number (from \d+ to \d+|of at least \d+)"
    r"|a size such as 64MiB, from [\d.]+ \w+ to [\d.]+ \w+ \(this machine's memory\)"
    r"|seconds from [\d.e+-]+ to [\d.e+-]+)"
    r", not .+ \(see pagemap \1 --help\)$"
)


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [(c, o, v) for c, o, values in NUMERIC for v in values],
)
def test_every_numeric_option_reads_the_same(
    command: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, f"{option}={value}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    line = err.strip()
    m = SAME_WORDING.match(line)
    assert m is not None, line
    assert m.group(2) == option
    assert f"not {value!r} (" in line or f"not {value} (" in line


def test_memory_error_and_internal_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pagemap.workload import command

    def out_of_memory(*args: object) -> None:
        raise MemoryError

    def broken(*args: object) -> None:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(command, "run_workload", out_of_memory)
    assert main(["run", "--ops", "10", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ran out of memory" in err and "Traceback" not in err
    monkeypatch.setattr(command, "run_workload", broken)
    monkeypatch.delenv("PAGEMAP_TRACEBACK", raising=False)
    assert main(["run", "--ops", "10", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error, RuntimeError: a bug over two lines" in err
    assert "PAGEMAP_TRACEBACK=1" in err
    monkeypatch.setenv("PAGEMAP_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["run", "--ops", "10", "--json"])


def test_python_dash_m_pagemap_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pagemap", "check", "--list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "store-remove" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "pagemap", "check", "--jobs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("pagemap check: argument --jobs")


def test_make_run_installs_only_what_running_needs(tmp_path: Path) -> None:
    """A dry run of `make run` on a machine with no venv yet: it installs the
    package alone, none of the dev extra's tools."""
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "run", f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    installs = [line for line in done.stdout.splitlines() if "pip install" in line]
    assert any(line.rstrip().endswith("-e .") for line in installs), installs
    assert not any("[dev]" in line or "dev]" in line for line in installs), installs
    assert f"{venv}/bin/pagemap run" in done.stdout
    # The test target does install the dev extra, and the cluster extra its tests need.
    test = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "unit", f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "'.[dev,cluster]'" in test.stdout


def test_ctrl_c_while_the_entry_point_imports_pagemap_is_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    import _pagemap_cli

    real_import = builtins.__import__

    def interrupted(name: str, *args: Any, **kw: Any) -> Any:
        if name == "pagemap.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    assert _pagemap_cli.main(["check", "--list"]) == 130
    assert capsys.readouterr().err == "pagemap: interrupted\n"


# Run in the child before the entry point: the import of pagemap's kernel (inside
# `import pagemap`, the slowest part of start-up) says so in a file, then waits.
SLOW_IMPORT = """
import importlib.abc, pathlib, sys, time

class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "pagemap.kernel":
            pathlib.Path(sys.argv[1]).write_text("importing")
            time.sleep(60)
        return None

sys.meta_path.insert(0, Slow())
"""


def test_ctrl_c_during_the_imports_is_exit_130_and_no_traceback(tmp_path: Path) -> None:
    """SIGINT while the console script (as pyproject.toml names it) imports pagemap."""
    import signal
    import time
    import tomllib

    script = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = script["pagemap"].partition(":")
    (tmp_path / "slow_import.py").write_text(SLOW_IMPORT)
    marker = tmp_path / "importing"
    code = f"import sys, slow_import; from {module} import {function}; sys.exit({function}())"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never reached the import"
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err and len(err.splitlines()) <= 1, err
