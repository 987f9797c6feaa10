"""AWS Lambda dispatcher: SQS batches of S3 upload events -> one AWS Batch job per video.

S3 and SQS deliver at least once, so one upload can arrive as several messages (the incident:
the web app's message saying ``video 84`` and S3's own event for the same key). The dispatcher
therefore never guesses, and submits one job per video per batch:

1. ``video_id`` comes, in this order, from the message body's ``video.id``; the ``video_id``
   message attribute; another message of the same batch that names the same object with an id;
   the videos table (``SELECT id FROM videos WHERE s3_key = <key>``, only when ``DATABASE_URL`` is
   set); the key itself, only when the deployment states its key layout in
   ``ANALYZER_KEY_ID_PATTERN`` (a regular expression matching the whole key, with a named group
   ``video_id``; unset by default). Nothing is ever guessed from a key's digits
   (``videos/2025/<uuid>_talk.mp4`` has no id): without one of these the message is unresolvable.
   Every id passes ``analyzer.ids.parse_video_id``, the worker's own validator.
2. Messages resolving to the same video are merged; the job is named ``video-process-<video_id>``
   and carries ``VideoKey``/``video_id`` in its environment (containerOverrides) and tags. One
   object given two different ids in one batch is a conflict: every message naming it fails,
   with one log line. A key with control characters (a NUL byte, a newline) is refused.
   Nothing that disagrees is settled by a guess: a message whose body ``video.id`` and
   ``video_id`` attribute differ, whose ``video.key`` (or ``video.bucket``) names another object
   than its S3 ``Records``, or with an S3 record that has no ``eventName`` (an upload cannot be
   told from a removal) fails on its own, its log line saying ``conflict: ...`` or what is missing.
   Grouping is linear in the records (a batch may name one key thousands of times).
3. Each record's failure is its own: unresolvable or malformed messages (anything at all that
   goes wrong with one, a body nested 100,000 deep or an SNS ``Message`` that is not a string
   included, in one line without a traceback) and those whose job could not be
   submitted are returned as ``batchItemFailures``, so only they go back to the queue (the event
   source mapping must have ``ReportBatchItemFailures`` on), and after the queue's
   ``maxReceiveCount`` to its dead-letter queue; the other records of the batch get their jobs.
   A record without a ``messageId`` (SQS always sends one; a hand-made event may not) cannot be
   named in ``batchItemFailures``: after the other records are dispatched, the invocation
   raises ``UnreportableRecords``, which makes Lambda return the whole batch to the queue (the
   same as an invalid ``itemIdentifier`` would), so nothing is dropped; records dispatched
   already are submitted again on redelivery, and their duplicate jobs exit in seconds.

A duplicate job that still gets through (two batches, a retried message) costs the worker
seconds: it takes a per-video advisory lock and skips work already done.

Bodies understood: an S3 event notification (``{"Records": [{"s3": ...}]}``, keys URL-encoded as
S3 sends them), the S3 test event (ignored), the web app's ``{"video": {"id": 84, "key": "...",
"bucket": "..."}}`` (``key`` may instead come from S3 ``Records`` in the same body), and either of
them wrapped in an SNS notification envelope.

Environment: ``ANALYZER_JOB_QUEUE``, ``ANALYZER_JOB_DEFINITION`` (required); ``DATABASE_URL``,
``VIDEOS_TABLE`` (default ``videos``, may be ``schema.table``), ``VIDEOS_ID_COLUMN`` (``id``),
``VIDEOS_KEY_COLUMN`` (``s3_key``), ``ANALYZER_KEY_ID_PATTERN`` (unset), ``LOG_LEVEL`` (``INFO``).
Lambda handler: ``analyzer.fleet.dispatch.handler``. Imports only boto3 (in the Lambda runtime) and, when
``DATABASE_URL`` is set, psycopg.

The same handler runs the stale sweep (``analyzer/fleet/sweep.py``) when an EventBridge schedule
invokes it (``"source": "aws.events"``, ``"detail-type": "Scheduled Event"``): it needs
``DATABASE_URL``, and reads ``SWEEP_OLDER_THAN_S``, ``SWEEP_LIMIT`` and ``SWEEP_MAX_RESUBMITS``.
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
from analyzer.fleet.submit import (
    JOB_DEFINITION_ENV,
    JOB_QUEUE_ENV,
    VideoJob,
    submit_request,
    video_job_request,
)
from analyzer.ids import parse_column_name, parse_table_name, parse_video_id
from analyzer.source.s3 import check_bucket, check_key, is_s3_uri, split_s3_uri

log = logging.getLogger(__name__)

DB_CONNECT_TIMEOUT = 5  # seconds
KEY_ID_PATTERN_ENV = "ANALYZER_KEY_ID_PATTERN"


class UnreportableRecords(Exception):
    """Records without a messageId: Lambda must return the whole batch to the queue."""


@dataclass(frozen=True)
class DispatchSettings:
    """The dispatcher's configuration (Lambda environment variables)."""

    job_queue: str
    job_definition: str
    database_url: str | None = None
    videos_table: str = "videos"
    videos_id_column: str = "id"
    videos_key_column: str = "s3_key"
    key_id_pattern: re.Pattern[str] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DispatchSettings:
        """The settings from the Lambda's environment.

        Raises:
            SettingsError: naming the variable that is missing or invalid (the whole invocation
                fails: a misconfigured dispatcher must be noticed, not drop messages one by one).
        """
        missing = [name for name in (JOB_QUEUE_ENV, JOB_DEFINITION_ENV) if not env.get(name)]
        if missing:
            raise SettingsError(f"dispatcher: missing environment {', '.join(missing)}")
        parsers: dict[str, tuple[str, Callable[[str], Any]]] = {
            "database_url": ("DATABASE_URL", _database_url),
            "videos_table": ("VIDEOS_TABLE", parse_table_name),
            "videos_id_column": ("VIDEOS_ID_COLUMN", parse_column_name),
            "videos_key_column": ("VIDEOS_KEY_COLUMN", parse_column_name),
            "key_id_pattern": (KEY_ID_PATTERN_ENV, key_id_pattern),
        }
        values: dict[str, Any] = {}
        for field_name, (variable, parse) in parsers.items():
            if env.get(variable):
                try:
                    values[field_name] = parse(env[variable])
                except ValueError as exc:
                    raise SettingsError(f"dispatcher: invalid {variable}: {exc}") from None
        return cls(job_queue=env[JOB_QUEUE_ENV], job_definition=env[JOB_DEFINITION_ENV], **values)


