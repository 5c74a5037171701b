"""Replacement policies: miss ratios beside libCacheSim's and Belady's OPT,
and what the hit and miss paths cost.

Traces (page numbers; sizes are 1, 5, 10 and 25% of the pages each touches):

- zipf-0.8 and zipf-1.0: 100,000 accesses to 10,000 pages;
- scan-loop: a hot loop of 1,000 pages read 5 times, then a scan of 3,000
  cold pages, twelve times over (pagemap.workload.traces.scan_loop);
- pagemap-run: the page-cache lookups of the main job (`pagemap run`, 20,000
  operations under the deterministic executor, seed 1), recorded at the
  page map's doors for the run, with no change to the kernel (record_run
  says which).  Loads and stores that hit a TLB or a present PTE never
  reach the page map and are not in the trace: that is what the kernel's
  accessed-bit harvest will report instead.

Each figure is our miss ratio with libCacheSim's for the same policy as its
baseline (bench/reference.py says how each is configured to match); the run
fails if fifo, lru, clock or s3fifo is more than 0.01 from its twin.  lru2q's
baseline is libCacheSim's two-segment SLRU, the nearest it has, which fills
differently (see tests/kernel/policy/test_policy_reference.py), so it is shown, not held
to 0.01.  The default policies' miss ratios are also given against OPT's:
make_policy()'s (s3fifo) and the kernel's (Machine(reclaim=...): lru2q).

Speed: the cost of `referenced` (the hit path) against OrderedDict.move_to_end
on the same keys (an OrderedDict LRU's hit), and of one page's replacement
(`victims(1)`, `removed`, `insert`) against an OrderedDict LRU's
(popitem + set), every policy and the baseline in the same rounds, the order
alternating; each figure is the median of its rounds, each ratio the median
of the per-round ratios (the harness's rule).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from unittest import mock

from rich.console import Console
from rich.table import Table

from bench import reference
from bench.harness import Report, interleave
from pagemap.kernel.page import Page
from pagemap.kernel.pagemap import PageMap
from pagemap.kernel.policy import DEFAULT, KERNEL_DEFAULT, POLICIES, make_policy, misses, opt
from pagemap.kernel.vfs import Inode
from pagemap.workload.runner import run_workload
from pagemap.workload.spec import Spec
from pagemap.workload.traces import scan_loop, zipf

FRACTIONS = (0.01, 0.05, 0.10, 0.25)
TOLERANCE = 0.01
ORDER = ("fifo", "lru", "clock", "lru2q", "s3fifo")
HELD = ("fifo", "lru", "clock", "s3fifo")  # held to TOLERANCE
ROUNDS = 15


def record_run(ops: int = 20_000, seed: int = 1) -> list[int]:
    """The page-cache lookups of `pagemap run`, each page numbered as first seen.

    Recorded at the page map's doors, for the run only, with no change to the
    kernel: every lookup that hands out a page (PageMap.lookup: faults, the
    VFS's writes and misses; load_page), every page of a sequential read's
    run (find_run), and the VFS's one-page read, whose hit path finds the
    page itself (Inode._read_in_page)."""
    seen: list[tuple[str, int]] = []
    lookup, load_page, find_run = PageMap.lookup, PageMap.load_page, PageMap.find_run
    read_in_page = Inode._read_in_page

    def looking(self: PageMap, index: int, load: bool = True) -> tuple[Page, bool] | None:
        found = lookup(self, index, load)
        if found is not None:
            seen.append((self.name, index))
        return found

    def loading(self: PageMap, index: int) -> Page:
        seen.append((self.name, index))
        return load_page(self, index)

    def running(self: PageMap, index: int, n: int) -> list[Page]:
        run = find_run(self, index, n)
        seen.extend((self.name, index + i) for i in range(len(run)))
        return run

    def reading(self: Inode, index: int, off: int, n: int) -> bytes:
        seen.append((self.mapping.name, index))
        return read_in_page(self, index, off, n)

    patches = (
        mock.patch.object(PageMap, "lookup", looking),
        mock.patch.object(PageMap, "load_page", loading),
        mock.patch.object(PageMap, "find_run", running),
        mock.patch.object(Inode, "_read_in_page", reading),
    )
    with patches[0], patches[1], patches[2], patches[3]:
        result = run_workload(Spec.build(executor="sim", ops=ops, seed=seed))
    assert result.ok, [v for v in result.verdicts if not v.ok]
    ids: dict[tuple[str, int], int] = {}
    return [ids.setdefault(key, len(ids)) for key in seen]


def traces() -> dict[str, list[int]]:
    return {
        "zipf-0.8": zipf(100_000, 10_000, 0.8, seed=1),
        "zipf-1.0": zipf(100_000, 10_000, 1.0, seed=2),
        "scan-loop": scan_loop(12),
        "pagemap-run": record_run(),
    }


def miss_ratios(report: Report, console: Console) -> None:
    table = Table(title="miss ratio: ours / libCacheSim's (OPT alone)")
    defaults = (DEFAULT, KERNEL_DEFAULT)  # make_policy's, and the kernel's (Machine's)
    for col in ("trace", "size", *ORDER, "ARC", "TwoQ", "OPT", *(f"{d}/OPT" for d in defaults)):
        table.add_column(col, justify="left" if col == "trace" else "right")
    off: list[str] = []
    for tname, trace in traces().items():
        n = len(trace)
        distinct = len(set(trace))
        for frac in FRACTIONS:
            cap = max(reference.SMALLEST, int(distinct * frac))
            where = f"{tname}, {frac:.0%} ({cap} pages)"
            cells = []
            ours_by: dict[str, float] = {}
            for name in ORDER:
                lcs_name, make = reference.SAME[name]
                ours = misses(make_policy(name), trace, cap) / n
                theirs = reference.misses(make, trace, cap) / n
                ours_by[name] = ours
                report.add(f"miss ratio {where}: {name} vs {lcs_name}", ours, "", theirs)
                cells.append(f"{ours:.3f} / {theirs:.3f}")
                if name in HELD and abs(ours - theirs) > TOLERANCE:
                    off.append(f"{name} on {where}: {ours:.4f} against {theirs:.4f}")
            extra = []
            for other in ("ARC", "TwoQ"):
                theirs = reference.misses(reference.OTHERS[other], trace, cap) / n
                report.add(f"miss ratio {where}: libCacheSim {other}", theirs, "")
                extra.append(f"{theirs:.3f}")
            best = opt(trace, cap) / n
            report.add(f"miss ratio {where}: OPT", best, "")
            report.add(f"miss ratio {where}: {DEFAULT} (default) / OPT", ours_by[DEFAULT], "", best)
            report.add(
                f"miss ratio {where}: {KERNEL_DEFAULT} (the kernel's default) / OPT",
                ours_by[KERNEL_DEFAULT],
                "",
                best,
            )
            vs_opt = [f"{ours_by[d] / best:.2f}" if best else "-" for d in defaults]
            table.add_row(tname, f"{frac:.0%} ({cap})", *cells, *extra, f"{best:.3f}", *vs_opt)
    console.print(table)
    assert not off, "policies off their libCacheSim twins by more than 0.01: " + "; ".join(off)


# -- speed ----------------------------------------------------------------------------------
def hit_costs(report: Report) -> None:
    resident = 10_000
    hits = zipf(50_000, resident, 0.9, seed=5)

    def baseline() -> float:
        od: OrderedDict[int, None] = OrderedDict.fromkeys(range(resident))
        move = od.move_to_end
        t0 = time.perf_counter()
        for key in hits:
            move(key)
        return (time.perf_counter() - t0) / len(hits)

    def timing(name: str) -> Callable[[], float]:
        def run() -> float:
            policy = make_policy(name)
            for key in range(resident):
                policy.insert(key)
            ref = policy.referenced
            t0 = time.perf_counter()
            for key in hits:
                ref(key)
            return (time.perf_counter() - t0) / len(hits)

        return run

    got = interleave({"baseline": baseline} | {name: timing(name) for name in ORDER}, ROUNDS)
    base = got.median("baseline") * 1e9
    report.add("referenced(): OrderedDict.move_to_end (baseline)", base, "ns")
    for name in ORDER:
        report.add_time(f"referenced(): {name}", got.paired(name, "baseline"), "ns", 1e9)


def miss_costs(report: Report) -> None:
    resident = 10_000
    stream = range(resident, resident + 30_000)  # pages never seen: every one a miss

    def baseline() -> float:
        od: OrderedDict[int, None] = OrderedDict.fromkeys(range(resident))
        pop = od.popitem
        t0 = time.perf_counter()
        for key in stream:
            pop(last=False)
            od[key] = None
        return (time.perf_counter() - t0) / len(stream)

    def timing(name: str) -> Callable[[], float]:
        def run() -> float:
            policy = make_policy(name)
            for key in range(resident):
                policy.insert(key)
            for victim in policy.victims(1):  # S3-FIFO's first fill happens here
                policy.removed(victim)
            insert, victims, removed = policy.insert, policy.victims, policy.removed
            t0 = time.perf_counter()
            for key in stream:
                for victim in victims(1):
                    removed(victim)
                insert(key)
            return (time.perf_counter() - t0) / len(stream)

        return run

    got = interleave({"baseline": baseline} | {name: timing(name) for name in ORDER}, ROUNDS)
    base = got.median("baseline") * 1e9
    report.add("one page replaced: OrderedDict LRU popitem+set (baseline)", base, "ns")
    for name in ORDER:
        what = f"one page replaced: {name} victims(1)+removed+insert"
        report.add_time(what, got.paired(name, "baseline"), "ns", 1e9)


def run(report: Report) -> None:
    assert set(ORDER) == set(POLICIES)
    console = Console(width=160)  # the table is wide; a pipe would get 80 columns
    miss_ratios(report, console)
    hit_costs(report)
    miss_costs(report)
