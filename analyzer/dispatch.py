"""AWS Lambda dispatcher: SQS batches of S3 upload events -> one AWS Batch job per video.

S3 and SQS deliver at least once, so one upload can arrive as several messages (the incident:
the web app's message saying ``video 84`` and S3's own event for the same key). The dispatcher
therefore never guesses, and submits one job per video per batch:

1. ``video_id`` comes, in this order, from the message body's ``video.id``; the ``video_id``
   message attribute; another message of the same batch that names the same object with an id;
   the videos table (``SELECT id FROM videos WHERE s3_key = <key>``, only when ``DATABASE_URL`` is
   set); a ``videos/<digits>/...`` key prefix whose following directories are not numeric. Never
   from a date (``videos/2025/12/29/...``) or a file name: such a message is unresolvable.
2. Messages resolving to the same video are merged; the job is named ``video-process-<video_id>``
   and carries ``VideoKey``/``video_id`` in its environment (containerOverrides) and tags.
3. Unresolvable messages and those whose job could not be submitted are returned as
   ``batchItemFailures``, so only they go back to the queue (the event source mapping must have
   ``ReportBatchItemFailures`` on). A message that cannot parse goes back too, and after the
   queue's ``maxReceiveCount`` to its dead-letter queue.

A duplicate job that still gets through (two batches, a retried message) costs the worker
seconds: it takes a per-video advisory lock and skips work already done.

Bodies understood: an S3 event notification (``{"Records": [{"s3": ...}]}``, keys URL-encoded as
S3 sends them), the S3 test event (ignored), the web app's ``{"video": {"id": 84, "key": "...",
"bucket": "..."}}`` (``key`` may instead come from S3 ``Records`` in the same body), and either of
them wrapped in an SNS notification envelope.

Environment: ``ANALYZER_JOB_QUEUE``, ``ANALYZER_JOB_DEFINITION`` (required); ``DATABASE_URL``,
``VIDEOS_TABLE`` (default ``videos``, may be ``schema.table``), ``VIDEOS_ID_COLUMN`` (``id``),
``VIDEOS_KEY_COLUMN`` (``s3_key``), ``LOG_LEVEL`` (``INFO``). Lambda handler:
``analyzer.dispatch.handler``. Imports only boto3 (in the Lambda runtime) and, when
``DATABASE_URL`` is set, psycopg.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from analyzer.errors import AnalyzerError, InfrastructureError, InputRejected, SettingsError
from analyzer.manifest import is_s3_uri, split_s3_uri
from analyzer.submit import (
    JOB_DEFINITION_ENV,
    JOB_QUEUE_ENV,
    VideoJob,
    submit_request,
    video_job_request,
)

log = logging.getLogger(__name__)

DB_CONNECT_TIMEOUT = 5  # seconds
MAX_VIDEO_ID = 2**63 - 1  # PostgreSQL bigint
_KEY_PREFIX = re.compile(r"videos/(?P<id>[1-9][0-9]{0,18})/(?P<rest>[^/].*)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class DispatchSettings:
    """The dispatcher's configuration (Lambda environment variables)."""

    job_queue: str
    job_definition: str
    database_url: str | None = None
    videos_table: str = "videos"
    videos_id_column: str = "id"
    videos_key_column: str = "s3_key"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DispatchSettings:
        missing = [name for name in (JOB_QUEUE_ENV, JOB_DEFINITION_ENV) if not env.get(name)]
        if missing:
            raise SettingsError(f"dispatcher: missing environment {', '.join(missing)}")
        settings = cls(
            job_queue=env[JOB_QUEUE_ENV],
            job_definition=env[JOB_DEFINITION_ENV],
            database_url=env.get("DATABASE_URL") or None,
            videos_table=env.get("VIDEOS_TABLE") or cls.videos_table,
            videos_id_column=env.get("VIDEOS_ID_COLUMN") or cls.videos_id_column,
            videos_key_column=env.get("VIDEOS_KEY_COLUMN") or cls.videos_key_column,
        )
        for name in (*settings.videos_table.split("."), settings.videos_id_column,
                     settings.videos_key_column):
            if not _IDENTIFIER.fullmatch(name):
                raise SettingsError(f"dispatcher: {name!r} is not a plain SQL identifier")
        return settings


@dataclass(frozen=True)
class StoredObject:
    """An uploaded object; ``bucket`` is None when the message did not name one."""

    bucket: str | None
    key: str

    def same_as(self, other: StoredObject) -> bool:
        buckets_agree = self.bucket is None or other.bucket is None or self.bucket == other.bucket
        return self.key == other.key and buckets_agree


@dataclass
class Request:
    """One object named by one message, and the video it belongs to once resolved."""

    message_id: str
    obj: StoredObject
    video_id: int | None = None
    source: str = ""  # where video_id came from, for the log


@dataclass
class DispatchResult:
    """Jobs submitted (video_id -> job id) and the message ids that go back to the queue."""

    jobs: dict[int, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def fail(self, message_id: str) -> None:
        if message_id not in self.failures:
            self.failures.append(message_id)

    def response(self) -> dict[str, Any]:
        """The Lambda response for SQS partial batch failure reporting."""
        return {"batchItemFailures": [{"itemIdentifier": mid} for mid in self.failures]}


# --- parsing ----------------------------------------------------------------------------------


def positive_id(value: Any, what: str) -> int:
    """A video id from a JSON number or a string of digits; InputRejected otherwise."""
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_VIDEO_ID:
        raise InputRejected(f"{what} is not a positive integer video id: {value!r}")
    return value


def _load_body(text: str) -> Any:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputRejected(f"body is not JSON ({exc.msg})") from exc
    if isinstance(body, dict) and body.get("Type") == "Notification" and "Message" in body:
        return _load_body(body["Message"])  # SNS envelope
    return body


def s3_objects(records: Any) -> list[StoredObject]:
    """The created objects of S3 event ``Records`` (other event kinds are skipped)."""
    if not isinstance(records, list):
        raise InputRejected("Records is not a list")
    objects = []
    for record in records:
        try:
            name = record.get("eventName", "")
            bucket = record["s3"]["bucket"]["name"]
            key = unquote_plus(record["s3"]["object"]["key"])  # S3 sends keys form-encoded
        except (AttributeError, KeyError, TypeError) as exc:
            raise InputRejected(f"S3 record without s3.bucket.name/s3.object.key ({exc!r})") from exc
        if not str(name).startswith("ObjectCreated"):
            log.info("s3://%s/%s: %s event ignored", bucket, key, name)
            continue
        objects.append(StoredObject(bucket, key))
    return objects


def _stated_object(key: str, bucket: Any) -> StoredObject:
    """The web app's ``video.key`` (a key, or an ``s3://bucket/key`` URI) and ``video.bucket``."""
    if is_s3_uri(key):
        uri_bucket, key = split_s3_uri(key)
        if bucket and bucket != uri_bucket:
            raise InputRejected(f"video.bucket {bucket} disagrees with video.key s3://{uri_bucket}/")
        bucket = uri_bucket
    return StoredObject(str(bucket) if bucket else None, key)


def _attribute_id(record: Mapping[str, Any]) -> int | None:
    attribute = (record.get("messageAttributes") or {}).get("video_id")
    if attribute is None:
        return None
    return positive_id(attribute.get("stringValue"), "message attribute video_id")


def parse_message(record: Mapping[str, Any]) -> list[Request]:
    """The objects one SQS record names, with the id its body or attribute states (if any).

    Raises InputRejected for a body that is not understood, an invalid stated id, or a stated id
    with no object or several objects (the id could not be tied to one upload).
    """
    message_id = record["messageId"]
    body = _load_body(record.get("body") or "")
    if not isinstance(body, dict):
        raise InputRejected("body is not a JSON object")
    if body.get("Event") == "s3:TestEvent":
        log.info("message %s: S3 test event ignored", message_id)
        return []
    video = body.get("video")
    if video is not None and not isinstance(video, dict):
        raise InputRejected("body field video is not an object")
    objects = s3_objects(body["Records"]) if "Records" in body else []
    if video is not None and video.get("key"):
        objects = [_stated_object(str(video["key"]), video.get("bucket"))]
    stated, source = None, ""
    if video is not None and "id" in video:
        stated, source = positive_id(video["id"], "body video.id"), "body video.id"
    if stated is None:
        stated = _attribute_id(record)
        source = "message attribute video_id" if stated is not None else ""
    if not objects and "Records" not in body:
        raise InputRejected("body names no object: neither S3 Records nor video.key")
    if stated is not None and len(objects) != 1:
        raise InputRejected(f"{source} {stated} given for {len(objects)} objects; need exactly one")
    return [Request(message_id, obj, stated, source) for obj in objects]


# --- resolving video ids ----------------------------------------------------------------------


def id_from_key_prefix(key: str) -> int | None:
    """``videos/<id>/[non-numeric dirs/]<file>`` -> id; None for any other key.

    ``videos/2025/12/29/<uuid>_<name>.mp4`` gives None: the digits after ``videos/`` are followed
    by more numeric directories (a date), and digits in the file name are never used.
    """
    match = _KEY_PREFIX.fullmatch(key)
    if match is None:
        return None
    directories = match["rest"].split("/")[:-1]
    if any(part.isdigit() for part in directories):
        return None
    return int(match["id"])


class VideoLookup:
    """Looks an object's key up in the videos table; one connection per Lambda invocation.

    Matches ``<key column> = key`` or ``= s3://bucket/key``. Returns the id, or None when no row
    has the key; InputRejected when rows with different ids share it; InfrastructureError when the
    database is unreachable; SettingsError when the table or a column does not exist.
    """

    def __init__(self, settings: DispatchSettings) -> None:
        self.settings = settings
        self._conn: Any = None

    def _query(self) -> Any:
        from psycopg import sql

        return sql.SQL("SELECT DISTINCT {id} FROM {table} WHERE {key} = ANY(%s) LIMIT 2").format(
            id=sql.Identifier(self.settings.videos_id_column),
            table=sql.Identifier(*self.settings.videos_table.split(".")),
            key=sql.Identifier(self.settings.videos_key_column),
        )

    def __call__(self, obj: StoredObject) -> int | None:
        import psycopg

        candidates = [obj.key] + ([f"s3://{obj.bucket}/{obj.key}"] if obj.bucket else [])
        try:
            if self._conn is None:
                self._conn = psycopg.connect(self.settings.database_url, autocommit=True,
                                             connect_timeout=DB_CONNECT_TIMEOUT)
            rows = self._conn.execute(self._query(), (candidates,)).fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
            raise SettingsError(f"videos table lookup: {exc.diag.message_primary}") from exc
        except psycopg.Error as exc:
            self.close()
            raise InfrastructureError(f"videos table lookup failed: {type(exc).__name__}") from exc
        if len(rows) > 1:
            raise InputRejected(f"key {obj.key} belongs to several videos in the videos table")
        return positive_id(rows[0][0], "videos table id") if rows else None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def resolve(
    requests: list[Request],
    lookup: Callable[[StoredObject], int | None] | None,
    result: DispatchResult,
) -> list[Request]:
    """Give each request a video id (order in the module docstring); failures go to ``result``."""
    stated = [r for r in requests if r.video_id is not None]
    resolved = list(stated)
    for request in (r for r in requests if r.video_id is None):
        siblings = {s.video_id for s in stated if s.obj.same_as(request.obj)}
        try:
            if len(siblings) == 1:
                request.video_id, request.source = siblings.pop(), "same object in this batch"
            elif len(siblings) > 1:
                raise InputRejected(f"messages in this batch give {sorted(siblings)} for this key")
            elif lookup is not None and (found := lookup(request.obj)) is not None:
                request.video_id, request.source = found, "videos table"
            elif (prefixed := id_from_key_prefix(request.obj.key)) is not None:
                request.video_id, request.source = prefixed, "key prefix videos/<id>/"
            else:
                raise InputRejected("no video id: no body video.id, no video_id attribute, "
                                    "no videos-table row, no videos/<id>/ key prefix")
        except AnalyzerError as exc:
            log.error("message %s: s3://%s/%s: %s", request.message_id, request.obj.bucket,
                      request.obj.key, exc)
            result.fail(request.message_id)
            continue
        resolved.append(request)
    for request in resolved:
        log.info("message %s: video %d from %s (%s)", request.message_id, request.video_id,
                 request.source, request.obj.key)
    return resolved


def group_by_video(requests: Iterable[Request], result: DispatchResult) -> dict[int, list[Request]]:
    """One entry per video; a request naming another object than the video's first is a failure."""
    groups: dict[int, list[Request]] = {}
    for request in requests:
        group = groups.setdefault(request.video_id, [])
        if group and not group[0].obj.same_as(request.obj):
            log.error("message %s: video %d named with key %s, but also with %s in this batch",
                      request.message_id, request.video_id, request.obj.key, group[0].obj.key)
            result.fail(request.message_id)
            continue
        group.append(request)
    return groups


# --- dispatching ------------------------------------------------------------------------------


def dispatch(
    records: list[Mapping[str, Any]],
    settings: DispatchSettings,
    batch_client: Any,
    lookup: Callable[[StoredObject], int | None] | None = None,
) -> DispatchResult:
    """Resolve, merge and submit one SQS batch; see the module docstring."""
    result = DispatchResult()
    requests: list[Request] = []
    for record in records:
        try:
            requests.extend(parse_message(record))
        except AnalyzerError as exc:
            log.error("message %s: %s", record.get("messageId"), exc)
            result.fail(record["messageId"])
    groups = group_by_video(resolve(requests, lookup, result), result)
    for video_id, group in groups.items():
        obj = next((r.obj for r in group if r.obj.bucket), group[0].obj)
        request = video_job_request(VideoJob(video_id, obj.key, obj.bucket),
                                    job_queue=settings.job_queue,
                                    job_definition=settings.job_definition)
        try:
            result.jobs[video_id] = submit_request(batch_client, request)
        except AnalyzerError as exc:
            log.error("video %d: %s", video_id, exc)
            for r in group:
                result.fail(r.message_id)
            continue
        if len(group) > 1:
            log.info("video %d: %d messages merged into one job", video_id, len(group))
    log.info("batch of %d messages: jobs submitted %d, messages returned to the queue %d",
             len(records), len(result.jobs), len(result.failures))
    return result


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """AWS Lambda entry point for an SQS event source mapping with ReportBatchItemFailures."""
    import boto3

    logging.getLogger("analyzer").setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    settings = DispatchSettings.from_env(os.environ)
    lookup = VideoLookup(settings) if settings.database_url else None
    try:
        result = dispatch(list(event.get("Records", [])), settings, boto3.client("batch"), lookup)
    finally:
        if lookup is not None:
            lookup.close()
    return result.response()
