"""KernelError is built as an OSError is, (errno, message), or from its
sentence alone; anything else is refused rather than carried silently, and
an errno that is not an int never reaches a caller."""

from __future__ import annotations

import errno
import pickle

import pytest

from pagemap import (
    IOFailure,
    KernelError,
    Machine,
    Page,
    PageMap,
    SegmentationFault,
    WrongMachine,
)
from tests.conftest import sim


def test_oserror_order_and_the_sentence_alone() -> None:
    e = KernelError(errno.EIO, "disk gone")
    assert isinstance(e, OSError)
    assert (e.errno, e.strerror, str(e)) == (errno.EIO, "disk gone", "EIO: disk gone")
    assert IOFailure("x").errno == errno.EIO
    assert IOFailure(errno.ENOSPC, "full").errno == errno.ENOSPC
    assert SegmentationFault("y", errno=errno.EPERM).errno == errno.EPERM
    assert WrongMachine("z").errno == errno.EINVAL


@pytest.mark.parametrize(
    "args, kw",
    [
        (("disk gone", errno.EIO), {}),  # the old order: the errno would be the sentence
        ((errno.EIO, errno.EIO), {}),
        ((errno.EIO,), {}),
        (("x",), {"errno": "5"}),
        (("x",), {"errno": 0}),
        (("x",), {"errno": True}),
        ((errno.EIO, "x"), {"errno": errno.EIO}),
        ((), {}),
        ((1, "a", "b"), {}),
    ],
)
def test_anything_else_is_refused(args: tuple[object, ...], kw: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="KernelError"):
        KernelError(*args, **kw)  # type: ignore[call-overload]


@pytest.mark.parametrize("cls", [KernelError, IOFailure, SegmentationFault, WrongMachine])
def test_pickled_errors_keep_type_errno_and_sentence(cls: type[KernelError]) -> None:
    e = cls(errno.ENOSPC, "no room")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls and (back.errno, back.strerror) == (errno.ENOSPC, "no room")


class FailingOps:
    """A readpage that fails as a user may write it, after a scheduling point
    (so that other loaders can come to wait on the page lock)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def readpage(self, pm: PageMap, page: Page) -> None:
        page.flags.load()
        raise self.exc

    def writepage(self, pm: PageMap, page: Page) -> None:
        raise AssertionError("nothing is dirty")


def load_in_two_tasks(m: Machine, pm: PageMap) -> list[OSError]:
    errors: list[OSError] = []

    def loader() -> None:
        try:
            pm.put_page(pm.load_page(0))
        except OSError as exc:
            errors.append(exc)

    m.spawn(loader)
    m.spawn(loader)
    m.run()
    return errors


def test_a_users_kernel_error_reaches_every_loader_as_written() -> None:
    waited = 0
    for seed in range(40):
        m = sim(seed, frames=4)
        pm = m.page_map(FailingOps(KernelError(errno.EIO, "disk gone")))
        errors = load_in_two_tasks(m, pm)
        assert [e.errno for e in errors] == [errno.EIO, errno.EIO]
        assert all("disk gone" in str(e) for e in errors)
        waited += any("another loader" in str(e) for e in errors)
        assert m.check_quiescent() == [] and m.allocator.nr_used == 0
    assert waited  # some schedules had the second loader sleep on the first's read


def test_an_oserror_with_a_string_errno_becomes_eio() -> None:
    waited = 0
    for seed in range(40):
        m = sim(seed, frames=4)
        pm = m.page_map(FailingOps(OSError("disk gone", "not a number")))
        errors = load_in_two_tasks(m, pm)
        assert [e.errno for e in errors] == [errno.EIO, errno.EIO]
        waited += any("another loader" in str(e) for e in errors)
        assert m.check_quiescent() == [] and m.allocator.nr_used == 0
    assert waited
