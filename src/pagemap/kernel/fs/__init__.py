"""Filesystems: clients of the VFS (kernel/vfs.py) and of block devices."""