def key_id_pattern(text: str) -> re.Pattern[str]:
    """``ANALYZER_KEY_ID_PATTERN``: a regular expression with a named group ``video_id``.

    Raises:
        ValueError: when it does not compile or has no ``video_id`` group.
    """
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None
    if "video_id" not in pattern.groupindex:
        raise ValueError("needs a named group (?P<video_id>...)")
    return pattern


def _database_url(text: str) -> str:
    from analyzer.conninfo import parse_database_url

    try:
        return parse_database_url(text)
    except ImportError:  # the zip was built without --with-psycopg
        raise ValueError("set, but psycopg is missing (package with --with-psycopg)") from None


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
    _failed: set[str] = field(default_factory=set, repr=False, compare=False)  # the same ids, to look up

    def fail(self, message_id: str) -> None:
        if message_id not in self._failed:
            self._failed.add(message_id)
            self.failures.append(message_id)

    def failed(self, message_id: str) -> bool:
        return message_id in self._failed

    def response(self) -> dict[str, Any]:
        """The Lambda response for SQS partial batch failure reporting."""
        return {"batchItemFailures": [{"itemIdentifier": mid} for mid in self.failures]}


# --- parsing ----------------------------------------------------------------------------------


def positive_id(value: Any, what: str) -> int:
    """A video id (``analyzer.ids.parse_video_id``); InputRejected naming ``what`` otherwise."""
    try:
        return parse_video_id(value)
    except ValueError as exc:
        raise InputRejected(f"{what} {exc}") from None


