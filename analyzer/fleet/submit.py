"""``analyzer submit``: put videos on the AWS Batch queue (one job per video, or array jobs).

One video::

    analyzer submit --video-id 84 --key videos/2025/12/29/<uuid>_talk.mp4

A backfill (e.g. re-analyse everything after a model upgrade) from a manifest (format in
``analyzer/fleet/manifest.py``)::

    analyzer submit --manifest all.jsonl --upload-to s3://my-bucket/manifests/2026-11-upgrade/

submits one array job per 10,000 rows; child ``i`` reads row ``i`` of its manifest through
``ANALYZER_MANIFEST`` + ``AWS_BATCH_JOB_ARRAY_INDEX``. Every child takes the same per-video advisory
lock and status check as a single job, so a video listed again, or already queued by the
dispatcher, is analysed once. ``--dry-run`` prints the requests (JSON lines) and submits nothing.

Videos whose last run died or gave up (read from ``video_analyses`` through ``DATABASE_URL``)::

    analyzer submit --stale --dry-run          # list them and the jobs it would submit
    analyzer submit --stale [--older-than 600] [--limit N] [--max-resubmits 3]

runs one stale sweep (``analyzer/fleet/sweep.py``, the code the dispatcher Lambda runs every 15
minutes): finds ``running`` rows whose heartbeat stopped ``--older-than`` seconds ago (worker killed,
instance lost, a Batch timeout's SIGKILL), ``interrupted`` runs (SIGTERM: cancel, Batch timeout, a
Spot reclaim whose attempts ran out) and ``failed`` runs with a retryable exit code (Batch ran out
of attempts), and submits one job per video, named like any other, reading the bucket and key its
last run read; a video resubmitted ``--max-resubmits`` times since it last succeeded is given up on.

Job naming, environment and tags are shared with the Lambda dispatcher (``analyzer/fleet/dispatch.py``):
a video's job is always named ``video-process-<video_id>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from analyzer.errors import AccessDenied, InfrastructureError, SettingsError
from analyzer.ids import parse_video_id
from analyzer.source.s3 import check_bucket, check_key, is_s3_uri, s3_errors, split_s3_uri

log = logging.getLogger(__name__)

JOB_QUEUE_ENV = "ANALYZER_JOB_QUEUE"
JOB_DEFINITION_ENV = "ANALYZER_JOB_DEFINITION"
JOB_NAME_PREFIX = "video-process-"
BACKFILL_NAME_PREFIX = "video-backfill-"
MAX_ARRAY_SIZE = 10_000  # AWS Batch arrayProperties.size upper limit
MAX_JOB_NAME = 128  # AWS Batch job names: letters, digits, '-', '_'
MAX_TAG_VALUE = 256  # AWS tag values
_TAG_UNSAFE = re.compile(r"[^\w .:/=+\-@]")  # AWS tag values allow letters, digits, space, _.:/=+-@
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class VideoJob:
    """One video to analyse: the id in the videos table and the S3 key (bucket: the job default)."""

    video_id: int
    key: str
    bucket: str | None = None


def job_name(video_id: int) -> str:
    """The deterministic job name of a video: ``video-process-<video_id>``."""
    return f"{JOB_NAME_PREFIX}{int(video_id)}"


def tag_value(text: str) -> str:
    """``text`` made a valid AWS tag value (disallowed characters -> ``_``, at most 256)."""
    return _TAG_UNSAFE.sub("_", text)[:MAX_TAG_VALUE]


def _environment(pairs: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs.items()]


def video_job_request(
    job: VideoJob, *, job_queue: str, job_definition: str, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """The ``batch.submit_job`` arguments for one video (key and id in environment and tags).

    Raises:
        SettingsError: for an invalid id, key or bucket: nothing unchecked reaches a job's
            environment (a NUL byte would cut it short, a newline forge the worker's log lines).
    """
    _check_job(job)
    env = {"VideoKey": job.key, "video_id": str(job.video_id)}
    if job.bucket:
        env["S3_BUCKET"] = job.bucket
    env.update(extra_env or {})
    return {
        "jobName": job_name(job.video_id),
        "jobQueue": job_queue,
        "jobDefinition": job_definition,
        "containerOverrides": {"environment": _environment(env)},
        "tags": {"video_id": str(job.video_id), "VideoKey": tag_value(job.key)},
        "propagateTags": True,
    }


def _check_job(job: VideoJob) -> None:
    what = f"video {job.video_id}"
    try:
        parse_video_id(job.video_id)
        if is_s3_uri(job.key):
            split_s3_uri(job.key)
        else:
            check_key(job.key)
        if job.bucket:
            check_bucket(job.bucket)
    except (ValueError, SettingsError) as exc:
        raise SettingsError(f"{what}: {exc}") from None


def array_job_request(
    manifest_uri: str,
    size: int,
    *,
    name: str,
    job_queue: str,
    job_definition: str,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``batch.submit_job`` arguments for an array job over ``size`` manifest rows (2..10000)."""
    if not 2 <= size <= MAX_ARRAY_SIZE:
        raise SettingsError(f"an array job needs 2..{MAX_ARRAY_SIZE} rows, got {size}")
    env = {"ANALYZER_MANIFEST": manifest_uri}
    env.update(extra_env or {})
    return {
        "jobName": name,
        "jobQueue": job_queue,
        "jobDefinition": job_definition,
        "arrayProperties": {"size": size},
        "containerOverrides": {"environment": _environment(env)},
        "tags": {"manifest": tag_value(manifest_uri), "rows": str(size)},
        "propagateTags": True,
    }


def submit_request(batch_client: Any, request: dict[str, Any]) -> str:
    """Submit one job; returns its job id. Boto errors become project errors (retry known)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = batch_client.submit_job(**request)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        what = f"job {request['jobName']}: SubmitJob failed ({code}: {message})"
        if code in ("AccessDeniedException", "UnauthorizedOperation", "AccessDenied"):
            raise AccessDenied(what) from exc
        if code == "ClientException":  # unknown queue or definition, invalid request
            raise SettingsError(what) from exc
        raise InfrastructureError(what) from exc
    except BotoCoreError as exc:
        raise InfrastructureError(f"job {request['jobName']}: Batch unreachable ({exc})") from exc
    log.info("job %s: submitted as %s to %s", request["jobName"], response["jobId"], request["jobQueue"])
    return response["jobId"]


# --- backfill planning ------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A manifest part that must be written to S3 before its array job is submitted."""

    uri: str
    text: str


@dataclass(frozen=True)
class Plan:
    """What ``analyzer submit`` will do: uploads first, then the job requests in order."""

    uploads: list[Upload]
    requests: list[dict[str, Any]]


def backfill_name(manifest: str) -> str:
    """``video-backfill-<manifest file stem>``, made a valid Batch job name."""
    stem = PurePosixPath(manifest.rstrip("/")).name.split(".")[0]
    cleaned = _NAME_UNSAFE.sub("-", stem).strip("-_") or "manifest"
    return (BACKFILL_NAME_PREFIX + cleaned)[: MAX_JOB_NAME - len("-part-0000")]


def plan_backfill(
    rows: Sequence[Any],
    manifest: str,
    *,
    job_queue: str,
    job_definition: str,
    upload_to: str | None,
    name: str | None = None,
    extra_env: dict[str, str] | None = None,
    max_array_size: int = MAX_ARRAY_SIZE,
) -> Plan:
    """Plan the jobs for a validated manifest's ``rows`` (``analyzer.fleet.manifest.ManifestRow``).

    One row: a plain video job. Otherwise one array job per ``max_array_size`` rows (a last part
    of one row becomes a plain video job: Batch arrays have 2..10000 children). An array
    child must read its manifest from S3, so a local manifest, or one over ``max_array_size`` rows,
    needs ``upload_to`` (an ``s3://bucket/prefix/``); a single-part ``s3://`` manifest is used in place.
    """
    from analyzer.fleet.manifest import format_manifest

    if not 2 <= max_array_size <= MAX_ARRAY_SIZE:
        raise ValueError(f"max_array_size must be 2..{MAX_ARRAY_SIZE}, got {max_array_size}")
    if not rows:
        raise SettingsError(f"manifest {manifest} has no rows")
    common = {"job_queue": job_queue, "job_definition": job_definition, "extra_env": extra_env}
    if len(rows) == 1:
        only = rows[0]
        return Plan([], [video_job_request(VideoJob(only.video_id, only.key), **common)])
    parts = [rows[i : i + max_array_size] for i in range(0, len(rows), max_array_size)]
    base = name or backfill_name(manifest)
    if len(parts) == 1 and is_s3_uri(manifest) and upload_to is None:
        return Plan([], [array_job_request(manifest, len(rows), name=base, **common)])
    if upload_to is None or not is_s3_uri(upload_to):
        raise SettingsError(
            f"manifest {manifest}: array children read their rows from S3; pass "
            f"--upload-to s3://bucket/prefix/ (needed for a local manifest or over "
            f"{max_array_size} rows)"
        )
    prefix = upload_to if upload_to.endswith("/") else upload_to + "/"
    uploads, requests = [], []
    for number, part in enumerate(parts, start=1):
        if len(part) == 1:  # Batch arrays have at least 2 children: a lone last row is a plain job
            requests.append(video_job_request(VideoJob(part[0].video_id, part[0].key), **common))
            continue
        part_name = base if len(parts) == 1 else f"{base}-part-{number:04d}"
        uri = f"{prefix}{part_name}.jsonl"
        uploads.append(Upload(uri, format_manifest(part)))
        requests.append(array_job_request(uri, len(part), name=part_name, **common))
    return Plan(uploads, requests)


def execute_plan(plan: Plan, batch_client: Any, s3_client: Any) -> list[str]:
    """Upload the manifest parts, then submit the jobs; returns the job ids in order."""
    for upload in plan.uploads:
        bucket, key = split_s3_uri(upload.uri)
        with s3_errors(f"manifest upload {upload.uri}", not_found=SettingsError):
            s3_client.put_object(
                Bucket=bucket, Key=key, Body=upload.text.encode("utf-8"), ContentType="application/x-ndjson"
            )
        log.info("manifest %s: uploaded", upload.uri)
    return [submit_request(batch_client, request) for request in plan.requests]


# --- stale runs (the sweep, analyzer/fleet/sweep.py, submits them) --------------------------


def stale_job(row: dict[str, Any]) -> VideoJob:
    """The job of a ``store.stale_runs`` row: what its last run read. ``input_key`` is the full
    ``s3://bucket/key`` (so the job reads the same bucket), a local path, or, in rows written
    before migration 0004, a bare key (its bucket was the job definition's default)."""
    stored = str(row["input_key"])
    if is_s3_uri(stored):
        bucket, key = split_s3_uri(stored)
        return VideoJob(int(row["video_id"]), key, bucket)
    return VideoJob(int(row["video_id"]), stored)


def stale_requests(
    rows: Sequence[dict[str, Any]], *, job_queue: str, job_definition: str, extra_env: dict[str, str] | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(row, ``batch.submit_job`` request) for each ``store.stale_runs`` row, each row logged; a row
    whose stored input cannot go into a job is logged and left out (it cannot block the others)."""
    common = {"job_queue": job_queue, "job_definition": job_definition, "extra_env": extra_env}
    if not rows:
        log.info("no video needs resubmitting", extra={"action": "stale_run"})
    planned = []
    for row in rows:
        log.info(
            "video %s: %s (job %s, exit code %s, silent %.0f s, resubmitted %s times): %s",
            row["video_id"],
            row["status"],
            row["batch_job_id"],
            row["exit_code"],
            row["silent_s"],
            row["resubmits"],
            row["error"] or "no error recorded",
            extra={"action": "stale_run"},
        )
        try:
            planned.append((row, video_job_request(stale_job(row), **common)))
        except SettingsError as exc:
            log.error("video %s: not resubmitted: %s", row["video_id"], exc, extra={"action": "stale_run"})
    return planned


# --- CLI --------------------------------------------------------------------------------------


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def register(subparsers: Any) -> None:
    """Add ``analyzer submit`` to the CLI's subparsers."""
    from analyzer.fleet.sweep import DEFAULT_MAX_RESUBMITS, DEFAULT_OLDER_THAN_S  # sweep imports this module

    parser = subparsers.add_parser(
        "submit",
        help="submit AWS Batch jobs: one video, or an array job over a manifest",
        description=__doc__.split("\n\n")[0],
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--video-id", help="video id of a single job (with --key)")
    what.add_argument(
        "--manifest", metavar="FILE|s3://", help="JSON Lines manifest of {video_id, key} rows: array job(s)"
    )
    what.add_argument(
        "--stale", action="store_true", help="one job per video whose last run died or gave up (needs DATABASE_URL)"
    )
    parser.add_argument(
        "--older-than",
        type=float,
        default=DEFAULT_OLDER_THAN_S,
        metavar="SECONDS",
        help=f"--stale: running rows silent this long (default {DEFAULT_OLDER_THAN_S:.0f})",
    )
    parser.add_argument("--limit", type=int, help="--stale: at most this many videos, oldest first")
    parser.add_argument(
        "--max-resubmits",
        type=int,
        default=DEFAULT_MAX_RESUBMITS,
        metavar="N",
        help=f"--stale: give up on a video after N resubmissions (default {DEFAULT_MAX_RESUBMITS})",
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"), help="--stale: PostgreSQL URL [$DATABASE_URL]"
    )
    parser.add_argument("--key", help="S3 key or s3://bucket/key of the single video")
    parser.add_argument("--bucket", help="bucket of --key when not the job definition's S3_BUCKET")
    parser.add_argument(
        "--upload-to",
        metavar="s3://BUCKET/PREFIX/",
        help="where to upload the manifest part(s) that array children read",
    )
    parser.add_argument("--job-name", help="array job name (default video-backfill-<manifest stem>)")
    parser.add_argument(
        "--job-queue", default=os.environ.get(JOB_QUEUE_ENV), help=f"Batch job queue (env {JOB_QUEUE_ENV})"
    )
    parser.add_argument(
        "--job-definition",
        default=os.environ.get(JOB_DEFINITION_ENV),
        help=f"Batch job definition, name[:revision] or ARN (env {JOB_DEFINITION_ENV})",
    )
    parser.add_argument(
        "--env",
        action="append",
        type=_env_pair,
        metavar="NAME=VALUE",
        help="extra environment for the job(s); repeatable",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the uploads and SubmitJob requests as JSON lines; submit nothing"
    )
    parser.set_defaults(handler=run_submit)


def build_plan(args: argparse.Namespace, s3_client: Any = None) -> Plan:
    """The plan for parsed ``analyzer submit`` arguments (reads and validates a manifest)."""
    if not args.job_queue:
        raise SettingsError(f"no job queue: pass --job-queue or set {JOB_QUEUE_ENV}")
    if not args.job_definition:
        raise SettingsError(f"no job definition: pass --job-definition or set {JOB_DEFINITION_ENV}")
    extra_env = dict(args.env or [])
    if args.manifest is None:
        if not args.key:
            raise SettingsError("--video-id needs --key")
        try:
            video_id = parse_video_id(args.video_id)
        except ValueError as exc:
            raise SettingsError(f"--video-id {exc}") from None
        job = VideoJob(video_id, args.key, args.bucket)
        return Plan(
            [],
            [video_job_request(job, job_queue=args.job_queue, job_definition=args.job_definition, extra_env=extra_env)],
        )
    if args.key or args.bucket:
        raise SettingsError("--key/--bucket apply to --video-id; a manifest row carries its key")
    from analyzer.fleet.manifest import read_manifest

    rows = read_manifest(args.manifest, s3_client if is_s3_uri(args.manifest) else None)
    return plan_backfill(
        rows,
        args.manifest,
        job_queue=args.job_queue,
        job_definition=args.job_definition,
        upload_to=args.upload_to,
        name=args.job_name,
        extra_env=extra_env,
    )


def _run_stale(args: argparse.Namespace) -> int:
    """``analyzer submit --stale``: one sweep (``analyzer.fleet.sweep``), as the schedule runs it."""
    from analyzer import logs
    from analyzer.fleet.sweep import InvalidSweepSetting, SweepSettings, sweep

    if args.key or args.bucket:
        raise SettingsError("--key/--bucket apply to --video-id; --stale uses each video's stored input")
    if not args.database_url:
        raise SettingsError("--stale needs the database: pass --database-url or set DATABASE_URL")
    if not args.job_queue:
        raise SettingsError(f"no job queue: pass --job-queue or set {JOB_QUEUE_ENV}")
    if not args.job_definition:
        raise SettingsError(f"no job definition: pass --job-definition or set {JOB_DEFINITION_ENV}")
    try:
        settings = SweepSettings(older_than_s=args.older_than, limit=args.limit, max_resubmits=args.max_resubmits)
    except InvalidSweepSetting as exc:
        flag = {"older_than_s": "--older-than", "limit": "--limit", "max_resubmits": "--max-resubmits"}[exc.field]
        raise SettingsError(f"{flag} {exc}") from None
    logs.register_secret(urlsplit(args.database_url).password)
    result = sweep(
        args.database_url,
        None if args.dry_run else _batch_client(),
        settings,
        job_queue=args.job_queue,
        job_definition=args.job_definition,
        extra_env=dict(args.env or []),
        dry_run=args.dry_run,
        metrics=sys.stderr,  # stdout is for the job lines
    )
    if args.dry_run:
        for request in result.requests:
            sys.stdout.write(json.dumps({"submit_job": _masked(request)}) + "\n")
        return 0
    for request, job_id in zip(result.requests, result.job_ids, strict=True):
        sys.stdout.write(json.dumps({"jobName": request["jobName"], "jobId": job_id}) + "\n")
    return 0


def _batch_client() -> Any:
    import boto3

    return boto3.client("batch")


def _masked(request: dict[str, Any]) -> dict[str, Any]:
    """A request whose environment values that may hold a secret are masked, for printing."""
    from analyzer.logs import mask_secret_value

    overrides = request.get("containerOverrides", {})
    environment = [
        {"name": item["name"], "value": mask_secret_value(item["name"], item["value"])}
        for item in overrides.get("environment", [])
    ]
    return {**request, "containerOverrides": {**overrides, "environment": environment}}


def run_submit(args: argparse.Namespace) -> int:
    """Handler of ``analyzer submit``; raises project errors (AnalyzerError) for the CLI to map."""
    from analyzer.source.s3 import default_s3_client

    if args.stale:
        return _run_stale(args)
    s3_client = default_s3_client()
    plan = build_plan(args, s3_client)
    if args.dry_run:
        for upload in plan.uploads:
            rows = upload.text.count("\n")
            sys.stdout.write(json.dumps({"upload": upload.uri, "rows": rows}) + "\n")
        for request in plan.requests:
            sys.stdout.write(json.dumps({"submit_job": _masked(request)}) + "\n")
        return 0
    job_ids = execute_plan(plan, _batch_client(), s3_client)
    for request, job_id in zip(plan.requests, job_ids, strict=True):
        sys.stdout.write(json.dumps({"jobName": request["jobName"], "jobId": job_id}) + "\n")
    return 0
