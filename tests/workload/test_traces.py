"""Synthetic access traces: seeded, the shape their names promise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from pagemap.workload.traces import scan_loop, zipf


def test_zipf_is_seeded_and_skewed() -> None:
    trace = zipf(20_000, 1_000, 1.0, seed=4)
    assert trace == zipf(20_000, 1_000, 1.0, seed=4) != zipf(20_000, 1_000, 1.0, seed=5)
    assert len(trace) == 20_000 and set(trace) <= set(range(1_000))
    counts = [n for _, n in Counter(trace).most_common()]
    # With alpha 1 the top page is drawn about 1/H(1000) ~ 13% of the time,
    # the tenth about a tenth as often.
    assert 0.11 < counts[0] / len(trace) < 0.16
    assert 6 < counts[0] / counts[9] < 15


def test_zipf_with_alpha_zero_is_uniform() -> None:
    counts = Counter(zipf(50_000, 10, 0.0, seed=1))
    assert len(counts) == 10 and max(counts.values()) < 1.1 * min(counts.values())


def test_scan_loop_reads_the_loop_then_scans_on() -> None:
    trace = scan_loop(3, hot=3, loops=2, scan=4, region=5)
    assert trace == [
        *[0, 1, 2] * 2,
        3, 4, 5, 6,
        *[0, 1, 2] * 2,
        7, 3, 4, 5,
        *[0, 1, 2] * 2,
        6, 7, 3, 4,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "make",
    [
        lambda: zipf(10, 0, 1.0),
        lambda: zipf(-1, 10, 1.0),
        lambda: zipf(10, 10, -0.5),
        lambda: scan_loop(1, region=0),
        lambda: scan_loop(-1),
    ],
)
def test_bad_shapes_say_what_is_wrong(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="needs"):
        make()
