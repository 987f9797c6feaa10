"""Where a video comes from: a local file, or an S3 object downloaded to a private temp file.

``head_input`` tells the input's fingerprint cheaply (an S3 HEAD, or hashing a local file), so the
runner can skip a video that already succeeded before downloading anything. ``fetch_input`` is a
context manager that yields a ``LocalInput`` and, for S3, removes the downloaded file afterwards.

Fingerprints: ``etag:<etag>:size:<bytes>`` for S3 (the ETag without quotes), and
``sha256:<hex>:size:<bytes>`` for local files.

S3 locations, the client and error translation are ``analyzer.source.s3``'s; a local input must be a
regular file (a FIFO or a device would be read forever while the lock is held), refused otherwise
as bad input (``InputNotFound``, exit 3), and it is hashed from one open descriptor, at most the
size it had when opened (a file that changes while it is hashed is retried: ``InfrastructureError``).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import AccessDenied, InfrastructureError, InputNotFound, SettingsError
from analyzer.files import FileChanged, sha256_of_regular_file
from analyzer.source.s3 import (
    S3Config,
    check_bucket,
    check_key,
    head_object,
    is_s3_uri,
    make_s3_client,
    s3_errors,
    split_s3_uri,
)

logger = logging.getLogger(__name__)
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# A path that can never name a file, whatever a retry does: bad input (exit 3), not a bug (9)
_BAD_PATH = frozenset({errno.ELOOP, errno.ENOTDIR, errno.ENAMETOOLONG})


@dataclass(frozen=True)
class InputRef:
    """A parsed input location: ``bucket``/``key`` for S3, ``path`` for a local file."""

    bucket: str | None
    key: str | None
    path: Path | None

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.is_s3 else str(self.path)


@dataclass(frozen=True)
class InputHead:
    """What a HEAD learned: the fingerprint and the size in bytes.

    The download is pinned to the same object by s3transfer's own HEAD and ``IfMatch`` on ranged
    GETs, and checked against this fingerprint afterwards (``fetch_input``).
    """

    ref: InputRef
    fingerprint: str
    size: int


@dataclass(frozen=True)
class LocalInput:
    """A readable local copy of the input. ``size`` is in bytes."""

    path: Path
    fingerprint: str
    size: int


def parse_input(video_key: str, bucket: str | None) -> InputRef:
    """``s3://bucket/key`` -> S3; a key with ``bucket`` -> S3; otherwise a local path.

    Raises:
        SettingsError: for a malformed URI, an invalid bucket name, or a key S3 could never serve
            (empty, control characters, over 1024 bytes).
    """
    if is_s3_uri(video_key):
        uri_bucket, key = split_s3_uri(video_key)
        return InputRef(bucket=uri_bucket, key=key, path=None)
    if bucket:
        try:
            return InputRef(bucket=check_bucket(bucket), key=check_key(video_key), path=None)
        except ValueError as exc:
            raise SettingsError(f"input: {exc}") from None
    return InputRef(bucket=None, key=None, path=Path(video_key))


def head_input(
    video_key: str,
    bucket: str | None,
    endpoint_url: str | None = None,
    *,
    config: S3Config | None = None,
    client: Any | None = None,
) -> str:
    """The input's fingerprint without downloading it (an S3 HEAD; local files are hashed)."""
    return stat_input(video_key, bucket, endpoint_url, config=config, client=client).fingerprint


def stat_input(
    video_key: str,
    bucket: str | None,
    endpoint_url: str | None = None,
    *,
    config: S3Config | None = None,
    client: Any | None = None,
) -> InputHead:
    """Like ``head_input``, with the location and the size too."""
    ref = parse_input(video_key, bucket)
    if not ref.is_s3:
        return _head_local(ref)
    client = client or make_s3_client(endpoint_url, config)
    reply = head_object(client, ref.bucket, ref.key, f"input {ref}")
    etag = str(reply["ETag"]).strip('"')
    size = int(reply["ContentLength"])
    return InputHead(ref=ref, fingerprint=f"etag:{etag}:size:{size}", size=size)


