"""`pagemap run` on files of any size, judged by the oracle library.

- The memory-safety oracle learns each mapping as it is made: no false
  failure on files over 256 MiB (where the mappings' addresses, 0x10000000
  and up, fall inside the file's length), and a real stray store into another
  page's frame fails it on files under and over 256 MiB.
- Files that are not whole pages, down to one byte: the last partial page is
  mapped and used as Linux allows, and a kernel that breaks Linux's rules
  there (no SIGBUS past the last page, bytes past the end that do not read as
  zero, writeback past the end) is caught.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pagemap.cli import main
from pagemap.hw.memory import PGMASK, PGSIZE
from pagemap.kernel import hostfs
from pagemap.kernel.fault import FaultHandler
from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.vmr import VMR
from pagemap.workload.runner import Result, run_workload
from pagemap.workload.spec import PRIVATE_PAGES, Layout, Spec


@pytest.fixture
def in_memory_temp(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The run's temp files on tmpfs where there is one with room for them: a
    file of a gibibyte is then written and fsynced without a disk, and the
    tests take seconds (a container's small /dev/shm is left alone)."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize >= 3 << 30:  # two such tests at once, and slack
            monkeypatch.setattr(tempfile, "tempdir", shm)
    yield


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = main(["run", *argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, dict)
    return code, out


def failed(result: Result) -> dict[str, str]:
    return {v.name: v.detail for v in result.verdicts if not v.ok}


# -- no false memory-safety failures -------------------------------------------------


@pytest.mark.usefixtures("in_memory_temp")
@pytest.mark.parametrize("executor", ["threads", "sim"])
@pytest.mark.parametrize(
    "argv",
    [
        ("--file-size", "600MiB"),
        ("--memory", "1MiB", "--file-size", "1GiB"),
        ("--memory", "64MiB", "--file-size", "1GiB"),
    ],
    ids=["600MiB", "1GiB-in-1MiB", "1GiB-in-64MiB"],
)
def test_files_over_256_mib_hold_memory_safety(
    argv: tuple[str, ...], executor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_json(capsys, *argv, "--ops", "10", "--executor", executor)
    oracles = out["oracles"]
    assert code == 0 and out["ok"] is True, oracles


def stray_store_kernel(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A broken fault handler: the first store fault of a shared file mapping
    looks up the next page instead of its own and maps that page's frame,
    so the store lands in another page's frame.  The pages it did it for."""
    real = FaultHandler._fault_file
    planted: list[int] = []

    def fault_file(self: FaultHandler, vmr: VMR, va: int, write: bool) -> None:
        assert vmr.file is not None
        pm = vmr.mapping
        index = vmr.index_of(va)
        if (
            write
            and vmr.shared
            and pm is not None
            and not planted
            and index + 1 < (vmr.file.size + PGMASK) // PGSIZE
        ):
            own_lookup = pm.lookup

            def next_page(i: int) -> tuple[Page, bool]:
                planted.append(i)
                return own_lookup(i + 1)

            with monkeypatch.context() as m:
                m.setattr(pm, "lookup", next_page)
                real(self, vmr, va, write)
            return
        real(self, vmr, va, write)

    monkeypatch.setattr(FaultHandler, "_fault_file", fault_file)
    return planted


