"""Page replacement policies, by name, and Belady's OPT to measure them against.

Which pages to evict when an allocation finds no free frame.  The kernel
drives a policy through the calls of base.py (insert, referenced, victims,
removed, kept) and removes the victims through the page map's removal
protocol.

    fifo    first in, first out; use changes nothing
    lru     least recently used
    clock   FIFO with a second chance for a referenced bit
    lru2q   inactive and active lists, in the manner of Linux's page LRU
    s3fifo  small, main and ghost FIFOs (Yang et al., SOSP 2023)

`misses(policy, trace, capacity)` replays a trace through a policy;
`opt(trace, capacity)` is Belady's optimum for the same trace.

The default is S3-FIFO, after Yang, Zhang, Qiu, Yue and Rashmi, "FIFO queues
are all you need for cache eviction" (SOSP 2023): a small FIFO that lets
pages used once leave quickly, a main FIFO with a two-bit CLOCK for the rest,
and a ghost FIFO that brings a page evicted too early straight back to main.
Of the three candidates (clock, lru2q, s3fifo) it had the lowest miss ratio
on the Zipf and scan-loop traces bench/bench_policy.py measures, and was
within 0.001 of the best on the recorded `pagemap run` (2026-11-30; caches
of 1, 5, 10 and 25% of the pages each trace touches):

    trace        clock                lru2q                s3fifo               OPT
    zipf-0.8     .840 .663 .561 .388  .773 .613 .522 .369  .730 .574 .486 .352  .637 .442 .345 .215
    zipf-1.0     .615 .423 .338 .222  .558 .389 .314 .212  .511 .355 .288 .200  .436 .273 .207 .132
    scan-loop    1.00 .500 .500 .385  1.00 .440 .385 .385  .884 .392 .376 .347  .871 .385 .374 .341
    pagemap-run  .993 .963 .928 .824  .992 .964 .928 .825  .993 .963 .926 .819  .892 .766 .685 .575

(pagemap-run's lookups are close to uniform over its file, where no policy
can do much.)

The kernel's own default is lru2q, Linux's two lists (mm/vmscan.c:
inactive_is_low() keeps the active list no longer than the inactive one for
file pages; folio_check_references() activates an inactive page found
referenced), for two reasons.  It costs 9 bytes a cached page over per-frame
arrays (FrameLRU2Q), inside the page's budget of a few words, where S3-FIFO
must also remember the keys of evicted pages (its ghost queue, 90% of the
cache, a hash entry each); and the kernel learns of use only from accessed
bits harvested at eviction time, which is the question the two lists ask
("was this inactive page used since it came in?").  The price, in the table
above: lru2q misses 0.01 to 0.05 more than s3fifo on Zipf traces, and the
same on the recorded `pagemap run`.  s3fifo stays the default of
`make_policy()` for traces, and `Machine(reclaim="s3fifo")` runs it in the
kernel, at its dictionaries' cost.  Its hit path is as cheap as CLOCK's, one dict lookup and
store, and it fits accessed bits as CLOCK does: each harvested bit is one
more use on a 2-bit count.
"""

from __future__ import annotations

from types import MappingProxyType

from pagemap.kernel.policy.base import Evictable, Key, Policy, always
from pagemap.kernel.policy.clock import Clock
from pagemap.kernel.policy.fifo import FIFO
from pagemap.kernel.policy.lru import LRU
from pagemap.kernel.policy.lru2q import LRU2Q, FrameLRU2Q
from pagemap.kernel.policy.opt import opt
from pagemap.kernel.policy.replay import misses
from pagemap.kernel.policy.s3fifo import S3FIFO

POLICIES = MappingProxyType(
    {cls.name: cls for cls in (FIFO, LRU, Clock, LRU2Q, S3FIFO)},
)

DEFAULT = "s3fifo"
# What the kernel runs unless told otherwise (Machine(reclaim=...)); see below.
KERNEL_DEFAULT = "lru2q"


def policy_class(name: str) -> type[Policy]:
    """The policy of the given name; ValueError naming the choices otherwise."""
    cls = POLICIES.get(name)
    if cls is None:
        choices = ", ".join(POLICIES)
        raise ValueError(f"unknown replacement policy {name!r}: choose one of {choices}")
    return cls


def make_policy(name: str = DEFAULT, frames: int | None = None) -> Policy:
    """A fresh policy of the given name; ValueError naming the choices otherwise.

    With `frames`, keys are frame numbers below it, and a policy that has a
    form over per-frame arrays (lru2q: FrameLRU2Q) comes in that form."""
    cls = policy_class(name)
    if frames is not None and cls is LRU2Q:
        return FrameLRU2Q(frames)
    return cls()


__all__ = [
    "DEFAULT",
    "FIFO",
    "KERNEL_DEFAULT",
    "LRU",
    "LRU2Q",
    "POLICIES",
    "S3FIFO",
    "Clock",
    "Evictable",
    "FrameLRU2Q",
    "Key",
    "Policy",
    "always",
    "make_policy",
    "misses",
    "opt",
    "policy_class",
]
