"""python -m bench [NAME...]: run the benchmarks, print a table, write results.json."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.harness import Report

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--out", default=str(HERE / "results.json"), help="where to write JSON")
    args = parser.parse_args(argv)
    modules = sorted(
        m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_")
    )
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in args.names] or modules
    unknown = [n for n in wanted if n not in modules]
    if unknown:
        print(f"bench: no such benchmark: {', '.join(unknown)} (have {', '.join(modules)})")
        return 2
    console = Console()
    report = Report()
    start = time.perf_counter()
    for i, name in enumerate(wanted, 1):
        console.print(f"[bold]{name}[/bold] ({i}/{len(wanted)}) ...")
        t0 = time.perf_counter()
        importlib.import_module(f"bench.{name}").run(report)
        console.print(f"  done in {time.perf_counter() - t0:.1f}s")
    console.print(f"all done in {time.perf_counter() - start:.1f}s")
    table = Table(title=f"pagemap benchmarks ({platform.machine()}, {platform.python_version()})")
    for col in ("figure", "value", "unit", "baseline", "ratio"):
        table.add_column(col, justify="left" if col in ("figure", "unit") else "right")
    for f in report.figures:
        table.add_row(
            f.name,
            f"{f.value:.4g}",
            f.unit,
            "" if f.baseline is None else f"{f.baseline:.4g}",
            "" if f.ratio is None else f"{f.ratio:.2f}x",
        )
    console.print(table)
    out = Path(args.out)
    rows = report.as_json()
    if args.names and out.exists():
        # A partial run refreshes its own figures and keeps the others.
        mine = {r["name"] for r in rows}
        rows = [r for r in json.loads(out.read_text()) if r["name"] not in mine] + rows
    out.write_text(json.dumps(rows, indent=2) + "\n")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
