"""`pagemap run --image`: the main job on a file inside a copy of an ext2
image, every oracle holding, e2fsck clean on the copy, the image untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagemap import e2fsprogs
from pagemap.cli import main
from pagemap.workload.target import IMAGE_FILE


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["run", "--memory", "1MiB", "--procs", "2", "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("executor", ["threads", "sim"])
def test_run_on_an_image_creates_its_file_and_every_oracle_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], executor: str
) -> None:
    image = tmp_path / "fs.img"
    e2fsprogs.mkfs(image, 6 << 20, 1024)
    before = image.read_bytes()
    code, out = run(
        capsys, "--image", str(image), "--file-size", "2MiB", "--ops", "400", "--executor", executor
    )
    oracles = out["oracles"]
    assert isinstance(oracles, dict)
    assert code == 0 and out["ok"], oracles
    assert set(oracles) >= {"durability", "coherence", "filesystem"}
    assert image.read_bytes() == before  # only the copy was used


def test_run_on_an_image_uses_the_file_already_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / IMAGE_FILE.lstrip("/")).write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    image = tmp_path / "fs.img"
    e2fsprogs.mkfs(image, 4 << 20, 4096, source=src)
    code, out = run(capsys, "--image", str(image), "--ops", "300", "--memory", "512KiB")
    assert code == 0 and out["ok"], out["oracles"]
    spec = out["spec"]
    assert isinstance(spec, dict) and spec["file_size"] == 1 << 20


def test_a_full_image_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "fs.img"
    e2fsprogs.mkfs(image, 1 << 20, 1024)
    code = main(["run", "--image", str(image), "--file-size", "4MiB", "--memory", "1MiB"])
    err = capsys.readouterr().err
    assert code == 1 and "ENOSPC" in err and err.count("\n") == 1


def test_image_and_file_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--image", "x.img", "--file", "y.bin"]) == 2
    assert "cannot both be given" in capsys.readouterr().err