def checked_object(bucket: Any, key: Any) -> StoredObject:
    """A ``StoredObject`` whose bucket and key may go into a job; InputRejected otherwise."""
    try:
        return StoredObject(check_bucket(str(bucket)) if bucket else None, check_key(str(key)))
    except ValueError as exc:
        raise InputRejected(str(exc)) from None


def _load_body(text: str) -> Any:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputRejected(f"body is not JSON ({exc.msg})") from exc
    except RecursionError:  # json recurses once per level: a body of 100,000 [ is refused, not a bug
        raise InputRejected("body is nested too deeply to read") from None
    if isinstance(body, dict) and body.get("Type") == "Notification" and "Message" in body:
        message = body["Message"]  # SNS envelope: the message is a JSON document in a string
        if not isinstance(message, str):
            raise InputRejected(f"SNS notification: Message is a {type(message).__name__}, not a string")
        return _load_body(message)
    return body


def s3_objects(records: Any) -> list[StoredObject]:
    """The created objects of S3 event ``Records`` (other event kinds are skipped)."""
    if not isinstance(records, list):
        raise InputRejected("Records is not a list")
    objects = []
    for record in records:
        try:
            name = record.get("eventName")
            bucket = record["s3"]["bucket"]["name"]
            key = unquote_plus(record["s3"]["object"]["key"])  # S3 sends keys form-encoded
        except (AttributeError, KeyError, TypeError) as exc:
            raise InputRejected(f"S3 record without s3.bucket.name/s3.object.key ({exc!r})") from exc
        if not isinstance(name, str) or not name:  # S3 always names it: guessing "created" may analyse a removal
            raise InputRejected("S3 record without eventName: cannot tell an upload from a removal")
        if not name.startswith("ObjectCreated"):
            log.info("s3://%s/%s: %s event ignored", bucket, ascii(key), name)
            continue
        objects.append(checked_object(bucket, key))
    return objects


def _stated_object(key: str, bucket: Any) -> StoredObject:
    """The web app's ``video.key`` (a key, or an ``s3://bucket/key`` URI) and ``video.bucket``."""
    if is_s3_uri(key):
        try:
            uri_bucket, key = split_s3_uri(key)
        except SettingsError as exc:
            raise InputRejected(f"video.key: {exc}") from None
        if bucket and bucket != uri_bucket:
            raise InputRejected(f"video.bucket {bucket!r} disagrees with video.key s3://{uri_bucket}/")
        bucket = uri_bucket
    return checked_object(bucket, key)


def _attribute_id(record: Mapping[str, Any]) -> int | None:
    attribute = (record.get("messageAttributes") or {}).get("video_id")
    if attribute is None:
        return None
    return positive_id(attribute.get("stringValue"), "message attribute video_id")


def _stated_id(video: Mapping[str, Any] | None, record: Mapping[str, Any]) -> tuple[int | None, str]:
    """The id the message states and where: body ``video.id`` or the ``video_id`` attribute; both
    may be given only when they agree (InputRejected naming the conflict otherwise)."""
    body = positive_id(video["id"], "body video.id") if video is not None and "id" in video else None
    attribute = _attribute_id(record)
    if body is not None and attribute is not None and body != attribute:
        raise InputRejected(f"conflict: body video.id {body} and message attribute video_id {attribute} disagree")
    if body is not None:
        return body, "body video.id"
    return attribute, "message attribute video_id" if attribute is not None else ""


def _body_objects(body: Mapping[str, Any], video: Mapping[str, Any] | None) -> list[StoredObject]:
    """The objects a body names: its S3 ``Records``, or the web app's ``video.key``. When both are
    given they must name the same object (the one ``Records`` names, with its bucket); a
    ``video.bucket`` beside ``Records`` must be theirs. A disagreement is InputRejected."""
    objects = s3_objects(body["Records"]) if "Records" in body else []
    if video is None:
        return objects
    if video.get("key"):
        stated = _stated_object(str(video["key"]), video.get("bucket"))
        other = next((obj for obj in objects if not obj.same_as(stated)), None)
        if other is not None:
            raise InputRejected(
                f"conflict: video.key names {_object_label(stated)} but Records name {_object_label(other)}"
            )
        if len(set(objects)) > 1:  # the key in two buckets: which one video.key meant is unknown
            raise InputRejected(f"conflict: video.key names one object but Records name {len(set(objects))}")
        return [objects[0] if objects else stated]
    bucket = video.get("bucket")
    other = next((obj for obj in objects if bucket and obj.bucket != bucket), None)
    if other is not None:
        raise InputRejected(f"conflict: video.bucket {bucket!r} but Records name {_object_label(other)}")
    return objects


