"""ext2's on-disk structures: the superblock, group descriptors, inodes and
directory entries, as bytes and back, with the checks each one must pass.

Everything on disk is little-endian.  This file knows formats and field
meanings only; it holds no state and takes no locks.  A parse of bytes that
came from the disk either returns a record or raises Corrupt saying which
field of which structure was wrong; it never raises anything else, whatever
the bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields

from pagemap.kernel.fs.ext2.errors import Corrupt

SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
MAGIC = 0xEF53
ROOT_INO = 2
RESIZE_INO = 7
GOOD_OLD_FIRST_INO = 11
GOOD_OLD_INODE_SIZE = 128
GOOD_OLD_REV = 0
DYNAMIC_REV = 1
N_BLOCKS = 15  # i_block: 12 direct, then single, double and triple indirect
NDIR_BLOCKS = 12
IND_BLOCK, DIND_BLOCK, TIND_BLOCK = 12, 13, 14
NAME_LEN = 255
LINK_MAX = 32000  # EXT2_LINK_MAX
FAST_SYMLINK_MAX = 4 * N_BLOCKS - 1  # a target this long fits in i_block with its NUL

# s_state
VALID_FS = 0x1
ERROR_FS = 0x2

# Features.  Compatible ones may be ignored by a driver that does not know
# them; incompatible ones may not be ignored at all; read-only-compatible ones
# may be ignored by a driver that never writes.
COMPAT_DIR_PREALLOC = 0x1
COMPAT_IMAGIC_INODES = 0x2
COMPAT_HAS_JOURNAL = 0x4
COMPAT_EXT_ATTR = 0x8
COMPAT_RESIZE_INODE = 0x10
COMPAT_DIR_INDEX = 0x20
INCOMPAT_FILETYPE = 0x2
RO_COMPAT_SPARSE_SUPER = 0x1
RO_COMPAT_LARGE_FILE = 0x2

COMPAT_NAMES = {
    0x1: "dir_prealloc",
    0x2: "imagic_inodes",
    0x4: "has_journal",
    0x8: "ext_attr",
    0x10: "resize_inode",
    0x20: "dir_index",
    0x40: "lazy_bg",
    0x100: "exclude_bitmap",
    0x200: "sparse_super2",
    0x400: "fast_commit",
    0x800: "stable_inodes",
    0x1000: "orphan_file",
}
INCOMPAT_NAMES = {
    0x1: "compression",
    0x2: "filetype",
    0x4: "needs_recovery",
    0x8: "journal_dev",
    0x10: "meta_bg",
    0x40: "extent",
    0x80: "64bit",
    0x100: "mmp",
    0x200: "flex_bg",
    0x400: "ea_inode",
    0x1000: "dirdata",
    0x2000: "metadata_csum_seed",
    0x4000: "large_dir",
    0x8000: "inline_data",
    0x10000: "encrypt",
    0x20000: "casefold",
}
RO_COMPAT_NAMES = {
    0x1: "sparse_super",
    0x2: "large_file",
    0x4: "btree_dir",
    0x8: "huge_file",
    0x10: "uninit_bg",
    0x20: "dir_nlink",
    0x40: "extra_isize",
    0x100: "quota",
    0x200: "bigalloc",
    0x400: "metadata_csum",
    0x800: "replica",
    0x1000: "read-only",
    0x2000: "project",
    0x4000: "shared_blocks",
    0x8000: "verity",
    0x10000: "orphan_present",
}

# What this driver handles.  Compatible features it may leave alone and still
# write (as Linux's ext2 does); any other compatible feature is mounted
# read-only, since leaving it alone while writing could break it (sparse_super2
# moves the backups, has_journal expects its journal replayed).
COMPAT_RW_OK = (
    COMPAT_DIR_PREALLOC
    | COMPAT_IMAGIC_INODES
    | COMPAT_EXT_ATTR
    | COMPAT_RESIZE_INODE
    | COMPAT_DIR_INDEX
)
INCOMPAT_SUPPORTED = INCOMPAT_FILETYPE
RO_COMPAT_SUPPORTED = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE

# i_mode
S_IFMT = 0o170000
S_IFSOCK = 0o140000
S_IFLNK = 0o120000
S_IFREG = 0o100000
S_IFBLK = 0o060000
S_IFDIR = 0o040000
S_IFCHR = 0o020000
S_IFIFO = 0o010000

# i_flags
INDEX_FL = 0x1000  # the directory has an htree index (dir_index)

# Directory entry file types (the filetype feature)
FT_UNKNOWN, FT_REG_FILE, FT_DIR, FT_CHRDEV, FT_BLKDEV, FT_FIFO, FT_SOCK, FT_SYMLINK = range(8)
FT_BY_FMT = {
    S_IFREG: FT_REG_FILE,
    S_IFDIR: FT_DIR,
    S_IFCHR: FT_CHRDEV,
    S_IFBLK: FT_BLKDEV,
    S_IFIFO: FT_FIFO,
    S_IFSOCK: FT_SOCK,
    S_IFLNK: FT_SYMLINK,
}

# Extended attribute blocks (ext_attr)
XATTR_MAGIC = 0xEA020000


def feature_names(bits: int, names: dict[int, str]) -> str:
    out = []
    for bit in range(32):
        if bits & (1 << bit):
            out.append(names.get(1 << bit, f"unknown {1 << bit:#x}"))
    return ", ".join(out)


def u32(buf: bytes | bytearray | memoryview, off: int) -> int:
    return int.from_bytes(buf[off : off + 4], "little")


def put_u32(buf: bytearray | memoryview, off: int, value: int) -> None:
    buf[off : off + 4] = value.to_bytes(4, "little")


# -- the superblock ----------------------------------------------------------------

_SB_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("inodes_count", "I", 0),
    ("blocks_count", "I", 4),
    ("r_blocks_count", "I", 8),
    ("free_blocks_count", "I", 12),
    ("free_inodes_count", "I", 16),
    ("first_data_block", "I", 20),
    ("log_block_size", "I", 24),
    ("log_frag_size", "I", 28),
    ("blocks_per_group", "I", 32),
    ("frags_per_group", "I", 36),
    ("inodes_per_group", "I", 40),
    ("mtime", "I", 44),
    ("wtime", "I", 48),
    ("mnt_count", "H", 52),
    ("max_mnt_count", "h", 54),
    ("magic", "H", 56),
    ("state", "H", 58),
    ("errors", "H", 60),
    ("minor_rev_level", "H", 62),
    ("lastcheck", "I", 64),
    ("checkinterval", "I", 68),
    ("creator_os", "I", 72),
    ("rev_level", "I", 76),
    ("def_resuid", "H", 80),
    ("def_resgid", "H", 82),
    ("first_ino", "I", 84),
    ("inode_size", "H", 88),
    ("block_group_nr", "H", 90),
    ("feature_compat", "I", 92),
    ("feature_incompat", "I", 96),
    ("feature_ro_compat", "I", 100),
    ("reserved_gdt_blocks", "H", 206),
    ("min_extra_isize", "H", 348),
    ("want_extra_isize", "H", 350),
)


@dataclass
class SuperBlock:
    """The fields of struct ext2_super_block this driver reads or writes; the
    others stay as they are on disk (pack_into writes only these)."""

    inodes_count: int = 0
    blocks_count: int = 0
    r_blocks_count: int = 0
    free_blocks_count: int = 0
    free_inodes_count: int = 0
    first_data_block: int = 0
    log_block_size: int = 0
    log_frag_size: int = 0
    blocks_per_group: int = 0
    frags_per_group: int = 0
    inodes_per_group: int = 0
    mtime: int = 0
    wtime: int = 0
    mnt_count: int = 0
    max_mnt_count: int = 0
    magic: int = 0
    state: int = 0
    errors: int = 0
    minor_rev_level: int = 0
    lastcheck: int = 0
    checkinterval: int = 0
    creator_os: int = 0
    rev_level: int = 0
    def_resuid: int = 0
    def_resgid: int = 0
    first_ino: int = 0
    inode_size: int = 0
    block_group_nr: int = 0
    feature_compat: int = 0
    feature_incompat: int = 0
    feature_ro_compat: int = 0
    reserved_gdt_blocks: int = 0
    min_extra_isize: int = 0
    want_extra_isize: int = 0

    @staticmethod
    def parse(raw: bytes) -> SuperBlock:
        if len(raw) < SUPERBLOCK_SIZE:
            raise Corrupt(f"superblock: only {len(raw)} of its {SUPERBLOCK_SIZE} bytes exist")
        sb = SuperBlock(
            **{name: struct.unpack_from("<" + fmt, raw, off)[0] for name, fmt, off in _SB_FIELDS}
        )
        if sb.rev_level == GOOD_OLD_REV:
            # Revision 0 has none of the dynamic fields: their fixed values.
            sb.first_ino = GOOD_OLD_FIRST_INO
            sb.inode_size = GOOD_OLD_INODE_SIZE
            sb.feature_compat = sb.feature_incompat = sb.feature_ro_compat = 0
            sb.reserved_gdt_blocks = sb.min_extra_isize = sb.want_extra_isize = 0
        return sb

    def pack_into(self, buf: bytearray | memoryview) -> None:
        """Write these fields into a superblock's 1024 bytes, leaving the rest."""
        for name, fmt, off in _SB_FIELDS:
            if self.rev_level == GOOD_OLD_REV and off >= 84:
                break  # revision 0 has no such fields on disk
            try:
                struct.pack_into("<" + fmt, buf, off, getattr(self, name))
            except struct.error as exc:
                raise Corrupt(f"superblock: {name} {getattr(self, name)} cannot be stored") from exc

    def copy(self) -> SuperBlock:
        return SuperBlock(**{f.name: getattr(self, f.name) for f in fields(self)})


