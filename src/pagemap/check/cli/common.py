"""What every part of `pagemap check` and `pagemap replay` shares: their
defaults, exit codes and schema versions, and how they speak (plural, the
console, one plain line, a long run's progress).

Rules: with --json, stdout carries the document alone, so people's output
goes to stderr (`_console`); a line that may hold a path is said with `_say`
(no markup, no highlighting).  The exit codes are the commands': 0 every
oracle holds, 1 a violation, 2 bad input, 3 a trace that no longer fits.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.text import Text

from pagemap.check.fanout import Stop

DEFAULT_BUDGET = 1000  # schedules per scenario for random and PCT
PORTFOLIO_PCT = 100  # schedules per scenario in the portfolio's PCT pass
PCT_CHUNK = 20  # PCT schedules per unit: small, so every scenario is looked at early
CHUNK = 100  # random and PCT schedules per unit outside the portfolio
DEFAULT_MUTANT_TIME = (
    60.0  # seconds per lock mutant (--mutants --auto): survivors cost bounded time
)
UNIT_TIMEOUT = 600.0  # seconds a unit may run before it is given up as timed out

OK, VIOLATION, BAD_INPUT, NO_LONGER_FITS = 0, 1, 2, 3
CHECK_SCHEMA = 1  # the version of check.schema.json that `check --json` follows
REPLAY_SCHEMA = 1  # the version of replay.schema.json that `replay --json` follows

Command = Callable[[argparse.Namespace], int]  # what runs a subcommand: its exit code


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` and its noun, plural unless `n` is 1 ("1 scenario", "2 scenarios");
    `nouns` where an s will not do."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def _console(args: argparse.Namespace | None = None) -> Console:
    # With --json, stdout carries the document alone: people's output goes to stderr.
    # Piped into a file or a pager, the tables keep every column whole.
    if args is not None and getattr(args, "json", False):
        return Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    return Console(width=None if sys.stdout.isatty() else 160)


def _say(console: Console, line: str) -> None:
    """One line as it is: no markup (a path may hold brackets), no highlighting."""
    console.print(line, soft_wrap=True, highlight=False, markup=False)


@contextlib.contextmanager
def _progress(console: Console, command: str, first: str) -> Iterator[Callable[[str], None]]:
    """Where a long run says how far it is: on a terminal, a spinner's text; off
    one (CI, a pipe), one plain line each on stderr, as a spinner shows nothing there."""
    if console.is_terminal:
        with console.status(first) as status:
            yield lambda text: status.update(Text(text))
    else:
        yield lambda text: print(f"{command}: {text}", file=sys.stderr)


def _why(stop: Stop) -> str:
    return "Ctrl-C" if stop.exit_code == 130 else "SIGTERM"