def parse_message(record: Mapping[str, Any]) -> list[Request]:
    """The objects one SQS record names, with the id its body or attribute states (if any).

    Raises InputRejected for a body that is not understood, an invalid stated id, or a stated id
    with no object or several objects (the id could not be tied to one upload).
    """
    message_id = record["messageId"]
    body = record.get("body") or ""
    if not isinstance(body, str):
        raise InputRejected("body is not a string")
    body = _load_body(body)
    if not isinstance(body, dict):
        raise InputRejected("body is not a JSON object")
    if body.get("Event") == "s3:TestEvent":
        log.info("message %s: S3 test event ignored", message_id)
        return []
    video = body.get("video")
    if video is not None and not isinstance(video, dict):
        raise InputRejected("body field video is not an object")
    objects = _body_objects(body, video)
    stated, source = _stated_id(video, record)
    if not objects and "Records" not in body:
        raise InputRejected("body names no object: neither S3 Records nor video.key")
    if stated is not None and len(objects) != 1:
        raise InputRejected(f"{source} {stated} given for {len(objects)} objects; need exactly one")
    return [Request(message_id, obj, stated, source) for obj in objects]


# --- resolving video ids ----------------------------------------------------------------------


def id_from_key(key: str, pattern: re.Pattern[str] | None) -> int | None:
    """The id the deployment's key layout puts in ``key``; None without a pattern or a match.

    Args:
        key: the object key.
        pattern: ``ANALYZER_KEY_ID_PATTERN``, matched against the whole key; None: never.

    Raises:
        InputRejected: when the pattern matches but its ``video_id`` group is not a valid id.
    """
    match = pattern.fullmatch(key) if pattern is not None else None
    if match is None or match["video_id"] is None:
        return None
    return positive_id(match["video_id"], f"{KEY_ID_PATTERN_ENV} group video_id")


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
                self._conn = psycopg.connect(
                    self.settings.database_url, autocommit=True, connect_timeout=DB_CONNECT_TIMEOUT
                )
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


def _object_label(obj: StoredObject) -> str:
    return ascii(f"s3://{obj.bucket}/{obj.key}" if obj.bucket else obj.key)


def _by_key_and_bucket(requests: Iterable[Request]) -> dict[str, dict[str | None, list[Request]]]:
    """Requests by key, then by bucket (None: a message that named no bucket), in arrival order.
    ``StoredObject.same_as`` is then whole groups: a bucket's group and the None group of its key."""
    groups: dict[str, dict[str | None, list[Request]]] = {}
    for request in requests:
        groups.setdefault(request.obj.key, {}).setdefault(request.obj.bucket, []).append(request)
    return groups


def find_conflicts(requests: list[Request], result: DispatchResult) -> list[Request]:
    """The requests without conflicts: an object stated with two different ids in one batch
    fails every message that names it (one log line per object), since no id can be trusted.

    Linear in the requests (10,000 naming one key once took 19 s, each compared with each): the
    objects that are ``same_as`` one another are found as groups by key and bucket.
    """
    conflicted: set[int] = set()
    for by_bucket in _by_key_and_bucket(requests).values():
        ids = {bucket: {r.video_id for r in group if r.video_id is not None} for bucket, group in by_bucket.items()}
        unnamed = by_bucket.get(None, [])
        for bucket, group in by_bucket.items():
            if id(group[0]) in conflicted:  # a group conflicts whole: its requests name one object
                continue
            if bucket is None:  # no bucket: the same as this key in every bucket
                named, named_ids = [r for g in by_bucket.values() for r in g], set().union(*ids.values())
            else:
                named, named_ids = group + unnamed, ids[bucket] | ids.get(None, set())
            if len(named_ids) < 2:
                continue
            conflicted.update(id(r) for r in named)
            messages = sorted({r.message_id for r in named})
            log.error(
                "conflict: %s is given video ids [%s] by messages %s in one batch; all %d returned to the queue",
                _object_label(group[0].obj),
                _first(sorted(named_ids)),
                _first(messages),
                len(messages),
            )
            for message_id in messages:
                result.fail(message_id)
    return [r for r in requests if id(r) not in conflicted and not result.failed(r.message_id)]


