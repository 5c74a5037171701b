"""Traces are data: `pagemap replay` imports a model of your own only from a
directory named with --model-path, and refuses any other reference (built in,
frozen, the standard library, site-packages, a file elsewhere, a module already
imported from elsewhere) with exit 3 and one line, before importing or calling
anything.  Each refusal here watches for the call it prevents."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import greenlet
import pytest
import rich.console

from pagemap.check import CounterexampleFound, explore
from pagemap.check.modelpath import ModelPath, Refused, module_root
from pagemap.check.schema import validate
from pagemap.cli import main
from pagemap.machine import Machine
from pagemap.sync.atomic import AtomicWord

ROOT = Path(__file__).resolve().parents[2]  # the project: where `tests` is a package


class Counter:
    def __init__(self, machine: Machine) -> None:
        self.word: AtomicWord = machine.executor.atomic(0, "counter")


def bump(c: Counter) -> None:
    v = c.word.load()
    c.word.store(v + 1)


def both_counted(c: Counter) -> bool:
    return c.word.value == 2


@pytest.fixture(scope="module")
def lost_update(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trace of this module's racy counter, as JSON: what the crafted traces edit."""
    where = tmp_path_factory.mktemp("traces")
    with pytest.raises(CounterexampleFound):
        explore(Counter, bump, bump, check=both_counted, trace_dir=where)
    (path,) = where.glob("*.json")
    raw: dict[str, Any] = json.loads(path.read_text())
    return raw


def crafted(raw: dict[str, Any], where: Path, setup: str, *tasks: str) -> Path:
    """The trace with its model's functions renamed."""
    model = {"name": "crafted", "setup": setup, "tasks": list(tasks or (setup, setup))}
    path = where / "crafted.json"
    path.write_text(json.dumps(raw | {"model": model | {"check": None}}))
    return path


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any, str], list[object]]:
    """Watch `owner.name`: every call is recorded and goes no further, so that a
    test that fails cannot run a shell command."""

    def watch(owner: Any, name: str) -> list[object]:
        seen: list[object] = []
        monkeypatch.setattr(owner, name, lambda *args, **kw: seen.append(args))
        return seen

    return watch


@pytest.fixture
def forget_modules(tmp_path: Path) -> Iterator[None]:
    """Drop the modules a test loaded from its temp directory, so none leaks into
    the next test (which would find it already imported, from elsewhere)."""
    yield
    here = str(tmp_path.resolve())
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None) or "".join(getattr(module, "__path__", []))
        if where.startswith(here):
            del sys.modules[name]


def refused(capsys: pytest.CaptureFixture[str], path: Path, *options: str) -> tuple[int, str]:
    rc = main(["replay", str(path), *options])
    out = capsys.readouterr()
    return rc, out.err.strip()


def one_line_naming(err: str, reference: str) -> None:
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert reference in err and "--model-path DIR" in err, err


@pytest.mark.parametrize("options", [(), ("--model-path", str(ROOT))])
@pytest.mark.parametrize(
    ("setup", "task"),
    [
        ("builtins:repr", "os:system"),  # the trace of the bug report
        ("os:system", "os:system"),
        ("builtins:exec", "builtins:exec"),
        ("subprocess:run", "posix:system"),
        ("_frozen_importlib:_call_with_frames_removed", "os:system"),
    ],
)
def test_python_itself_is_refused_and_nothing_is_called(
    lost_update: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    calls: Callable[[Any, str], list[object]],
    setup: str,
    task: str,
    options: tuple[str, ...],
) -> None:
    # A model's setup is called with a fresh Machine and its tasks with what setup
    # returned: no Machine made means neither ran (repr and exec are called by
    # much else, so they are watched this way); the shell is watched itself.
    watched = [
        calls(Machine, "__init__"),
        calls(os, "system"),
        calls(sys.modules["subprocess"], "run"),
    ]
    rc, err = refused(capsys, crafted(lost_update, tmp_path, setup, task), *options)
    assert watched == [[], [], []]
    assert rc == 3
    one_line_naming(err, setup)


