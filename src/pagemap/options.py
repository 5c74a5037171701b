"""The numbers a command line takes: whole numbers, sizes and seconds, one wording.

Rules: every numeric option of every command parses through one of the three
makers below, so a value out of range always reads the same way, whatever the
option: "expected a whole number from 1 to 1024, not 0", "expected a size such
as 64MiB, from 256 KiB to 7.6 GiB (this machine's memory), not 64GiB", "expected
seconds from 0.001 to 3600, not -1".  argparse puts "argument --NAME: " in front.
Each maker returns a function argparse calls with the text; it raises
argparse.ArgumentTypeError, which the parser turns into one line and exit 2.
Output paths are checked here too, before any work starts.  Nothing here imports
the rest of pagemap but hw/memory.py's size reader, so any command may use it.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

from pagemap.hw.memory import parse_size

_KIB = 1 << 10
_UNIT_NAMES = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))


def format_size(nbytes: int) -> str:
    """ "512 KiB", "4 MiB", "1.5 GiB", "100 bytes": the largest unit that gives at
    least 1, with one decimal when the size is not a whole number of it."""
    for unit, name in _UNIT_NAMES:
        if nbytes >= unit:
            value = nbytes / unit
            text = f"{value:.0f}" if nbytes % unit == 0 else f"{value:.1f}"
            return f"{text} {name}"
    return f"{nbytes} byte{'' if nbytes == 1 else 's'}"


def host_memory() -> int:
    """Bytes of physical memory on this host (0 if the host will not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


def _range_words(low: str, high: str | None) -> str:
    return f"from {low} to {high}" if high is not None else f"of at least {low}"


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high] (no upper bound when high is None)."""
    words = f"a whole number {_range_words(str(low), None if high is None else str(high))}"

    def parse(text: str) -> int:
        try:
            n = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, not {text!r}") from None
        if n < low or (high is not None and n > high):
            raise argparse.ArgumentTypeError(f"expected {words}, not {n}")
        return n

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    """A number of seconds in [low, high]."""
    words = f"seconds {_range_words(f'{low:g}', f'{high:g}')}"

    def parse(text: str) -> float:
        try:
            t = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, not {text!r}") from None
        if math.isnan(t) or not low <= t <= high:
            raise argparse.ArgumentTypeError(f"expected {words}, not {text}")
        return t

    parse.__name__ = "seconds"
    return parse


def size(low: int, high: int | None = None, why: str = "") -> Callable[[str], int]:
    """A size in bytes in [low, high], written as 4096, 64KiB, 64MiB or 1GiB; `why`
    says where the upper bound comes from ("this machine's memory")."""
    top = None if high is None else format_size(high) + (f" ({why})" if why else "")
    words = f"a size such as 64MiB, {_range_words(format_size(low), top)}"

    def parse(text: str) -> int:
        try:
            n = parse_size(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {words}, not {text!r}") from None
        if n < low or (high is not None and n > high):
            raise argparse.ArgumentTypeError(f"expected {words}, not {text}")
        return n

    parse.__name__ = "size"
    return parse


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_output_dir(option: str, path: str) -> None:
    """ValueError, before any work, if directory `path` cannot be made or written."""
    target = Path(path)
    probe = _nearest_existing(target)
    if not probe.is_dir():
        raise ValueError(f"{option} {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: {probe} is not writable")


def check_output_file(option: str, path: str) -> None:
    """ValueError, before any work, if file `path` cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{option} {path} is a directory; give a file name")
    if target.exists():
        if not os.access(target, os.W_OK):
            raise ValueError(f"{option} {path} is not writable")
        return
    parent = target.parent
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the directory {parent} is not writable")


__all__ = [
    "check_output_dir",
    "check_output_file",
    "format_size",
    "host_memory",
    "seconds",
    "size",
    "whole",
]