@contextmanager
def fetch_input(
    video_key: str,
    bucket: str | None,
    endpoint_url: str | None = None,
    workdir: Path | None = None,
    *,
    config: S3Config | None = None,
    client: Any | None = None,
    fingerprint: str | None = None,
) -> Iterator[LocalInput]:
    """Yield a local copy of the input; an S3 download is deleted when the block ends.

    The download goes to a file named by ``tempfile`` (never derived from the key) in ``workdir``
    (default: the system temp dir). An object that changes between the HEAD made here (or the
    ``fingerprint`` from an earlier ``head_input``) and the end of the download raises
    ``InfrastructureError`` (a retry sees the new one), so the bytes analysed are the ones the
    fingerprint names. So does a disk too small (checked before the transfer) or filling up during
    it: another attempt may have room. Local files are used in place, never deleted.
    """
    ref = parse_input(video_key, bucket)
    if not ref.is_s3:
        head = _head_local(ref)
        _check_unchanged(head, fingerprint)
        yield _local_input(head)
        return
    config = config or S3Config()
    client = client or make_s3_client(endpoint_url, config)
    head = stat_input(video_key, bucket, config=config, client=client)
    _check_unchanged(head, fingerprint)
    fd, name = tempfile.mkstemp(prefix="video-", suffix=".part", dir=workdir)
    os.close(fd)
    path = Path(name)
    try:
        _download(client, ref, head, path, config)
        yield LocalInput(path=path, fingerprint=head.fingerprint, size=head.size)
    finally:
        path.unlink(missing_ok=True)
        logger.debug("input %s: removed temp file %s", ref, path)


def _check_unchanged(head: InputHead, fingerprint: str | None) -> None:
    if fingerprint is not None and head.fingerprint != fingerprint:
        raise InfrastructureError(
            f"input {head.ref}: changed since it was checked ({fingerprint} -> {head.fingerprint})"
        )


def _download(client: Any, ref: InputRef, head: InputHead, path: Path, config: S3Config) -> None:
    """Download ``ref`` into ``path`` (concurrent ranged parts for large objects), then check with
    a second HEAD that the object is still the one ``head`` describes."""
    from boto3.s3.transfer import TransferConfig

    transfer = TransferConfig(
        multipart_threshold=config.multipart_threshold,
        multipart_chunksize=config.part_size,
        max_concurrency=config.max_concurrency,
        use_threads=True,
    )
    _check_space(ref, path.parent, head.size)
    logger.info("input %s: downloading %d bytes", ref, head.size)
    try:
        with s3_errors(f"input {ref}"):
            client.download_file(ref.bucket, ref.key, str(path), Config=transfer)
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise InfrastructureError(f"input {ref}: the local disk filled up during the download ({exc})") from exc
    after = stat_input(str(ref), None, client=client)
    _check_unchanged(after, head.fingerprint)
    size = path.stat().st_size
    if size != head.size:
        raise InfrastructureError(f"input {ref}: downloaded {size} bytes, expected {head.size}")


def _check_space(ref: InputRef, folder: Path, size: int) -> None:
    """A host whose disk cannot hold the input fails before the transfer, retryably (another
    attempt may land on another host), rather than as a bug after gigabytes."""
    free = shutil.disk_usage(folder).free
    if free < size:
        raise InfrastructureError(f"input {ref}: {size} bytes do not fit in the {free} bytes free in {folder}")


def _head_local(ref: InputRef) -> InputHead:
    path = ref.path
    assert path is not None
    try:
        digest, size = sha256_of_regular_file(path)
    except FileNotFoundError as exc:
        raise InputNotFound(f"input {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputNotFound(f"input {path}: is a directory, not a file") from exc
    except PermissionError as exc:
        raise AccessDenied(f"input {path}: permission denied") from exc
    except FileChanged as exc:
        raise InfrastructureError(f"input {path}: {exc}") from exc
    except ValueError as exc:  # a FIFO, a device, a socket
        raise InputNotFound(f"input {path}: {exc}") from exc
    except OSError as exc:
        if exc.errno not in _BAD_PATH:
            raise
        raise InputNotFound(f"input {path}: {exc.strerror} (a symlink loop or a file used as a folder)") from exc
    return InputHead(ref=ref, fingerprint=f"sha256:{digest}:size:{size}", size=size)


def _local_input(head: InputHead) -> LocalInput:
    assert head.ref.path is not None
    return LocalInput(path=head.ref.path, fingerprint=head.fingerprint, size=head.size)