def _first(items: list[Any], shown: int = 10) -> str:
    """A list for a log line, at most ``shown`` items of it (a batch may name one key 10,000 times)."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(str(item) for item in items[:shown]) + more


def _sibling_ids(stated: list[Request]) -> Callable[[StoredObject], set[int]]:
    """The ids stated in this batch for objects ``same_as`` a given one, looked up, not searched."""
    ids = {
        key: {bucket: {r.video_id for r in group if r.video_id is not None} for bucket, group in by_bucket.items()}
        for key, by_bucket in _by_key_and_bucket(stated).items()
    }
    anywhere = {key: set().union(*by_bucket.values()) for key, by_bucket in ids.items()}

    def siblings(obj: StoredObject) -> set[int]:
        if obj.bucket is None:
            return anywhere.get(obj.key, set())
        by_bucket = ids.get(obj.key, {})
        return by_bucket.get(obj.bucket, set()) | by_bucket.get(None, set())

    return siblings


def resolve(
    requests: list[Request],
    lookup: Callable[[StoredObject], int | None] | None,
    result: DispatchResult,
    key_pattern: re.Pattern[str] | None = None,
) -> list[Request]:
    """Give each request a video id (order in the module docstring); failures go to ``result``."""
    requests = find_conflicts(requests, result)
    stated = [r for r in requests if r.video_id is not None]
    sibling_ids = _sibling_ids(stated)
    resolved = list(stated)
    for request in (r for r in requests if r.video_id is None):
        siblings = set(sibling_ids(request.obj))
        try:
            if len(siblings) == 1:
                request.video_id, request.source = siblings.pop(), "same object in this batch"
            elif lookup is not None and (found := lookup(request.obj)) is not None:
                request.video_id, request.source = found, "videos table"
            elif (from_key := id_from_key(request.obj.key, key_pattern)) is not None:
                request.video_id, request.source = from_key, KEY_ID_PATTERN_ENV
            else:
                raise InputRejected(
                    "no video id: no body video.id, no video_id attribute, "
                    "no videos-table row" + ("" if key_pattern is not None else f", no {KEY_ID_PATTERN_ENV} set")
                )
        except Exception as exc:  # one request's trouble is its own
            _log_failure(request.message_id, f"{_object_label(request.obj)}: ", exc)
            result.fail(request.message_id)
            continue
        resolved.append(request)
    for request in resolved:
        log.info(
            "message %s: video %d from %s (%s)",
            request.message_id,
            request.video_id,
            request.source,
            _object_label(request.obj),
        )
    return resolved


def _log_failure(message_id: str, prefix: str, exc: Exception) -> None:
    """One line for a known failure; the traceback too for anything else (a bug)."""
    if isinstance(exc, AnalyzerError):
        log.error("message %s: %s%s", message_id, prefix, exc)
    else:
        log.error(
            "message %s: %sunexpected %s: %s; returned to the queue",
            message_id,
            prefix,
            type(exc).__name__,
            str(exc)[:200],
            exc_info=exc,
        )


def group_by_video(requests: Iterable[Request], result: DispatchResult) -> dict[int, list[Request]]:
    """One entry per video; a request naming another object than the video's first is a failure."""
    groups: dict[int, list[Request]] = {}
    for request in requests:
        group = groups.setdefault(request.video_id, [])
        if group and not group[0].obj.same_as(request.obj):
            log.error(
                "message %s: video %d named with key %s, but also with %s in this batch",
                request.message_id,
                request.video_id,
                _object_label(request.obj),
                _object_label(group[0].obj),
            )
            result.fail(request.message_id)
            continue
        group.append(request)
    return groups


# --- dispatching ------------------------------------------------------------------------------