# -- group descriptors ---------------------------------------------------------------

GROUP_DESC_SIZE = 32
_GD = struct.Struct("<IIIHHH")


@dataclass
class GroupDesc:
    block_bitmap: int
    inode_bitmap: int
    inode_table: int
    free_blocks_count: int
    free_inodes_count: int
    used_dirs_count: int

    @staticmethod
    def parse(raw: bytes | memoryview) -> GroupDesc:
        return GroupDesc(*_GD.unpack_from(raw, 0))

    def pack_into(self, buf: bytearray | memoryview, off: int) -> None:
        try:
            self._pack_into(buf, off)
        except struct.error as exc:
            raise Corrupt(f"a group descriptor field cannot be stored ({exc}): {self}") from exc

    def _pack_into(self, buf: bytearray | memoryview, off: int) -> None:
        _GD.pack_into(
            buf,
            off,
            self.block_bitmap,
            self.inode_bitmap,
            self.inode_table,
            self.free_blocks_count,
            self.free_inodes_count,
            self.used_dirs_count,
        )


# -- inodes ------------------------------------------------------------------------

# mode uid size atime ctime mtime dtime gid links blocks flags osd1 block[15]
# generation file_acl size_high faddr osd2[12]
_INODE = struct.Struct("<HHIIIIIHHIII15IIIII12s")
assert _INODE.size == GOOD_OLD_INODE_SIZE
EXTRA_ISIZE_OFFSET = 128
CRTIME_OFFSET = 144


