"""`python -m pagemap.check.report`: text, the page, and one line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagemap.check.report import sample_timeline
from pagemap.check.report.__main__ import main


def test_a_timeline_file_renders_as_text_at_the_width_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    path.write_text(sample_timeline().to_json())
    assert main([str(path), "--width", "80"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == sample_timeline().title
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "VIOLATION coherence" in out


def test_the_sample_is_written_as_a_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.html"
    assert main(["--sample", "--html", str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    assert out.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["/no/such/timeline.json"], "ENOENT: cannot read /no/such/timeline.json"),
        ([], "one of the arguments TIMELINE.json --sample is required"),
        (["--sample", "--width", "10"], "EINVAL: a timeline needs at least 40 columns"),
        (["--sample", "--width", "ten"], "invalid int value: 'ten'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err
    assert err.count("\n") == 1


def test_a_broken_file_writes_no_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = json.loads(sample_timeline().to_json())
    raw["rows"][0]["core"] = 9
    broken = tmp_path / "t.json"
    broken.write_text(json.dumps(raw))
    page = tmp_path / "t.html"
    assert main([str(broken), "--html", str(page)]) == 2
    assert "rows[0] (step 1): core 9 is outside 0..2" in capsys.readouterr().err
    assert not page.exists()
