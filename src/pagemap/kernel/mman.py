"""mmap protection and flag values, as Linux defines them."""

from __future__ import annotations

PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03  # MAP_SHARED, refusing flags it does not know
MAP_TYPE = 0x0F  # the bits that say what kind of mapping it is
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_GROWSDOWN = 0x100
MAP_LOCKED = 0x2000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000

# The flags MAP_SHARED_VALIDATE accepts (Linux's LEGACY_MAP_MASK, as on
# x86-64: MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_32BIT,
# MAP_ABOVE4G, MAP_GROWSDOWN, MAP_DENYWRITE, MAP_EXECUTABLE, MAP_LOCKED,
# MAP_NORESERVE, MAP_POPULATE, MAP_NONBLOCK, MAP_STACK, MAP_HUGETLB,
# MAP_UNINITIALIZED and the MAP_HUGE_2MB/1GB size bits); plain MAP_SHARED
# ignores the rest.  MAP_SYNC is not among them: it needs DAX, which no
# filesystem here has.
LEGACY_MAP_MASK = 0x7C07F9F3

# Shorthands of our own, not Linux names.
PROT_RW = PROT_READ | PROT_WRITE
PROT_ALL = PROT_READ | PROT_WRITE | PROT_EXEC