@dataclass
class DiskInode:
    mode: int = 0
    uid: int = 0
    size_lo: int = 0
    atime: int = 0
    ctime: int = 0
    mtime: int = 0
    dtime: int = 0
    gid: int = 0
    links_count: int = 0
    blocks: int = 0  # in 512-byte units, indirect blocks and the xattr block included
    flags: int = 0
    osd1: int = 0
    block: tuple[int, ...] = (0,) * N_BLOCKS
    generation: int = 0
    file_acl: int = 0
    size_high: int = 0
    faddr: int = 0
    osd2: bytes = bytes(12)

    @staticmethod
    def parse(raw: bytes | memoryview) -> DiskInode:
        v = _INODE.unpack_from(raw, 0)
        return DiskInode(
            mode=v[0],
            uid=v[1],
            size_lo=v[2],
            atime=v[3],
            ctime=v[4],
            mtime=v[5],
            dtime=v[6],
            gid=v[7],
            links_count=v[8],
            blocks=v[9],
            flags=v[10],
            osd1=v[11],
            block=tuple(v[12:27]),
            generation=v[27],
            file_acl=v[28],
            size_high=v[29],
            faddr=v[30],
            osd2=v[31],
        )

    def pack_into(self, buf: bytearray | memoryview) -> None:
        try:
            self._pack_into(buf)
        except struct.error as exc:
            # Counts built on a corrupt inode can leave the field's range.
            raise Corrupt(f"an inode field cannot be stored ({exc}): {self}") from exc

    def _pack_into(self, buf: bytearray | memoryview) -> None:
        _INODE.pack_into(
            buf,
            0,
            self.mode,
            self.uid,
            self.size_lo,
            self.atime,
            self.ctime,
            self.mtime,
            self.dtime,
            self.gid,
            self.links_count,
            self.blocks,
            self.flags,
            self.osd1,
            *self.block,
            self.generation,
            self.file_acl,
            self.size_high,
            self.faddr,
            self.osd2,
        )

    @property
    def fmt(self) -> int:
        return self.mode & S_IFMT

    def size(self) -> int:
        """i_size: 64 bits for regular files (large_file), 32 for the rest, as
        Linux's ext2 reads it (elsewhere the high word is i_dir_acl)."""
        if self.fmt == S_IFREG:
            return self.size_lo | self.size_high << 32
        return self.size_lo


