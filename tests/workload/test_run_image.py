"""`pagemap run --image` before the run: a banner that names the file in the
image at its own size, and a temp filesystem too full for the copy refused at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pagemap import e2fsprogs
from pagemap.cli import main
from pagemap.workload.target import IMAGE_FILE


def first_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["run", "--memory", "512KiB", "--procs", "2", "--ops", "200", *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    return out.splitlines()[0]


def test_the_banner_names_the_file_in_the_image_at_its_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / IMAGE_FILE.lstrip("/")).write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    image = tmp_path / "fs.img"
    e2fsprogs.mkfs(image, 4 << 20, 4096, source=src)
    said = first_line(capsys, "--image", str(image))
    assert f"{IMAGE_FILE} of 1 MiB in a copy of {image}," in said
    assert "generated" not in said and "96" not in said


def test_the_banner_says_the_file_is_made_in_an_image_without_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "fs.img"
    e2fsprogs.mkfs(image, 6 << 20, 1024)
    said = first_line(capsys, "--image", str(image), "--file-size", "2MiB")
    assert f"a generated file of 2 MiB, made as {IMAGE_FILE} in a copy of {image}," in said


def test_a_temp_filesystem_too_full_for_the_copy_is_refused_before_it_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import tempfile

    from pagemap.workload import runner

    image = tmp_path / "fs.img"
    e2fsprogs.mkfs(image, 6 << 20, 1024)  # sparse: its copy takes far less than 6 MiB
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    free = [1 << 20]
    asked: list[str] = []

    class Statvfs:
        f_frsize = 4096

        def __init__(self, path: str) -> None:
            asked.append(str(path))
            self.f_bavail = free[0] // self.f_frsize

    def copied(*args: object) -> None:
        raise RuntimeError("the image was copied")

    monkeypatch.setattr(os, "statvfs", Statvfs)
    monkeypatch.setattr(runner, "copy_image", copied)
    argv = ["run", "--image", str(image), "--file-size", "2MiB", "--memory", "1MiB", "--json"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"--image {image}" in err and f"in {temp}, which has 1 MiB free" in err
    assert asked == [str(temp)]
    # With room for the copy and the 2 MiB file made in it, the run goes on to the copy.
    free[0] = 4 << 20
    assert main(argv) == 1
    assert "the image was copied" in capsys.readouterr().err
