"""`pagemap run`: the main job, its oracles, and its command line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pagemap.check.schema import SchemaError, validate
from pagemap.cli import main
from pagemap.workload.runner import run_workload
from pagemap.workload.spec import Spec


def small(executor: str = "sim", seed: int = 1) -> Spec:
    """A run small enough for the test suite that still evicts."""
    return Spec.build(
        executor=executor, seed=seed, memory="1MiB", file_size="2MiB", ops=600, procs=3
    )


@pytest.mark.parametrize("seed", range(8))
def test_small_runs_hold_every_oracle_under_the_sim(seed: int) -> None:
    result = run_workload(small("sim", seed))
    assert [v.name for v in result.verdicts if not v.ok] == [], result.verdicts
    assert result.ops_done == 600
    assert result.counters["pages_removed"] > 0  # memory pressure made the flusher evict


def test_a_run_under_threads_holds_every_oracle() -> None:
    result = run_workload(small("threads", 3))
    assert result.ok, result.verdicts
    assert result.counters["writebacks"] > 0


def test_same_seed_same_run_under_the_sim() -> None:
    spec = small("sim", 11)
    a, b = run_workload(spec), run_workload(spec)
    strip = {"ops_per_second", "peak_resident_bytes"}  # wall clock, and the host's memory
    assert {k: v for k, v in a.counters.items() if k not in strip} == {
        k: v for k, v in b.counters.items() if k not in strip
    }


def test_the_oracles_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    # A writepage that silently drops its data must be caught by durability.
    from pagemap.kernel import hostfs

    def lossy_writepage(self: hostfs.HostInode, pm: object, page: object) -> None:
        return None

    monkeypatch.setattr(hostfs.HostInode, "writepage", lossy_writepage)
    result = run_workload(small("sim", 1))
    failed = {v.name: v.detail for v in result.verdicts if not v.ok}
    assert "durability" in failed
    assert "coherence" in failed  # evicted pages came back without their writes


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "run",
            "--executor",
            "sim",
            "--memory",
            "1MiB",
            "--file-size",
            "2MiB",
            "--ops",
            "200",
            "--procs",
            "2",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] is True
    assert set(out["oracles"]) == {
        "coherence",
        "memory_safety",
        "durability",
        "accounting",
        "liveness",
        "locked_pages",
    }
    assert out["counters"]["operations"] == 200
    validate(out, "run", "run --json")
    assert out["schema"] == 1 and out["verdict"] == "holds"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in (*out, *out["counters"]))
    # The schema refuses a display label as a key.
    counters = {**out["counters"], "page faults, minor": 1}
    with pytest.raises(SchemaError, match="counters"):
        validate({**out, "counters": counters}, "run", "run --json")


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--memory", "1MiB", "--file-size", "2MiB", "--ops", "200"])
    out = capsys.readouterr().out
    assert code == 0
    assert "every oracle holds" in out and "cache hits" in out and "durability" in out


def test_a_users_file_is_copied_never_modified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "mine.bin"
    original = os.urandom(1 << 20)
    src.write_bytes(original)
    code = main(
        [
            "run",
            "--executor",
            "sim",
            "--memory",
            "512KiB",
            "--ops",
            "300",
            "--procs",
            "2",
            "--file",
            str(src),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"], out["oracles"]
    assert out["spec"]["file_size"] == 1 << 20
    assert src.read_bytes() == original


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--cores", "0"], "--cores"),
        (["--procs", "0"], "--procs"),
        (["--ops", "-5"], "--ops"),
        (["--memory", "lots"], "size"),
        (["--memory", "4KiB"], "from 256 KiB"),
        (["--memory", "256KiB"], "pin 32 pages (MAP_LOCKED), may keep 64 private copies"),
        (["--file-size", "0"], "from 1 byte"),
        (["--file", "/nonexistent/file.bin"], "No such file"),
        (["--file", "/dev/zero"], "not a regular file"),
        # Copied without end, or blocking the copy for ever, once.
        (["--image", "/dev/zero"], "--image /dev/zero is not a regular file"),
        (["--image", "/nonexistent/fs.img"], "No such file"),
        (["--flusher-period", "0"], "--flusher-period"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code: object
    try:
        code = main(["run", *argv])
    except SystemExit as exc:  # the parser's own checks
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err
    assert err.startswith("pagemap run: ")


@pytest.mark.parametrize(
    "error",
    [
        "SegmentationFault",
        "BusError",
        "AccessDenied",
        "OutOfMemory",
    ],
)
def test_a_kernel_error_is_one_line_never_a_traceback(
    error: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pagemap
    from pagemap.workload import command

    exc_type = getattr(pagemap, error)

    def failing(spec: Spec, progress: object = None) -> None:
        raise exc_type("p1: store at 0x10000: what went wrong, in a sentence")

    monkeypatch.setattr(command, "run_workload", failing)
    code = main(["run", "--ops", "10"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("pagemap run: E") and "in a sentence" in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["run", "--cores", "x"], "expected a whole number from 1 to 256, not 'x'"),
        (["run", "--executor", "fibers"], "invalid choice"),
        ([], "required: COMMAND"),
        (["frob"], "invalid choice: 'frob'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and words in err and "--help" in err


def test_the_banner_tells_the_truth_about_sizes(tmp_path: Path) -> None:
    from pagemap.workload.command import banner

    spec = Spec.build(memory="512KiB", file_size="2MiB", procs=2)
    assert "512 KiB of frames, a generated file of 2 MiB" in banner(spec)
    mine = tmp_path / "mine.bin"
    mine.write_bytes(bytes(4 << 20))
    spec = Spec.build(memory="1536KiB", file=str(mine), procs=2)  # --file-size is left at 96MiB
    said = banner(spec)
    assert f"1.5 MiB of frames, a copy of {mine} of 4 MiB" in said
    assert "96" not in said


def test_a_fifo_is_refused_before_anything_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it to copy would block until a writer came
    assert main(["run", "--file", str(fifo)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a regular file" in err


def test_an_image_that_is_a_fifo_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "fs.img"
    os.mkfifo(fifo)
    assert main(["run", "--image", str(fifo)]) == 2  # no reader: opening it would block
    err = capsys.readouterr().err
    assert f"--image {fifo} is not a regular file" in err
