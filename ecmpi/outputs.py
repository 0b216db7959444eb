"""Checks on a file a command is about to write, so that no input is ever replaced.

One rule for every output (``ecmpi run --out``, ``ecmpi analyze --out/--plot``,
``ecmpi bench ... --out``): :func:`check_output` refuses

- an output that is one of the command's inputs (the same resolved path, or the same
  file by identity ``(st_dev, st_ino)``: a hard link or a symlink is caught too);
- an existing file that is not a regular file (``/dev/null``, a directory, a FIFO):
  writing a log replaces the file, which would replace a device by a regular file;
- an existing HDF5 file where the output is a table or figure (``refuse_hdf5``): an
  ecmpi log is never replaced by a text file;
- an existing file without ``overwrite`` (where the command has such an option).

Each refusal is a :class:`~ecmpi.errors.UsageError` (exit status 2).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from .errors import UsageError

__all__ = ["check_output", "same_file"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (resolved path or ``(st_dev, st_ino)``)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _is_hdf5(path: str | os.PathLike) -> bool:
    """HDF5's signature at offset 0, 512, 1024, ... (the places the format allows)."""
    try:
        with open(path, "rb") as fh:
            offset = 0
            size = os.fstat(fh.fileno()).st_size
            while offset + 8 <= size:
                fh.seek(offset)
                if fh.read(8) == _HDF5_SIGNATURE:
                    return True
                offset = 512 if offset == 0 else 2 * offset
    except OSError:
        return False
    return False


def check_output(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool | None = None,
    refuse_hdf5: bool = False,
    option: str = "--out",
) -> None:
    """Refuse to write ``path`` where that would replace an input (module docstring).

    Args:
        path: the output file.
        inputs: the files the command reads (None entries are skipped).
        overwrite: False refuses any existing file (the message names ``--overwrite``);
            None: the command has no such option.
        refuse_hdf5: refuse an existing HDF5 file (for a table or figure output).
        option: the option's name for the message.

    Raises:
        UsageError: the reason, naming the file.
    """
    p = Path(path)
    for src in inputs:
        if src is not None and same_file(p, src):
            raise UsageError(
                f"{option} {p} is an input of this command ({src}); refusing to overwrite it"
            )
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"{option} {p}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UsageError(f"{option} {p} is {kind}; refusing to replace it")
    if refuse_hdf5 and _is_hdf5(p):
        raise UsageError(f"{option} {p} is an HDF5 file (an ecmpi log?); refusing to replace it")
    if overwrite is False:
        raise UsageError(f"{option} {p} exists; pass --overwrite to replace it")
