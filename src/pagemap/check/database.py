"""Failing schedules kept between test runs, and replayed first (as hypothesis's
database keeps failing examples).

Rules: the database is a directory, PAGEMAP_DATABASE (the pytest plugin sets it to
`.pagemap/` at the project's root unless it is set already; "off" turns it off),
and it is used only inside a pytest test (PYTEST_CURRENT_TEST names it).  Each
test has a directory, `examples/<hash of the test id>/`, holding a file `test`
with the test id and one trace per model the test explores (keyed by the model's
name, its task and check functions' names, its cores and memory), each a trace
file that `pagemap replay` reads.  A trace is written whole or not at all (a
temp file renamed into place), and is removed when it no longer fails: the bug
was fixed, or the model changed so that its schedule cannot be followed.

A stored trace is data, like any other: replayed first, its schedule runs on the
functions the test passes to explore(), never on the import paths the file names
(a database checked into a repository cannot choose what code a test run calls).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pagemap.check.trace import Trace, TraceError

OFF = ("off", "none", "0", "no", "false")


def current_test(env: Mapping[str, str] | None = None) -> str | None:
    """The id of the pytest test running now ("tests/x.py::test_y[1]"), if any."""
    env = os.environ if env is None else env
    running = env.get("PYTEST_CURRENT_TEST", "")
    if not running:
        return None
    test, _, phase = running.rpartition(" ")
    return test if phase.startswith("(") else running


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def model_key(model: Any) -> str:
    """What tells one model of a test from another, in a file name."""
    parts = [
        str(getattr(model, "name", "model")),
        [getattr(t, "__qualname__", repr(t)) for t in getattr(model, "tasks", ())],
        getattr(getattr(model, "check", None), "__qualname__", ""),
        model.cores,
        model.memory,
        sorted(dict(model.params).items()),
    ]
    return _digest(json.dumps(parts, default=str))


class Database:
    """The failing schedules of one test."""

    def __init__(self, root: Path, test: str) -> None:
        self.root = root
        self.test = test
        self.directory = root / "examples" / _digest(test)

    @classmethod
    def for_current_test(cls, env: Mapping[str, str] | None = None) -> Database | None:
        """The database of the pytest test running now; None outside one, or off."""
        env = os.environ if env is None else env
        where = env.get("PAGEMAP_DATABASE", "").strip()
        test = current_test(env)
        if not where or where.lower() in OFF or test is None:
            return None
        return cls(Path(where), test)

    def path(self, model: Any) -> Path:
        return self.directory / f"{model_key(model)}.json"

    def load(self, model: Any) -> Trace | None:
        """The stored failing schedule of `model` in this test, if any (a file that
        is no longer a trace this pagemap reads is dropped)."""
        path = self.path(model)
        if not path.exists():
            return None
        try:
            return Trace.load(path)
        except TraceError:
            self.discard(model)
            return None

    def save(self, model: Any, trace: Trace) -> Path:
        """Store `trace` as `model`'s failing schedule in this test."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "test").write_text(self.test + "\n", encoding="utf-8")
        path = self.path(model)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(trace.to_json() + "\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def discard(self, model: Any) -> None:
        """Forget `model`'s schedule (and the test's directory once it is empty)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(model).unlink()
        if self.directory.is_dir() and not any(
            p.suffix == ".json" for p in self.directory.iterdir()
        ):
            with contextlib.suppress(OSError):
                (self.directory / "test").unlink()
                self.directory.rmdir()


__all__ = ["Database", "current_test", "model_key"]