@pytest.mark.usefixtures("in_memory_temp")
@pytest.mark.parametrize("executor", ["sim", "threads"])
@pytest.mark.parametrize(("size", "ops"), [("2MiB", 200), ("300MiB", 40)])
def test_a_store_into_another_pages_frame_fails_memory_safety(
    size: str, ops: int, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = stray_store_kernel(monkeypatch)
    spec = Spec.build(executor=executor, memory="1MiB", file_size=size, ops=ops)
    problems = failed(run_workload(spec))
    assert planted, "the broken fault handler never ran"
    assert "memory_safety" in problems, problems
    said = problems["memory_safety"]
    # Under threads another worker's fault may run while the lookup is
    # patched, so more than one page can be planted, and a long message is
    # cut in the middle: any planted page named will do.
    assert "landed in frame" in said and any(
        f"which holds page {i + 1} of data.bin, not page {i} of data.bin" in said for i in planted
    ), (planted, said)


# -- any file size ----------------------------------------------------------------


ODD_SIZES = [1, 15, 4095, 4097, 3_000_000, 3_003_000]


@pytest.mark.parametrize("executor", ["sim", "threads"])
@pytest.mark.parametrize("size", ODD_SIZES)
def test_odd_file_sizes_hold_every_oracle(
    size: int, executor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_json(
        capsys, "--file-size", str(size), "--ops", "400", "--executor", executor, "--seed", "5"
    )
    assert code == 0 and out["ok"] is True, out["oracles"]
    spec = out["spec"]
    assert isinstance(spec, dict) and spec["file_size"] == size


@pytest.mark.parametrize("size", [3_000_000, 3_003_000])
def test_a_users_file_that_is_not_whole_pages(
    size: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine.bin"
    original = os.urandom(size)
    mine.write_bytes(original)
    code, out = run_json(
        capsys, "--file", str(mine), "--ops", "2000", "--memory", "1MiB", "--executor", "sim"
    )
    assert code == 0 and out["ok"] is True, out["oracles"]
    assert mine.read_bytes() == original


def test_the_job_goes_past_the_end() -> None:
    """The last worker stores and loads past the end in the last page, and
    every worker tries the page past the last one."""
    from pagemap.workload import worker as worker_module

    seen: dict[str, int] = {}
    real = worker_module.Worker.run

    def run(self: worker_module.Worker) -> None:
        real(self)
        for name, n in self.counts.items():
            seen[name] = seen.get(name, 0) + n
        if self.owns_tail:
            seen["tail_stores"] = len(self.tail_stores)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(worker_module.Worker, "run", run)
        result = run_workload(Spec.build(executor="sim", file_size=3_003_000, ops=2000))
    assert result.ok, failed(result)
    assert seen["past_the_end"] > 10 and seen["tail_stores"] > 0


def broken_at_the_end(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "no SIGBUS":
        monkeypatch.setattr(FaultHandler, "_check_eof", lambda self, vmr, va, write: None)
        # and the check made again as the PTE goes in
        monkeypatch.setattr(FaultHandler, "_past_eof", staticmethod(lambda vmr, va: False))
    elif how == "garbage past the end":
        real: Callable[[hostfs.HostInode, PageMap, Page], None] = hostfs.HostInode.readpage

        def readpage(self: hostfs.HostInode, pm: PageMap, page: Page) -> None:
            real(self, pm, page)
            end = self.size_word.load() - page.index * PGSIZE
            if 0 < end < PGSIZE:
                page.data[end:] = b"\xa5" * (PGSIZE - end)

        monkeypatch.setattr(hostfs.HostInode, "readpage", readpage)
    else:  # writeback of the whole last page
        monkeypatch.setattr(hostfs.HostInode, "_bytes_in_page", lambda self, page: PGSIZE)


@pytest.mark.parametrize(
    ("how", "oracle", "words"),
    [
        ("no SIGBUS", "coherence", "got no SIGBUS"),
        ("garbage past the end", "coherence", "where only zeros or its own stores may be"),
        ("writeback past the end", "durability", "bytes in its backing store, but 3003000"),
    ],
)
def test_a_kernel_that_breaks_linuxs_rules_at_the_end_is_caught(
    how: str, oracle: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken_at_the_end(monkeypatch, how)
    problems = failed(run_workload(Spec.build(executor="sim", file_size=3_003_000, ops=2000)))
    assert oracle in problems and words in problems[oracle], problems


@pytest.mark.parametrize("procs", [1, 3, 4])
@pytest.mark.parametrize("size", [*ODD_SIZES, 2 << 20, 96 << 20, (1 << 30) + 1])
def test_the_layout_gives_every_byte_one_writer(size: int, procs: int) -> None:
    layout = Layout.of(size, procs)
    assert layout.bounds[0] == layout.ro_end and layout.bounds[-1] == size
    assert list(layout.bounds) == sorted(layout.bounds)
    assert all(b % 16 == 0 for b in layout.bounds[:-1])
    for w in range(procs):
        off = layout.private_window(w)
        assert off % PGSIZE == 0
        assert off == 0 or off + PRIVATE_PAGES * PGSIZE <= layout.ro_end


def test_an_empty_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert main(["run", "--file", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0 bytes has nothing to map" in err
