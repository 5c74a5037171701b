"""ext2: a filesystem over a block device's page cache (see fs.py)."""

from pagemap.kernel.fs.ext2.fs import DirEntry, Ext2File, Ext2FS, Stat, StatFS, mount

__all__ = ["DirEntry", "Ext2FS", "Ext2File", "Stat", "StatFS", "mount"]
