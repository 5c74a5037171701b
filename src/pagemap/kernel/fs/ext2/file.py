"""An open file of an ext2 filesystem: pread/pwrite, and read/write at a
position of its own.

Rules.  A call that changes the inode (pwrite, truncate, fsync) holds a
reference of the file for its length (`_get`/`_put`, Linux's fdget); the
last reference, not close, is the inode's last close, and tells the
filesystem (`closed`), which may then free an unlinked inode.  The file
takes no namespace lock of its own: the filesystem's `closed` does.
"""

from __future__ import annotations

from typing import Protocol

from pagemap.kernel.errors import AlreadyClosed, InvalidArgument
from pagemap.kernel.fs.ext2.inode import Ext2Inode
from pagemap.kernel.vfs import Buffer, File


class LastClose(Protocol):
    """What a file tells its filesystem (fs.py's Ext2FS) at its last close."""

    def closed(self, inode: Ext2Inode) -> None: ...


class Ext2File(File):
    """An open file of an ext2 filesystem: pread/pwrite, and read/write at a
    position of its own."""

    inode: Ext2Inode

    def __init__(
        self, fs: LastClose, inode: Ext2Inode, path: str, mode: str, readable: bool, writable: bool
    ) -> None:
        super().__init__(inode, path, mode, readable, writable)
        self.fs = fs
        self.pos = 0
        # The file's references, as Linux's f_count: one for the open file,
        # one for each call in progress (fdget).  The last put, not close,
        # is the last close that may free an unlinked inode: a pwrite let in
        # before a racing close would otherwise write into an inode (and
        # allocate blocks for it) that the close had just freed
        # (ext2-close-unlinked; the close-frees-in-use mutant).  The calls
        # that change the inode take one (pwrite, truncate, fsync); a pread
        # does not: the last close frees an inode as a truncate to 0 does
        # (the size first, then the pages, each waited for under its lock,
        # then the blocks), so a pread racing it reads what a pread racing
        # that truncate reads (ext2-truncate-read), and the reference would
        # only make every pread contend with every other call on the file.
        self._refs = inode.executor.atomic(1, f"{inode.name}.file.refs")

    def _get(self, op: str) -> None:
        """A reference for a call on this file, or EBADF once it is closed."""
        refs = self._refs
        while True:
            n = refs.load()
            if not n:
                break
            if refs.cas(n, n + 1):
                if not self._closed.load():
                    return
                self._put()  # closed meanwhile: the call comes after the close
                break
        raise AlreadyClosed(f"{self.path}: {op} on a closed file")

    def _put(self) -> None:
        if self._refs.fetch_add(-1) == 1:
            self.inode.open_count.fetch_add(-1)
            self.fs.closed(self.inode)

    def pwrite(self, data: Buffer, offset: int) -> int:
        self._get("pwrite")
        try:
            return super().pwrite(data, offset)
        finally:
            self._put()

    def truncate(self, size: int) -> None:
        self._get("truncate")
        try:
            super().truncate(size)
        finally:
            self._put()

    def fsync(self) -> None:
        self._get("fsync")
        try:
            super().fsync()
        finally:
            self._put()

    def __enter__(self) -> Ext2File:
        return self

    def read(self, nbytes: int = -1) -> bytes:
        if nbytes < 0:
            nbytes = max(0, self.size - self.pos)
        data = self.pread(nbytes, self.pos)
        self.pos += len(data)
        return data

    def write(self, data: Buffer) -> int:
        done = self.pwrite(data, self.pos)
        self.pos += done
        return done

    def seek(self, pos: int) -> int:
        if pos < 0:
            raise InvalidArgument(f"{self.path}: seek to {pos}: a position may not be negative")
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        """Close this file; closing twice is harmless.  The inode's last close
        comes with the last reference: here, or at the end of a call still in
        progress."""
        if not self._closed.swap(1):
            self._put()
