"""mmap protection and flag values, as Linux defines them."""

from __future__ import annotations

PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_LOCKED = 0x2000

# Shorthands of our own, not Linux names.
PROT_RW = PROT_READ | PROT_WRITE
PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC
