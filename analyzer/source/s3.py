"""S3, once: ``s3://`` URIs, bucket and key checks, the client, and translating S3 errors.

The worker, the SQS dispatcher, backfill manifests and ``analyzer submit`` all parse locations
and translate boto3/botocore/s3transfer failures here, so that one kind of trouble has one exit
code wherever it happens (``analyzer.errors``):

- missing object or bucket -> ``InputNotFound`` (3; callers reading a setting may ask for
  ``SettingsError``), naming which of the two is missing;
- refused -> ``AccessDenied`` (4); expired temporary credentials are retried instead (75);
- a request S3 or botocore refuses as malformed: an invalid bucket name -> ``SettingsError`` (2),
  an invalid key (S3's 400 for ``../../etc/passwd``, a key too long) -> ``InputNotFound`` (3);
- unreachable, timeouts, throttling, 5xx, and an object replaced while it was read (412, or
  s3transfer's ``S3DownloadFailedError``) -> ``InfrastructureError`` (75, retried).

Nothing heavy is imported at module level: the worker's settings and the dispatcher's Lambda
zip load this module; boto3 and botocore are imported where a client is made or an error caught.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from analyzer.errors import (
    AccessDenied,
    AnalyzerError,
    InfrastructureError,
    InputNotFound,
    SettingsError,
)

S3_SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"
MAX_KEY_BYTES = 1024  # S3's limit on an object key (UTF-8)
# What botocore accepts as a bucket (its VALID_BUCKET; legacy us-east-1 names allow _ and capitals),
# or an access-point / Outposts ARN, which botocore checks itself.
_BUCKET = re.compile(r"[A-Za-z0-9.\-_]{1,255}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1: never part of an uploaded file's key

NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})
DENIED_CODES = frozenset(
    {
        "403",
        "AccessDenied",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidToken",
        "InvalidObjectState",
    }
)
# Temporary credentials (a role's) that ran out: the next attempt's are fresh, so retry.
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"})
CHANGED_CODES = frozenset({"PreconditionFailed", "412"})
# 400s that say nothing about the key: a retry (or botocore's own) can succeed.
TRANSIENT_400_CODES = frozenset(
    {
        "RequestTimeout",
        "IncompleteBody",
        "BadDigest",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
    }
)
SETTINGS_400_CODES = frozenset({"InvalidBucketName", "AuthorizationHeaderMalformed"})


# --- locations --------------------------------------------------------------------------------


def is_s3_uri(text: str) -> bool:
    """Whether ``text`` is meant as an ``s3://`` URI (anything else is a key or a local path)."""
    return text.startswith(S3_SCHEME)


def check_bucket(name: str) -> str:
    """A bucket name botocore will send (letters, digits, ``.-_``), or an ARN botocore checks.

    Raises:
        ValueError: naming what is wrong, for the caller to prefix with where the name came from.
    """
    if name.startswith("arn:") and not _CONTROL.search(name) and " " not in name:
        return name
    if not _BUCKET.fullmatch(name):
        raise ValueError(f"invalid S3 bucket name {name!r} (letters, digits, '.', '-', '_')")
    return name


def check_key(key: str) -> str:
    """An object key that can be passed on safely (job environment, tags, logs).

    Raises:
        ValueError: for an empty key, one over 1024 UTF-8 bytes, or one with control characters
            (a NUL byte would truncate the job's environment; newlines forge log lines).
    """
    if not key:
        raise ValueError("empty S3 key")
    if _CONTROL.search(key):
        raise ValueError(f"S3 key {key!r} contains control characters")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ValueError(f"S3 key longer than {MAX_KEY_BYTES} bytes")
    return key


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``, both checked.

    Raises:
        SettingsError: for anything that is not ``s3://<valid bucket>/<valid key>``.
    """
    if not is_s3_uri(uri):
        raise SettingsError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket or not key:
        raise SettingsError(f"s3 URI needs a bucket and a key: {uri!r}")
    try:
        return check_bucket(bucket), check_key(key)
    except ValueError as exc:
        raise SettingsError(f"s3 URI {uri!r}: {exc}") from None


# --- the client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Config:
    """Client tuning: timeouts in seconds, requests per call, transfer.

    ``max_attempts`` counts the first request and botocore's ``standard`` retries. Objects of
    ``multipart_threshold`` bytes or more download as concurrent ranged GETs of ``part_size``
    bytes, ``max_concurrency`` at a time.
    """

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_attempts: int = 5
    multipart_threshold: int = 16 * 1024 * 1024
    part_size: int = 16 * 1024 * 1024
    max_concurrency: int = 8


def make_s3_client(
    endpoint_url: str | None = None,
    config: S3Config | None = None,
    *,
    session: Any | None = None,
) -> Any:
    """A boto3 S3 client with botocore ``standard`` retries.

    Args:
        endpoint_url: an S3-compatible server (path-style addressing); None for AWS.
        config: timeouts and attempts (``S3Config()`` when None).
        session: a boto3 session (default: a new one with the usual credential chain).

    Returns:
        The client; its region is ``AWS_REGION``/``AWS_DEFAULT_REGION``, else us-east-1.
    """
    import boto3
    from botocore.config import Config

    config = config or S3Config()
    session = session or boto3.session.Session()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or session.region_name
    botocore_config = Config(
        region_name=region or DEFAULT_REGION,
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
        retries={"mode": "standard", "total_max_attempts": config.max_attempts},  # the first request counts
        s3={"addressing_style": "path"} if endpoint_url else {},
    )
    return session.client("s3", endpoint_url=endpoint_url, config=botocore_config)


def default_s3_client() -> Any:
    """The worker's S3 client, honouring ``S3_ENDPOINT_URL`` (an S3-compatible server; unset on AWS)."""
    return make_s3_client(os.environ.get("S3_ENDPOINT_URL") or None)


# --- errors -----------------------------------------------------------------------------------


@contextmanager
def s3_errors(what: str, not_found: type[AnalyzerError] = InputNotFound) -> Iterator[None]:
    """Translate boto3/botocore/s3transfer exceptions raised in the block (see ``translate``).

    Args:
        what: how the message starts, e.g. ``"input s3://bucket/key"``.
        not_found: the error for a missing object or bucket.
    """
    try:
        yield
    except AnalyzerError:
        raise
    except Exception as exc:
        translated = translate(exc, what, not_found)
        if translated is None:
            raise
        raise translated from exc


def translate(exc: BaseException, what: str, not_found: type[AnalyzerError] = InputNotFound) -> AnalyzerError | None:
    """The project error for an exception of an S3 call; None when it is not an S3 failure (a bug).

    Args:
        exc: what boto3, botocore or s3transfer raised.
        what: how the message starts, e.g. ``"manifest s3://bucket/key"``.
        not_found: the error for a missing object or bucket.
    """
    from boto3 import exceptions as b3e
    from botocore import exceptions as bce
    from s3transfer import exceptions as s3te

    if isinstance(exc, (b3e.S3TransferFailedError, b3e.S3UploadFailedError)) and isinstance(
        exc.__context__, bce.ClientError
    ):  # boto3 wraps the ClientError of a transfer
        exc = exc.__context__
    if isinstance(exc, bce.ClientError):
        return _client_error(exc, what, not_found)
    if isinstance(exc, bce.ParamValidationError):  # botocore refused to send it: ours to fix
        reason = " ".join(str(exc).split())
        return SettingsError(f"{what}: invalid S3 request ({reason})")
    if isinstance(exc, s3te.S3DownloadFailedError):  # a ranged GET's IfMatch failed: replaced
        return InfrastructureError(f"{what}: the object changed while it was being downloaded")
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError)):
        return InfrastructureError(f"{what}: no usable AWS credentials ({exc})")
    if isinstance(exc, (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ReadTimeoutError)):
        return InfrastructureError(f"{what}: S3 unreachable ({exc})")
    if isinstance(
        exc,
        (
            bce.BotoCoreError,
            b3e.RetriesExceededError,
            s3te.RetriesExceededError,
            b3e.S3TransferFailedError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return InfrastructureError(f"{what}: S3 transfer failed ({exc})")
    return None


def error_code(exc: Any) -> tuple[str, int]:
    """The S3 error code (``"404"`` for a HEAD, which has no body) and the HTTP status."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code or str(status), status


def _client_error(exc: Any, what: str, not_found: type[AnalyzerError]) -> AnalyzerError:
    code, status = error_code(exc)
    if code == "NoSuchBucket":
        bucket = exc.response.get("Error", {}).get("BucketName")
        return not_found(f"{what}: no such bucket{f' {bucket}' if bucket else ''} ({code})")
    if code in NOT_FOUND_CODES or status == 404:
        return not_found(f"{what}: no such object ({code})")
    if code in EXPIRED_CODES:
        return InfrastructureError(f"{what}: the AWS credentials expired ({code})")
    if code in DENIED_CODES or status == 403:
        return AccessDenied(f"{what}: access denied ({code})")
    if code in CHANGED_CODES or status == 412:
        return InfrastructureError(f"{what}: the object changed while it was being fetched")
    if code in SETTINGS_400_CODES:
        return SettingsError(f"{what}: S3 refused the request ({code})")
    if status == 400 and code not in TRANSIENT_400_CODES:  # the key itself is refused
        return InputNotFound(f"{what}: S3 refused the key as invalid ({code})")
    return InfrastructureError(f"{what}: S3 error {code}")


def head_object(
    client: Any, bucket: str, key: str, what: str, not_found: type[AnalyzerError] = InputNotFound
) -> dict[str, Any]:
    """``HeadObject``, errors translated, saying which of bucket and object is missing.

    A HEAD's error has no body, so its 404 cannot tell a missing bucket from a missing key, nor
    its 400 an invalid key from, say, an expired token. Those two cases (only they) are asked
    again with a one-byte GET, whose error code says (``NoSuchBucket``, ``NoSuchKey``,
    ``InvalidRequest``...; s3:GetObject is the only permission it needs).

    Raises:
        AnalyzerError: as ``translate`` says; ``InfrastructureError`` if the object appeared
            between the two requests (a retry sees it).
    """
    from botocore.exceptions import ClientError

    with s3_errors(what, not_found):
        try:
            return client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc)[1] not in (400, 404):
                raise
        client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].close()
        raise InfrastructureError(f"{what}: refused at first, then found; retry")
