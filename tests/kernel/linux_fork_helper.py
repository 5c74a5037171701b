"""The Linux side of test_linux_fork_diff.py, run as its own process.

Reads JSON documents from stdin, one a line: {"path": the file, "ops":
[[who, kind, args...], ...]}.  For each, in a process forked for it, it runs
the operations on Linux (mmap, munmap, mprotect and madvise through libc,
loads and stores through ctypes, pread and pwrite on the file, and one
"fork" by the parent with os.fork), and writes the answer of each operation
as a JSON list, a line on stdout.  After the fork, an operation of the child
("c") is sent to the child over a pipe and its answer comes back; the parent
("p") runs its own.  An access Linux would answer with a signal is
not made: the process that would make it asks its own /proc/self/maps and
the file's size, and answers "SIGSEGV" or "SIGBUS".

A process of its own because fork in the test's process (threads of pytest's
plugins, hypothesis) would copy all of that; nothing here imports pagemap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from typing import Any

PGSIZE = 4096
REGION = 0x1000_0000_0000
REGION_PAGES = 8
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_FAILED = (1 << 64) - 1

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
for _name, _extra in (
    ("munmap", []),
    ("mprotect", [ctypes.c_int]),
    ("madvise", [ctypes.c_int]),
    ("mlock", []),
    ("munlock", []),
):
    _fn = getattr(libc, _name)
    _fn.restype = ctypes.c_int
    _fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, *_extra]


def would(path: str, fd: int, addr: int, write: bool) -> str:
    """What Linux does on this access, asked of /proc/self/maps."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= addr < hi:
                if not REGION <= addr < REGION + REGION_PAGES * PGSIZE:
                    return "SIGSEGV"
                if ("w" if write else "r") not in fields[1]:
                    return "SIGSEGV"
                if " ".join(fields[5:]) == path:
                    page = (int(fields[2], 16) + addr - lo) // PGSIZE
                    size = os.fstat(fd).st_size
                    if page >= (size + PGSIZE - 1) // PGSIZE:
                        return "SIGBUS"
                return "ok"
    return "SIGSEGV"


def run(path: str, fd: int, op: list[Any]) -> Any:
    kind, args = op[1], op[2:]
    addr = REGION + args[0] * PGSIZE if kind not in ("pread", "pwrite") else 0
    ctypes.set_errno(0)
    if kind == "mmap":
        _, n, prot, flags, foff = args
        ret = libc.mmap(addr, n * PGSIZE, prot, flags | MAP_FIXED, fd, foff)
        return ctypes.get_errno() if ret == MAP_FAILED else 0
    if kind == "madvise_raw":  # a byte offset into the region, any size_t length
        ret = libc.madvise(REGION + args[0], args[1] % (1 << 64), args[2])
        return ctypes.get_errno() if ret == -1 else 0
    if kind in ("mlock_raw", "munlock_raw"):  # a byte offset and any size_t length
        call = libc.mlock if kind == "mlock_raw" else libc.munlock
        ret = call(REGION + args[0], args[1] % (1 << 64))
        return ctypes.get_errno() if ret == -1 else 0
    if kind in ("munmap", "mprotect", "madvise", "mlock", "munlock"):
        call = getattr(libc, kind)
        ret = call(addr, args[1] * PGSIZE, *args[2:])
        return ctypes.get_errno() if ret == -1 else 0
    if kind == "load":
        at = addr + args[1]
        verdict = would(path, fd, at, False)
        return ctypes.string_at(at, args[2]).hex() if verdict == "ok" else verdict
    if kind == "store":
        at, data = addr + args[1], bytes.fromhex(args[2])
        verdict = would(path, fd, at, True)
        if verdict == "ok":
            ctypes.memmove(at, data, len(data))
        return verdict
    if kind == "pread":
        return os.pread(fd, args[1], args[0]).hex()
    if kind == "pwrite":
        return os.pwrite(fd, bytes.fromhex(args[1]), args[0])
    raise ValueError(f"unknown operation {kind}")


def child_loop(path: str, fd: int, requests: int, answers: int) -> None:
    with os.fdopen(requests, "r") as inbox, os.fdopen(answers, "w") as outbox:
        for line in inbox:
            op = json.loads(line)
            if op is None:
                break
            outbox.write(json.dumps(run(path, fd, op)) + "\n")
            outbox.flush()
    os._exit(0)


def session(doc: dict[str, Any]) -> list[Any]:
    """Run one sequence in this process (and the child it forks)."""
    path = os.path.realpath(doc["path"])
    fd = os.open(path, os.O_RDWR)
    answers: list[Any] = []
    to_child = from_child = None
    pid = 0
    try:
        for op in doc["ops"]:
            if op[1] == "fork":
                req_r, req_w = os.pipe()
                ans_r, ans_w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(req_w)
                    os.close(ans_r)
                    child_loop(path, fd, req_r, ans_w)
                os.close(req_r)
                os.close(ans_w)
                to_child, from_child = os.fdopen(req_w, "w"), os.fdopen(ans_r, "r")
                answers.append(0)
            elif op[0] == "c":
                assert to_child is not None and from_child is not None
                to_child.write(json.dumps(op) + "\n")
                to_child.flush()
                answers.append(json.loads(from_child.readline()))
            else:
                answers.append(run(path, fd, op))
    finally:
        if to_child is not None:
            to_child.write("null\n")
            to_child.close()
            os.waitpid(pid, 0)
        libc.munmap(REGION, REGION_PAGES * PGSIZE)
        os.close(fd)
    return answers


def serve() -> None:
    """One JSON document a line on stdin, one JSON list of answers a line on
    stdout; each sequence runs in a process forked for it, so every one
    starts from an empty region and nothing one leaves reaches the next."""
    for line in sys.stdin:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                out = json.dumps(session(json.loads(line)))
            except Exception as exc:  # the test shows it
                out = json.dumps({"error": repr(exc)})
            with os.fdopen(w, "w") as pipe:
                pipe.write(out)
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as pipe:
            out = pipe.read()
        os.waitpid(pid, 0)
        sys.stdout.write(out + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