def test_each_kind_of_python_module_is_named_as_such() -> None:
    allowed = ModelPath.of([str(ROOT)])
    for reference, says in [
        ("builtins:exec", "built into Python"),
        ("os:system", "standard library"),
        ("json.decoder:JSONDecoder", "standard library"),
        ("_frozen_importlib_external:spec_from_file_location", "frozen"),
        ("os:__builtins__", "dunder"),
    ]:
        with pytest.raises(Refused, match=says):
            allowed.locate(reference)


def test_site_packages_are_refused_before_importing_or_calling(
    lost_update: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    calls: Callable[[Any, str], list[object]],
) -> None:
    watched = [
        calls(Machine, "__init__"),
        calls(greenlet, "getcurrent"),
        calls(rich.console, "Console"),
    ]
    for setup in ("greenlet:getcurrent", "rich.console:Console", "six:print_", "toolz:identity"):
        top = setup.split(".")[0].split(":")[0]
        imported = top in sys.modules
        rc, err = refused(capsys, crafted(lost_update, tmp_path, setup), "--model-path", str(ROOT))
        assert rc == 3
        one_line_naming(err, setup)
        assert "is found under any --model-path directory" in err
        assert (top in sys.modules) == imported, setup  # six and toolz stay unimported
    assert watched == [[], [], []]


EVIL = """
from pathlib import Path
Path({sentinel!r}).write_text("imported")

def setup(machine):
    Path({sentinel!r}).write_text("called")

def task(state):
    Path({sentinel!r}).write_text("called")
"""


def test_a_module_outside_the_allowed_directories_is_never_imported(
    lost_update: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    forget_modules: None,
) -> None:
    outside, elsewhere = tmp_path / "outside", tmp_path / "elsewhere"
    outside.mkdir()
    elsewhere.mkdir()
    sentinel = tmp_path / "ran"
    (outside / "evil_model.py").write_text(EVIL.format(sentinel=str(sentinel)))
    trace = crafted(lost_update, tmp_path, "evil_model:setup", "evil_model:task")
    # Neither the current directory nor sys.path makes it allowed: only --model-path does.
    monkeypatch.chdir(outside)
    monkeypatch.syspath_prepend(str(outside))
    for options in [(), ("--model-path", str(elsewhere))]:
        rc, err = refused(capsys, trace, *options)
        assert rc == 3
        one_line_naming(err, "evil_model:setup")
        assert not sentinel.exists()
        assert "evil_model" not in sys.modules


def test_a_module_already_imported_from_elsewhere_is_refused(
    lost_update: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    forget_modules: None,
) -> None:
    # An allowed directory that holds a package named as one already imported:
    # loading it would swap the imported one, or quietly use it.
    allowed = tmp_path / "models"
    (allowed / "rich").mkdir(parents=True)
    sentinel = tmp_path / "ran"
    (allowed / "rich" / "__init__.py").write_text(EVIL.format(sentinel=str(sentinel)))
    (allowed / "rich" / "console.py").write_text(EVIL.format(sentinel=str(sentinel)))
    trace = crafted(lost_update, tmp_path, "rich.console:setup", "rich.console:task")
    rc, err = refused(capsys, trace, "--model-path", str(allowed))
    assert rc == 3
    one_line_naming(err, "rich.console:setup")
    assert "already imported from" in err
    assert not sentinel.exists()
    assert sys.modules["rich"].__file__ != str(allowed / "rich" / "__init__.py")


LABMODEL = """
import os
from labhelpers import load_then_store   # a sibling, found through --model-path

class Counter:
    def __init__(self, machine):
        self.word = machine.executor.atomic(0, "counter")

def bump(c):
    load_then_store(c.word)

def both_counted(c):
    return c.word.value == 2
"""
LABHELPERS = """
def load_then_store(word):
    v = word.load()
    word.store(v + 1)
"""


@pytest.fixture
def lab(tmp_path: Path, forget_modules: None) -> Path:
    """A user's models in a directory of their own: a package in a namespace
    package, and a sibling module."""
    models = tmp_path / "lab"
    (models / "labmodels" / "counting").mkdir(parents=True)
    (models / "labmodels" / "counting" / "__init__.py").write_text("")
    (models / "labmodels" / "counting" / "counter.py").write_text(LABMODEL)
    (models / "labhelpers.py").write_text(LABHELPERS)
    return models


