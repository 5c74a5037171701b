"""e2fsprogs (mke2fs, e2fsck, debugfs) as the independent judges of ext2 images.

The driver in kernel/fs/ext2 is checked against these tools, never against
itself: images are made by mke2fs, checked by `e2fsck -fn`, and read back by
debugfs.  They live in /sbin or /usr/sbin, which a user's PATH may lack, so
those are searched too.  A missing tool is a FileNotFoundError that says
what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

SEARCH = ("/sbin", "/usr/sbin")
INSTALL_HINT = "install e2fsprogs (Debian and Ubuntu: apt-get install e2fsprogs)"


def tool(name: str) -> str:
    """The path of an e2fsprogs tool."""
    found = shutil.which(name)
    if found:
        return found
    for folder in SEARCH:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        f"{name} was not found on PATH or in {', '.join(SEARCH)}: {INSTALL_HINT}"
    )


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "LC_ALL": "C"}
    done = subprocess.run(args, capture_output=True, env=env, check=False)
    if check and done.returncode:
        err = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {err}")
    return done


def mkfs(
    image: str | os.PathLike[str],
    size: int,
    block_size: int = 1024,
    source: str | os.PathLike[str] | None = None,
    inodes: int | None = None,
    extra: tuple[str, ...] = (),
) -> None:
    """`mke2fs -t ext2` an image of `size` bytes (created if missing), filled
    from the directory `source` when given (-d)."""
    path = os.fspath(image)
    with open(path, "ab") as f:
        f.truncate(size)
    args = [tool("mke2fs"), "-q", "-F", "-t", "ext2", "-b", str(block_size)]
    if source is not None:
        args += ["-d", os.fspath(source)]
    if inodes is not None:
        args += ["-N", str(inodes)]
    args += [*extra, path, f"{size // 1024}k"]
    _run(args)


@dataclass(frozen=True)
class FsckResult:
    returncode: int
    output: str

    @property
    def clean(self) -> bool:
        return self.returncode == 0


def fsck(image: str | os.PathLike[str]) -> FsckResult:
    """`e2fsck -fn`: a forced check that changes nothing; clean when it exits 0."""
    done = _run([tool("e2fsck"), "-fn", os.fspath(image)], check=False)
    out = (done.stdout + done.stderr).decode(errors="replace")
    return FsckResult(done.returncode, out)


def debugfs(image: str | os.PathLike[str], command: str) -> bytes:
    """The output of one debugfs request (-R), read-only."""
    return _run([tool("debugfs"), "-R", command, os.fspath(image)]).stdout


def cat(image: str | os.PathLike[str], path: str) -> bytes:
    return debugfs(image, f'cat "{path}"')


@dataclass(frozen=True)
class LsEntry:
    ino: int
    mode: int
    size: int
    name: str


def ls(image: str | os.PathLike[str], path: str) -> list[LsEntry]:
    """`debugfs ls -l`: every live entry of a directory ("." and ".."
    included), parsed (names with runs of spaces come back with one)."""
    out = debugfs(image, f'ls -l "{path}"').decode(errors="surrogateescape")
    entries = []
    for line in out.splitlines():
        # ino mode (type) uid gid size date time name
        parts = line.split()
        if len(parts) < 9 or not parts[0].isdigit() or not parts[2].startswith("("):
            continue
        name = " ".join(parts[8:])
        entries.append(LsEntry(int(parts[0]), int(parts[1], 8), int(parts[5]), name))
    return entries
