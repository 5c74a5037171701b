"""Hand-written timelines for tests and for trying the renderers.

`sample_timeline()` tells one lost write in 22 steps on 3 cores: a remover (with
the mutant "writeback before the TLB shootdown") writes a dirty page back while
core 0 still holds a dirty TLB entry for it; the writer, preempted and resumed,
stores through that stale entry into a frame the remover then frees, and a
reader on core 2 loads the page again from the host and sees the old bytes.
`long_timeline(n)` repeats it to n steps, to try the renderers at scale.

Nothing here runs the kernel: the values are written by hand, consistent with
the slot, flag and PTE formats the kernel prints.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import NamedTuple

from pagemap.check.report.model import Row, TaskInfo, Timeline, Verdict

_TASKS = (("writer", 0), ("remover", 1), ("reader", 2))  # (name, core); tid is the index

_START = MappingProxyType(
    {
        "pm.removal": "0",
        "pm.lock": "free",
        "pm.slot[0]": "0|-|7",
        "page[7].flags": "UPTODATE|PAGEMAP",
        "page[7].lock": "count 1",
        "pte[p1:0x10000]": "ppn=7:P|W|U|A|D",
        "tlb[0]": "p1:0x10000 -> ppn 7 W|D",
        "tlb[1]": "-",
        "tlb[2]": "-",
        "frame[7][0:8]": '"........"',
        "data.bin[0:8]": '"........"',
        "free frames": "5",
    }
)

_PM = "kernel/pagemap.py"


class _S(NamedTuple):
    """One hand-written step and the state entries it changes."""

    task: str
    operation: str
    obj: str
    location: str
    seed: str = ""
    slot: str = ""
    flags: str = ""
    pte: str = ""
    value: str = ""
    data: bytes = b""
    preempted: bool = False
    failing: bool = False
    changes: tuple[tuple[str, str], ...] = ()
    ran: tuple[str, ...] = ()


_STEPS = (
    _S("writer", "tlb.lookup", "tlb[0]", "hw/mmu.py:139 Tlb.lookup", value="hit, W|D"),
    _S(
        "writer",
        "frame.store",
        "frame 7",
        "hw/mmu.py:239 Mmu.access",
        data=b"hello",
        changes=(("frame[7][0:8]", '"hello..."'),),
    ),
    _S(
        "remover",
        "cas",
        "pm.removal",
        f"{_PM}:590 PageMap.remove_contig",
        "pm_remove_contig",
        value="0x0 -> 0x1",
        preempted=True,
        changes=(("pm.removal", "1"),),
    ),
    _S(
        "remover",
        "lock",
        "pm.lock",
        f"{_PM}:611 PageMap._mark_for_removal",
        "pm_remove_contig",
        value="free -> held by remover",
        changes=(("pm.lock", "held by remover"),),
    ),
    _S(
        "remover",
        "load",
        "pm.slot[0]",
        f"{_PM}:618 PageMap._mark_for_removal",
        "pm_remove_contig",
        slot="0|-|7",
        ran=("slot_check_removal", "slot_set_removal"),
    ),
    _S(
        "remover",
        "cas",
        "pm.slot[0]",
        f"{_PM}:624 PageMap._mark_for_removal",
        "pm_slot_set_removal",
        slot="0|-|7 -> 0|R|7",
        changes=(("pm.slot[0]", "0|R|7"),),
    ),
    _S(
        "remover",
        "fetch_or",
        "page[7].flags",
        f"{_PM}:627 PageMap._mark_for_removal",
        "pm_remove_contig",
        flags="UPTODATE|PAGEMAP -> UPTODATE|PAGEMAP|REMOVAL",
        changes=(("page[7].flags", "UPTODATE|PAGEMAP|REMOVAL"),),
    ),
    _S(
        "remover",
        "unlock",
        "pm.lock",
        f"{_PM}:633 PageMap._mark_for_removal",
        "pm_remove_contig",
        value="held by remover -> free",
        changes=(("pm.lock", "free"),),
    ),
    _S(
        "remover",
        "swap",
        "pte[p1:0x10000]",
        f"{_PM}:671 PageMap._pte_unmap_keep_dirty",
        "__pm_mark_dirty_pgs_unmap",
        pte="ppn=7:P|W|U|A|D -> 0",
        changes=(("pte[p1:0x10000]", "0"),),
    ),
    _S(
        "remover",
        "fetch_or",
        "page[7].flags",
        f"{_PM}:676 PageMap._pte_unmap_keep_dirty",
        "__pm_mark_dirty_pgs_unmap",
        flags="UPTODATE|PAGEMAP|REMOVAL -> UPTODATE|DIRTY|PAGEMAP|REMOVAL",
        changes=(("page[7].flags", "UPTODATE|DIRTY|PAGEMAP|REMOVAL"),),
    ),
    _S(
        "remover",
        "down",
        "page[7].lock",
        f"{_PM}:702 PageMap._write_back_marked",
        "lock_page",
        value="count 1 -> count 0",
        changes=(("page[7].lock", "count 0 (remover)"),),
    ),
    _S(
        "remover",
        "fetch_and",
        "page[7].flags",
        f"{_PM}:705 PageMap._write_back_marked",
        "pm_remove_contig",
        flags="UPTODATE|DIRTY|PAGEMAP|REMOVAL -> UPTODATE|PAGEMAP|REMOVAL",
        changes=(("page[7].flags", "UPTODATE|PAGEMAP|REMOVAL"),),
    ),
    _S("remover", "frame_read", "page[7]", "kernel/hostfs.py:223 HostOps.writepage"),
    _S(
        "remover",
        "host_write",
        "data.bin",
        "kernel/hostfs.py:98 HostFile._io",
        data=b"hello...",
        changes=(("data.bin[0:8]", '"hello..."'),),
    ),
    _S(
        "writer",
        "tlb.lookup",
        "tlb[0]",
        "hw/mmu.py:139 Tlb.lookup",
        value="hit, W|D (stale: the PTE is gone)",
        preempted=True,
    ),
    _S(
        "writer",
        "frame.store",
        "frame 7",
        "hw/mmu.py:239 Mmu.access",
        data=b"world!",
        failing=True,
        changes=(("frame[7][0:8]", '"world!.."'),),
    ),
    _S(
        "remover",
        "up",
        "page[7].lock",
        f"{_PM}:716 PageMap._write_back_marked",
        "unlock_page",
        value="count 0 -> count 1",
        changes=(("page[7].lock", "count 1"),),
    ),
    _S(
        "remover",
        "tlb.flush",
        "tlb[0]",
        f"{_PM}:731 PageMap._shootdown_and_reset",
        "shootdown_and_reset_ptrstore",
        value="1 entry dropped",
        changes=(("tlb[0]", "-"),),
    ),
    _S(
        "remover",
        "load",
        "page[7].flags",
        f"{_PM}:748 PageMap._free_marked",
        "pm_remove_contig",
        flags="UPTODATE|PAGEMAP|REMOVAL",
        ran=("PageMap._marked_page", "slot_get_ppn", "slot_check_refcnt", "slot_check_removal"),
    ),
    _S(
        "remover",
        "cas",
        "pm.slot[0]",
        f"{_PM}:755 PageMap._free_marked",
        "pm_remove_contig",
        slot="0|R|7 -> 0|-|0",
        changes=(
            ("pm.slot[0]", "0|-|0"),
            ("page[7].flags", "-"),
            ("free frames", "6"),
            ("pm.removal", "0"),
        ),
    ),
    _S(
        "reader",
        "host_read",
        "data.bin",
        "kernel/hostfs.py:98 HostFile._io",
        "pm_load_page",
        value='"hello..."',
        changes=(("pm.slot[0]", "1|-|3"), ("frame[3][0:8]", '"hello..."'), ("free frames", "5")),
    ),
    _S(
        "reader",
        "frame_read",
        "page[3]",
        "kernel/vfs.py:133 File.pread",
        value='"hello."',
        failing=True,
    ),
)


def sample_timeline() -> Timeline:
    """22 steps on 3 cores, two preemptions, two failing steps (16 and 22)."""
    core = dict(_TASKS)
    state = dict(_START)
    rows = []
    for n, s in enumerate(_STEPS, start=1):
        state = state | dict(s.changes)
        rows.append(
            Row(
                step=n,
                core=core[s.task],
                task=s.task,
                operation=s.operation,
                obj=s.obj,
                slot=s.slot,
                flags=s.flags,
                pte=s.pte,
                value=s.value,
                location=s.location,
                seed_function=s.seed,
                preempted=s.preempted,
                failing=s.failing,
                data=s.data.hex(),
                state=dict(state),
                ran=list(s.ran),
            )
        )
    return Timeline(
        title="store-remove: a counterexample",
        cores=3,
        tasks=[TaskInfo(tid, name, core) for tid, (name, core) in enumerate(_TASKS)],
        rows=rows,
        verdict=Verdict(
            oracle="coherence",
            message='pread of data.bin at offset 0 returned "hello." at step 22, but the '
            'latest store to it, at step 16, wrote "world!"',
            replay_command="pagemap replay traces/store-remove-dfs-s0-n205.json",
        ),
        summary="found by dfs seed 0, schedule 205 (shrunk from 61 steps and 3 preemptions)",
        initial=dict(_START),
    )


def long_timeline(steps: int) -> Timeline:
    """The sample's steps repeated to `steps` rows, renumbered; only the last is failing."""
    base = sample_timeline()
    rows = []
    for n in range(steps):
        row = base.rows[n % len(base.rows)]
        rows.append(
            replace(
                row, step=n + 1, failing=n == steps - 1, state=dict(row.state), ran=list(row.ran)
            )
        )
    title = f"store-remove: {steps} steps"
    return replace(base, title=title, rows=rows, summary="the sample's steps, repeated")