def _message_id(record: Any) -> str | None:
    message_id = record.get("messageId") if isinstance(record, Mapping) else None
    return message_id if isinstance(message_id, str) and message_id else None


def dispatch(
    records: list[Any],
    settings: DispatchSettings,
    batch_client: Any,
    lookup: Callable[[StoredObject], int | None] | None = None,
) -> DispatchResult:
    """Resolve, merge and submit one SQS batch; see the module docstring.

    Raises:
        UnreportableRecords: after the others are dispatched, when a record has no messageId.
    """
    result = DispatchResult()
    requests: list[Request] = []
    unreportable = 0
    for number, record in enumerate(records):
        message_id = _message_id(record)
        if message_id is None:
            unreportable += 1
            log.error(
                "record %d of the batch has no messageId: it cannot be returned to the queue "
                "on its own; the whole batch will be",
                number,
            )
            continue
        try:
            requests.extend(parse_message(record))
        except Exception as exc:  # one poison record never fails the batch
            _log_failure(message_id, "", exc)
            result.fail(message_id)
    groups = group_by_video(resolve(requests, lookup, result, settings.key_id_pattern), result)
    for video_id, group in groups.items():
        obj = next((r.obj for r in group if r.obj.bucket), group[0].obj)
        try:
            request = video_job_request(
                VideoJob(video_id, obj.key, obj.bucket),
                job_queue=settings.job_queue,
                job_definition=settings.job_definition,
            )
            result.jobs[video_id] = submit_request(batch_client, request)
        except Exception as exc:  # this video's messages go back, not the batch
            _log_failure(", ".join(r.message_id for r in group), f"video {video_id}: ", exc)
            for r in group:
                result.fail(r.message_id)
            continue
        if len(group) > 1:
            log.info("video %d: %d messages merged into one job", video_id, len(group))
    log.info(
        "batch of %d messages: jobs submitted %d, messages returned to the queue %d",
        len(records),
        len(result.jobs),
        len(result.failures),
    )
    if unreportable:
        raise UnreportableRecords(
            f"{unreportable} record(s) without a messageId: the whole batch goes back to the queue"
        )
    return result


def is_scheduled_event(event: Any) -> bool:
    """An EventBridge schedule's event (the stale sweep's trigger), not an SQS batch."""
    return (
        isinstance(event, Mapping)
        and event.get("source") == "aws.events"
        and event.get("detail-type") == "Scheduled Event"
    )


def scheduled_sweep(settings: DispatchSettings, env: Mapping[str, str], batch_client: Any) -> dict[str, Any]:
    """The stale sweep (``analyzer.fleet.sweep``) with the dispatcher's queue, definition and
    database, and ``SWEEP_*`` from ``env``; returns what it did.

    Raises:
        SettingsError: DATABASE_URL is not set, or a SWEEP_* variable is invalid.
    """
    from analyzer.fleet.sweep import SweepSettings, sweep

    if not settings.database_url:
        raise SettingsError("stale sweep: DATABASE_URL is not set; the sweep reads video_analyses")
    result = sweep(
        settings.database_url,
        batch_client,
        SweepSettings.from_env(env),
        job_queue=settings.job_queue,
        job_definition=settings.job_definition,
    )
    return {"resubmitted": len(result.job_ids), "given_up": len(result.given_up)}


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """AWS Lambda entry point for an SQS event source mapping with ReportBatchItemFailures, and
    for the EventBridge schedule of the stale sweep (``{"source": "aws.events", "detail-type":
    "Scheduled Event"}``)."""
    import boto3

    logging.getLogger("analyzer").setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    settings = DispatchSettings.from_env(os.environ)
    if is_scheduled_event(event):
        return scheduled_sweep(settings, os.environ, boto3.client("batch"))
    lookup = VideoLookup(settings) if settings.database_url else None
    try:
        records = event.get("Records", []) if isinstance(event, Mapping) else None
        if not isinstance(records, list):
            raise UnreportableRecords("the event has no Records list")
        result = dispatch(records, settings, boto3.client("batch"), lookup)
    finally:
        if lookup is not None:
            lookup.close()
    return result.response()
