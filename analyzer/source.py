"""Where a video comes from: a local file, or an S3 object downloaded to a private temp file.

``head_input`` tells the input's fingerprint cheaply (an S3 HEAD, or hashing a local file), so the
runner can skip a video that already succeeded before downloading anything. ``fetch_input`` is a
context manager that yields a ``LocalInput`` and, for S3, removes the downloaded file afterwards.

Fingerprints: ``etag:<etag>:size:<bytes>`` for S3 (the ETag without quotes), and
``sha256:<hex>:size:<bytes>`` for local files.

S3 errors are translated here, once: a missing object, bucket or file -> ``InputNotFound``; 403,
bad credentials -> ``AccessDenied``; an unreachable endpoint, timeouts, throttling, 5xx ->
``InfrastructureError`` (retryable). botocore retries transient failures itself (``standard``
retry mode) before that.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzer.errors import AccessDenied, AnalyzerError, InfrastructureError, InputNotFound
from analyzer.files import sha256_of

logger = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})
DENIED_CODES = frozenset({
    "403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "AllAccessDisabled", "AccountProblem", "InvalidToken", "ExpiredToken", "InvalidObjectState",
})


@dataclass(frozen=True)
class S3Config:
    """Client tuning: timeouts in seconds, attempts (botocore ``standard`` retries), transfer.

    Objects of ``multipart_threshold`` bytes or more download as concurrent ranged GETs of
    ``part_size`` bytes, ``max_concurrency`` at a time.
    """

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_attempts: int = 5
    multipart_threshold: int = 16 * 1024 * 1024
    part_size: int = 16 * 1024 * 1024
    max_concurrency: int = 8


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
    """What a HEAD learned: the fingerprint and size, plus the ETag to pin the download to."""

    ref: InputRef
    fingerprint: str
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class LocalInput:
    """A readable local copy of the input. ``size`` is in bytes."""

    path: Path
    fingerprint: str
    size: int


def parse_input(video_key: str, bucket: str | None) -> InputRef:
    """``s3://bucket/key`` -> S3; a key with ``bucket`` -> S3; otherwise a local path."""
    if video_key.startswith("s3://"):
        uri_bucket, _, key = video_key[len("s3://"):].partition("/")
        if not uri_bucket or not key:
            raise InputNotFound(f"input {video_key}: an s3:// URI needs a bucket and a key")
        return InputRef(bucket=uri_bucket, key=key, path=None)
    if bucket:
        return InputRef(bucket=bucket, key=video_key, path=None)
    return InputRef(bucket=None, key=None, path=Path(video_key))


def make_s3_client(
    endpoint_url: str | None = None,
    config: S3Config | None = None,
    *,
    session: Any | None = None,
) -> Any:
    """A boto3 S3 client: region from ``AWS_REGION``/``AWS_DEFAULT_REGION`` (else us-east-1),
    credentials from the usual chain (or ``session``), botocore ``standard`` retries."""
    import boto3
    from botocore.config import Config

    config = config or S3Config()
    session = session or boto3.session.Session()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or session.region_name
    botocore_config = Config(
        region_name=region or DEFAULT_REGION,
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
        retries={"mode": "standard", "max_attempts": config.max_attempts},
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return session.client("s3", endpoint_url=endpoint_url, config=botocore_config)


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
    """Like ``head_input``, with the size and ETag too."""
    ref = parse_input(video_key, bucket)
    if not ref.is_s3:
        return _head_local(ref)
    client = client or make_s3_client(endpoint_url, config)
    with _s3_errors(ref):
        reply = client.head_object(Bucket=ref.bucket, Key=ref.key)
    etag = str(reply["ETag"]).strip('"')
    size = int(reply["ContentLength"])
    return InputHead(ref=ref, fingerprint=f"etag:{etag}:size:{size}", size=size, etag=etag)


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
    fingerprint names. Local files are used in place, never deleted.
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
    logger.info("input %s: downloading %d bytes", ref, head.size)
    with _s3_errors(ref):
        client.download_file(ref.bucket, ref.key, str(path), Config=transfer)
    after = stat_input(str(ref), None, client=client)
    _check_unchanged(after, head.fingerprint)
    size = path.stat().st_size
    if size != head.size:
        raise InfrastructureError(f"input {ref}: downloaded {size} bytes, expected {head.size}")


def _head_local(ref: InputRef) -> InputHead:
    path = ref.path
    assert path is not None
    try:
        size = path.stat().st_size
        digest = sha256_of(path)
    except FileNotFoundError as exc:
        raise InputNotFound(f"input {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputNotFound(f"input {path}: is a directory, not a file") from exc
    except PermissionError as exc:
        raise AccessDenied(f"input {path}: permission denied") from exc
    return InputHead(ref=ref, fingerprint=f"sha256:{digest}:size:{size}", size=size)


def _local_input(head: InputHead) -> LocalInput:
    assert head.ref.path is not None
    return LocalInput(path=head.ref.path, fingerprint=head.fingerprint, size=head.size)


@contextmanager
def _s3_errors(ref: InputRef) -> Iterator[None]:
    """Translate botocore/s3transfer exceptions into the project's, naming the object."""
    from botocore import exceptions as bce
    from s3transfer.exceptions import RetriesExceededError

    try:
        yield
    except AnalyzerError:
        raise
    except bce.ClientError as exc:
        raise _client_error(ref, exc) from exc
    except (bce.NoCredentialsError, bce.PartialCredentialsError) as exc:
        raise InfrastructureError(f"input {ref}: no usable AWS credentials ({exc})") from exc
    except (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ReadTimeoutError) as exc:
        raise InfrastructureError(f"input {ref}: S3 unreachable ({exc})") from exc
    except (bce.BotoCoreError, RetriesExceededError, ConnectionError, TimeoutError) as exc:
        raise InfrastructureError(f"input {ref}: S3 transfer failed ({exc})") from exc


def _client_error(ref: InputRef, exc: Any) -> AnalyzerError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in NOT_FOUND_CODES or status == 404:
        what = "bucket" if code == "NoSuchBucket" else "object"
        return InputNotFound(f"input {ref}: no such {what} ({code or status})")
    if code in DENIED_CODES or status == 403:
        return AccessDenied(f"input {ref}: access denied ({code or status})")
    if code in ("PreconditionFailed", "412") or status == 412:
        return InfrastructureError(f"input {ref}: the object changed while it was being fetched")
    return InfrastructureError(f"input {ref}: S3 error {code or status}")
