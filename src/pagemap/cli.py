"""The `pagemap` command: run | check | replay.

Each subcommand lives beside the code it drives (workload/command.py,
check/command.py) and registers itself here.  Every error becomes one line on
stderr and an exit code, never a traceback: 0 all well, 1 an oracle failed
(or a counterexample was found), 2 bad input, 130 Ctrl-C.  The host running out
of memory is one line too; so is a bug of pagemap's own, with the variable that
shows its traceback (PAGEMAP_TRACEBACK=1).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from pagemap import __version__
from pagemap.check import command as check_command
from pagemap.kernel.errors import KernelError
from pagemap.workload import command as run_command

Command = Callable[[argparse.Namespace], int]

REGISTRARS = [run_command.register, check_command.register]


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments get one clear line and exit 2, not a usage block."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="pagemap",
        description="The Akaros page cache, executable: run it on real threads over real "
        "files, or explore its interleavings and prove it race by race.",
    )
    parser.add_argument("--version", action="version", version=f"pagemap {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser
    )
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("pagemap: interrupted", file=sys.stderr)
        return 130
    except KernelError as exc:
        print(f"pagemap {args.command}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"pagemap {args.command}: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            f"pagemap {args.command}: the host ran out of memory (MemoryError); "
            "give the machine less memory or fewer, smaller files",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        if os.environ.get("PAGEMAP_TRACEBACK"):
            raise
        print(
            f"pagemap {args.command}: internal error, {type(exc).__name__}: {_one_line(exc)} "
            "(run again with PAGEMAP_TRACEBACK=1 to see where)",
            file=sys.stderr,
        )
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
