"""Files: a file's sha256, a member out of a ``.tar.gz``, and publishing a file atomically (written
beside the target, then renamed)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HASH_CHUNK = 8 * 2**20  # bytes read at a time when hashing


def sha256_of(path: Path | str) -> str:
    """Hex sha256 of the whole file at ``path`` (read in chunks; OSError as ``open`` raises it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract_tar_member(archive: Path | str, member: str, target: Path | str) -> Path:
    """Copy the regular file ``member`` of the ``.tar.gz`` ``archive`` to ``target``, streamed (the
    members are read in order and the search stops at ours). KeyError when it holds no such file;
    tarfile.TarError, gzip.BadGzipFile or EOFError when the archive is broken."""
    import shutil
    import tarfile  # here: weights (and so every run's settings) import this module

    with tarfile.open(archive, "r|gz") as tar:
        for info in tar:
            if info.name == member and info.isfile():
                source = tar.extractfile(info)
                assert source is not None
                with source, open(target, "wb") as dst:
                    shutil.copyfileobj(source, dst)
                return Path(target)
    raise KeyError(member)


def publish(tmp_path: Path | str, target: Path | str) -> None:
    """Rename a finished temporary file over ``target`` with the mode of an ordinary new file.

    ``tempfile`` creates files 0600; published results (weights read by the image's unprivileged
    user, JSON for other tools) get 0666 minus the umask, as ``open(..., "w")`` would.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    os.replace(tmp_path, target)
