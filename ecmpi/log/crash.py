"""Ending the log of a writer that was killed: status ``failed``, rows and checkpoints kept.

A process killed by a signal cannot write its own log's status; the log watcher
(:mod:`ecmpi.watcher`) calls :func:`mark_killed` for it. The killed writer leaves the
file in SWMR write mode: "open for write" flags in its superblock (version 2 or 3),
with which the HDF5 library refuses to open the file for writing. They are cleared
in place first, as ``h5clear -s`` does; nothing else in the file is rewritten. The
superblock layout (HDF5 File Format Specification, section II.A, version 2/3)::

    0  signature "\\x89HDF\\r\\n\\x1a\\n"    8  version      9  size of offsets
    10 size of lengths                    11 consistency flags
    12 four addresses (base, extension, end of file, root object header)
    12 + 4 * size_of_offsets: Jenkins lookup3 checksum of all bytes before it

Only a superblock at offset 0 (no user block) is handled, which is how
:class:`ecmpi.log.TrajectoryWriter` creates its files.
"""

from __future__ import annotations

import os

from ._files import open_for_update, open_read
from .schema import decode_attr, utc_now

__all__ = ["clear_consistency_flags", "file_identity", "lookup3", "mark_killed"]


def file_identity(path: str | os.PathLike | int) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of a log (a path or an open descriptor): a new run or a
    resume writes a new file (inode)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def mark_killed(path: str | os.PathLike, message: str, *, identity: tuple[int, int]) -> bool:
    """End a log whose writer died (killed by a signal): status ``failed``, ``stop_reason``
    ``killed``, ``message``; rows and checkpoints stay as they are (resumable).

    Acts only on the file that still is ``identity`` (see :func:`file_identity`) and
    still says ``running``: a log that a later run or a resume replaced, or that its
    writer closed, is left alone. The dead writer's "open for write" flags are
    cleared first (what ``h5clear -s`` does), in place: nothing is rewritten.

    Raises:
        ValueError: not an HDF5 file whose superblock can be checked (left untouched).
        SchemaError: not a readable ecmpi log.

    Returns:
        True if the log was marked.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False
    try:
        if file_identity(fd) != tuple(identity):
            return False
        # first, so that a writer killed before SWMR (flags that no reader gets past)
        # leaves a file that opens; a closed file has no flags and stays untouched
        clear_consistency_flags(fd)
        with open_read(path) as f:
            if decode_attr(f.attrs.get("status")) != "running":
                return False
        with open_for_update(path) as f:
            if file_identity(f.id.get_vfd_handle()) != tuple(identity):  # replaced meanwhile
                return False
            f.attrs["finished_at"] = utc_now()
            f.attrs["stop_reason"] = "killed"
            f.attrs["message"] = str(message)
            f.attrs["status"] = "failed"
        return True
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# the superblock's consistency flags
# ---------------------------------------------------------------------------------------
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FLAGS_AT = 11
_MASK = 0xFFFFFFFF


# lookup3's mix(): x -= z; x ^= rot(z, k); z += y, for (x, y, z, k) over registers a=0, b=1, c=2
_MIX = ((0, 1, 2, 4), (1, 2, 0, 6), (2, 0, 1, 8), (0, 1, 2, 16), (1, 2, 0, 19), (2, 0, 1, 4))
# lookup3's final(): z ^= y; z -= rot(y, k), for (z, y, k)
_FINAL = ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24))


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def _add_words(v: list[int], block: bytes) -> None:
    for j in range(3):
        v[j] = (v[j] + int.from_bytes(block[4 * j : 4 * j + 4], "little")) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' ``hashlittle`` (lookup3.c), the checksum of HDF5 metadata."""
    n = len(data)
    v = [(0xDEADBEEF + n + initval) & _MASK] * 3
    i = 0
    while n - i > 12:
        _add_words(v, data[i : i + 12])
        for x, y, z, k in _MIX:
            v[x] = (v[x] - v[z]) & _MASK
            v[x] ^= _rot(v[z], k)
            v[z] = (v[z] + v[y]) & _MASK
        i += 12
    if i == n:
        return v[2]
    _add_words(v, data[i:] + bytes(12 - (n - i)))
    for z, y, k in _FINAL:
        v[z] ^= v[y]
        v[z] = (v[z] - _rot(v[y], k)) & _MASK
    return v[2]


def clear_consistency_flags(fd: int) -> bool:
    """Zero the consistency flags of the HDF5 file open (read-write) as ``fd``.

    Returns:
        True if flags were set and are now cleared; False if they were clear already.

    Raises:
        ValueError: not an HDF5 file with a version 2/3 superblock at offset 0, or its
            superblock checksum does not match (the file is left untouched).
    """
    head = os.pread(fd, 12, 0)
    if len(head) < 12 or head[:8] != _SIGNATURE:
        raise ValueError("not an HDF5 file (no superblock signature at offset 0)")
    if head[8] not in (2, 3):
        raise ValueError(f"HDF5 superblock version {head[8]} has no consistency flags to clear")
    size = 12 + 4 * head[9]
    block = os.pread(fd, size + 4, 0)
    if len(block) < size + 4 or lookup3(block[:size]) != int.from_bytes(block[size:], "little"):
        raise ValueError("HDF5 superblock checksum mismatch; not touching the file")
    if block[_FLAGS_AT] == 0:
        return False
    new = block[:_FLAGS_AT] + b"\x00" + block[_FLAGS_AT + 1 : size]
    os.pwrite(fd, new + lookup3(new).to_bytes(4, "little"), 0)
    os.fsync(fd)
    return True
