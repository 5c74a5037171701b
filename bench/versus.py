"""The default `pagemap check`, scenario by scenario, on two source trees.

    git worktree add --detach /tmp/old 7fe8ba6
    python -m bench.versus /tmp/old/src src out.json

Each scenario the two trees share runs once on each, in fresh processes of
this interpreter with PYTHONPATH pointing at the tree, the two alternating
(which goes first alternates by scenario) so both see the same machine.
Prints a line a scenario: schedules, seconds of exploration (the CLI's own
figure, without the interpreter's start), the verdict, the ratio of the
seconds and of the seconds per step, old over new.  Not part of `python -m
bench`: it needs a second tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def scenarios(src: str) -> list[str]:
    code = "from pagemap.check.scenarios import registry; print(' '.join(registry()))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def check(src: str, scenario: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "pagemap", "check", scenario, "--json"],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
    )
    doc = json.loads(out.stdout)
    rows = doc["scenarios"]
    return {
        "verdict": doc["verdict"],
        "seconds": doc["seconds"],
        "schedules": sum(r["schedules"] for r in rows),
        "steps": sum(r["steps"] for r in rows),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__)
        return 2
    old, new, out = argv
    shared = [s for s in scenarios(new) if s in set(scenarios(old))]
    got: dict[str, dict[str, dict[str, Any]]] = {}
    for i, name in enumerate(shared):
        sides = [("old", old), ("new", new)]
        got[name] = {side: check(src, name) for side, src in sides[:: 1 if i % 2 == 0 else -1]}
        o, n = got[name]["old"], got[name]["new"]
        per_step = (o["seconds"] / o["steps"]) / (n["seconds"] / n["steps"])
        print(
            f"{name:24} old {o['schedules']:>6} {o['seconds']:6.2f} s {o['verdict']:6} | "
            f"new {n['schedules']:>6} {n['seconds']:6.2f} s {n['verdict']:6} | "
            f"{o['seconds'] / n['seconds']:4.2f}x, a step {per_step:4.2f}x",
            flush=True,
        )
        with open(out, "w") as f:
            json.dump(got, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
