"""The private-isolation oracle (oracles/private.py) judges, and can fail."""

from __future__ import annotations

from pagemap import MAP_PRIVATE, PGSIZE, PROT_READ, Machine
from pagemap.check.memdisk import MemInode
from pagemap.kernel.vfs import File
from pagemap.oracles.private import PRIVATE_ISOLATION, PrivateIsolation, own_bytes

ORIGINAL = b"\x07" * PGSIZE


def setup() -> tuple[Machine, MemInode, File, PrivateIsolation]:
    machine = Machine(cores=1, memory=16 * PGSIZE, executor="sim", seed=0)
    inode = MemInode(machine.executor, machine.page_map, "f", ORIGINAL)
    f = File(inode, "f", "r+", True, True)

    def backing(index: int) -> bytes:
        return bytes(inode.data[index * PGSIZE : (index + 1) * PGSIZE])

    iso = PrivateIsolation("f", f.mapping, 1, backing, frozen=lambda index: ORIGINAL)
    return machine, inode, f, iso


def test_a_private_store_holds_and_a_leak_into_the_cache_or_the_file_fails() -> None:
    machine, _, f, iso = setup()
    p = machine.process()
    a = p.mmap(PGSIZE, PROT_READ | 0x2, MAP_PRIVATE, f)
    p.store(a, b"secret!!")
    iso.secret(b"secret!!")
    assert iso.check() == []  # in the private copy only
    f.pwrite(b"secret!!", 100)  # as if it had leaked
    found = iso.check()
    assert found and all(v.oracle == PRIVATE_ISOLATION for v in found)
    assert "holds 7365637265742121 at offset 100" in found[0].message


def test_a_frozen_file_that_changes_fails() -> None:
    _, _, f, iso = setup()
    f.pwrite(b"\x08", 5)
    found = iso.check()
    assert found and "changed at offset 5" in found[0].message


def test_own_bytes_allows_only_what_is_listed() -> None:
    assert own_bytes("p1", 0x1000, b"a", (b"a", b"b")) is None
    got = own_bytes("p1", 0x1000, b"c", (b"a",))
    assert got is not None and got.oracle == PRIVATE_ISOLATION and "p1 read 63" in got.message
