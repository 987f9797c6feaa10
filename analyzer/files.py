"""A local input's sha256: regular files only, bounded by their size (``models.files`` hashes and
publishes ordinary files)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from models.files import HASH_CHUNK


class FileChanged(OSError):
    """The file's size changed while it was being read."""


def sha256_of_regular_file(path: Path | str) -> tuple[str, int]:
    """Hex sha256 and size of a regular file, read from one descriptor and bounded by its size.

    Anything else is refused before a byte is read: a FIFO or a character device (``/dev/zero``)
    would be read forever. The file is checked with ``stat`` before it is opened (opening some
    devices has effects) and again with ``fstat`` on the descriptor (it may have been swapped);
    it is opened non-blocking, so a FIFO never waits for a writer.

    Args:
        path: the file.

    Returns:
        ``(hex digest, size in bytes)``.

    Raises:
        ValueError: not a regular file (FIFO, device, socket).
        IsADirectoryError, FileNotFoundError, PermissionError: as ``open`` raises them.
        FileChanged: it grew or shrank while it was read.
    """
    _require_regular(os.stat(path), path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as handle:
        size = _require_regular(os.fstat(fd), path).st_size
        digest, read = hashlib.sha256(), 0
        while read <= size and (chunk := handle.read(min(HASH_CHUNK, size + 1 - read))):
            digest.update(chunk)
            read += len(chunk)
    if read != size:
        raise FileChanged(f"size changed while it was read ({size} bytes, then {read}{'+' if read > size else ''})")
    return digest.hexdigest(), size


def _require_regular(status: os.stat_result, path: Path | str) -> os.stat_result:
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(21, "Is a directory", str(path))
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"not a regular file ({_kind(status.st_mode)})")
    return status


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"
