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

DEFAULT is filled in below once measured.
"""

from __future__ import annotations

from types import MappingProxyType

from pagemap.kernel.policy.base import Evictable, Key, Policy, always
from pagemap.kernel.policy.clock import Clock
from pagemap.kernel.policy.fifo import FIFO
from pagemap.kernel.policy.lru import LRU
from pagemap.kernel.policy.lru2q import LRU2Q
from pagemap.kernel.policy.opt import opt
from pagemap.kernel.policy.replay import misses
from pagemap.kernel.policy.s3fifo import S3FIFO

POLICIES = MappingProxyType(
    {cls.name: cls for cls in (FIFO, LRU, Clock, LRU2Q, S3FIFO)},
)

DEFAULT = "s3fifo"


def make_policy(name: str = DEFAULT) -> Policy:
    """A fresh policy of the given name; ValueError naming the choices otherwise."""
    cls = POLICIES.get(name)
    if cls is None:
        choices = ", ".join(POLICIES)
        raise ValueError(f"unknown replacement policy {name!r}: choose one of {choices}")
    return cls()


__all__ = [
    "DEFAULT",
    "FIFO",
    "LRU",
    "LRU2Q",
    "POLICIES",
    "S3FIFO",
    "Clock",
    "Evictable",
    "Key",
    "Policy",
    "always",
    "make_policy",
    "misses",
    "opt",
]