def lab_trace(raw: dict[str, Any], where: Path) -> Path:
    mod = "labmodels.counting.counter"
    path = crafted(raw, where, f"{mod}:Counter", f"{mod}:bump", f"{mod}:bump")
    trace = json.loads(path.read_text())
    trace["model"]["check"] = f"{mod}:both_counted"
    path.write_text(json.dumps(trace))
    return path


def test_a_users_model_replays_from_its_model_path_and_only_from_there(
    lost_update: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], lab: Path
) -> None:
    trace = lab_trace(lost_update, tmp_path)
    rc, err = refused(capsys, trace)
    assert rc == 3
    one_line_naming(err, "labmodels.counting.counter:Counter")
    assert "no --model-path was given" in err
    assert "labmodels" not in sys.modules
    path_before = list(sys.path)
    rc = main(["replay", str(trace), "--model-path", str(lab)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "VIOLATION check: the check returned False" in out
    assert f"--model-path {lab}" in " ".join(out.split())  # its replay line works again
    loaded = sys.modules["labmodels.counting.counter"]
    assert loaded.__file__ == str(lab / "labmodels" / "counting" / "counter.py")
    assert sys.path == path_before  # the directory was on sys.path for the replay only


def test_a_model_whose_module_fails_to_import_is_one_line_and_exit_2(
    lost_update: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], lab: Path
) -> None:
    (lab / "labhelpers.py").write_text("raise RuntimeError('the lab is closed')\n")
    rc, err = refused(capsys, lab_trace(lost_update, tmp_path), "--model-path", str(lab))
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "importing labmodels.counting.counter" in err and "the lab is closed" in err
    assert "labmodels.counting.counter" not in sys.modules


def test_a_name_a_model_imports_is_not_reachable_through_it(
    lost_update: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    calls: Callable[[Any, str], list[object]],
    lab: Path,
) -> None:
    # counter.py does `import os`: its module is allowed, os.system is not its own.
    system = calls(os, "system")
    for setup, says in [
        ("labmodels.counting.counter:os.system", "not defined in labmodels.counting.counter"),
        ("labmodels.counting.counter:load_then_store", "not defined in"),
        ("labmodels.counting.counter:Counter.__init__", "dunder"),
        ("labmodels.counting.counter:nothing", "has no nothing"),
    ]:
        rc, err = refused(capsys, crafted(lost_update, tmp_path, setup), "--model-path", str(lab))
        assert rc == 3
        one_line_naming(err, setup)
        assert says in err
    assert system == []


def test_a_refusal_is_a_replay_document_with_json(
    lost_update: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["replay", str(crafted(lost_update, tmp_path, "os:system")), "--json"])
    out = capsys.readouterr()
    assert rc == 3 and len(out.err.strip().splitlines()) == 1
    doc = json.loads(out.out)
    validate(doc, "replay", "replay --json")
    assert (doc["verdict"], doc["exit_code"], doc["timeline"]) == ("refused", 3, None)
    assert "os:system" in doc["reason"]


def test_a_model_path_that_is_not_a_directory_is_bad_input(
    lost_update: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = crafted(lost_update, tmp_path, "os:system")
    assert main(["replay", str(trace), "--model-path", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--model-path" in err and "not a directory" in err and len(err.splitlines()) == 1


def test_the_printed_replay_command_works_from_the_project_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(CounterexampleFound) as info:
        explore(Counter, bump, bump, check=both_counted, trace_dir=tmp_path)
    (line,) = info.value.replay_lines
    (trace,) = tmp_path.glob("*.json")
    assert line == f"replay it: pagemap replay {trace} --model-path ."
    assert module_root(__name__) == ROOT
    command = shlex.split(line.removeprefix("replay it: "))
    assert command[:2] == ["pagemap", "replay"]
    assert main(command[1:]) == 1
    assert "VIOLATION check" in capsys.readouterr().out