# -- directory entries -----------------------------------------------------------------

DIRENT_HEADER = 8


def rec_len_for(name_len: int) -> int:
    """The smallest record holding a name this long (EXT2_DIR_REC_LEN)."""
    return (DIRENT_HEADER + name_len + 3) & ~3


@dataclass
class DirEntry:
    offset: int  # within its block
    inode: int
    rec_len: int
    name_len: int
    file_type: int
    name: bytes


def parse_dir_block(
    data: bytes | memoryview, block_size: int, inodes_count: int, filetype: bool, where: str
) -> list[DirEntry]:
    """Every record of one directory block, in order.  The rules are those of
    Linux's ext2_check_page: a record is 4-byte aligned, at least a header
    long, long enough for its name, inside its block, and names a real inode."""
    out: list[DirEntry] = []
    off = 0
    while off < block_size:
        if block_size - off < DIRENT_HEADER:
            raise Corrupt(f"{where}: a directory entry at offset {off} runs past the block's end")
        ino, rec_len, name_len, ftype = struct.unpack_from("<IHBB", data, off)
        if not filetype:
            name_len |= ftype << 8
            ftype = FT_UNKNOWN
        if rec_len < DIRENT_HEADER or rec_len % 4:
            raise Corrupt(f"{where}: entry at offset {off} has a bad record length {rec_len}")
        if off + rec_len > block_size:
            raise Corrupt(
                f"{where}: entry at offset {off} (record length {rec_len}) crosses the "
                f"end of its {block_size}-byte block"
            )
        if ino and rec_len < rec_len_for(name_len):
            raise Corrupt(
                f"{where}: entry at offset {off} has a {name_len}-byte name in a "
                f"{rec_len}-byte record"
            )
        if ino > inodes_count:
            raise Corrupt(
                f"{where}: entry at offset {off} names inode {ino}, but the filesystem "
                f"has {inodes_count}"
            )
        if ino and not name_len:
            raise Corrupt(f"{where}: entry at offset {off} names inode {ino} with an empty name")
        name = bytes(data[off + DIRENT_HEADER : off + DIRENT_HEADER + name_len]) if ino else b""
        out.append(DirEntry(off, ino, rec_len, name_len, ftype, name))
        off += rec_len
    return out


def pack_dirent(
    buf: bytearray | memoryview, off: int, ino: int, rec_len: int, name: bytes, ftype: int
) -> None:
    struct.pack_into("<IHBB", buf, off, ino, rec_len, len(name), ftype)
    buf[off + DIRENT_HEADER : off + DIRENT_HEADER + len(name)] = name


def set_rec_len(buf: bytearray | memoryview, off: int, rec_len: int) -> None:
    struct.pack_into("<H", buf, off + 4, rec_len)


def set_dirent_inode(buf: bytearray | memoryview, off: int, ino: int, ftype: int) -> None:
    struct.pack_into("<I", buf, off, ino)
    struct.pack_into("<B", buf, off + 7, ftype)


def dir_entry_type(mode: int, filetype: bool) -> int:
    return FT_BY_FMT.get(mode & S_IFMT, FT_UNKNOWN) if filetype else FT_UNKNOWN
