"""The stale sweep: resubmit the videos whose last run died or gave up, a bounded number of times.

One code path for both entry points: ``analyzer submit --stale`` (by hand) and the dispatcher
Lambda on its EventBridge schedule (``rate(15 minutes)``; ``analyzer.fleet.dispatch.handler``
routes a ``Scheduled Event`` here). A sweep:

1. reads the stale rows of ``video_analyses`` (``store.postgres.stale_runs``): ``running`` rows
   whose heartbeat stopped ``older_than_s`` ago (killed, instance lost, a frozen worker),
   ``interrupted`` rows (SIGTERM: cancel, Batch timeout, Spot reclaim, a stop while waiting for a
   lock) and ``failed`` rows with a retryable exit code (75: Batch ran out of attempts), oldest
   first, at most ``limit``. Rows resubmitted less than ``pending_s`` ago whose job has not begun a
   run since (it may still wait in the queue) and rows given up on are left out;
2. gives up on a video resubmitted ``max_resubmits`` times since its last success: one ERROR line,
   counted once in ``StaleRunsGivenUp`` (the alarm's metric), and never resubmitted by a sweep
   again (a success, e.g. after ``analyzer submit --video-id``, resets the count); a dry run lists
   the videos given up on;
3. submits one job per other video, reading what its last run read (the stored ``s3://bucket/key``:
   the same bucket, not the job definition's default), and counts it on the video's row;
4. writes one CloudWatch EMF line: ``StaleRunsResubmitted`` and ``StaleRunsGivenUp``
   (namespace ``VideoAnalyzer``, no dimensions; ``analyzer.fleet.metrics``).

Settings of the scheduled sweep (the Lambda's environment): ``DATABASE_URL`` (as the dispatcher
reads it), ``SWEEP_OLDER_THAN_S`` (600), ``SWEEP_LIMIT`` (100), ``SWEEP_MAX_RESUBMITS`` (3), and the
dispatcher's ``ANALYZER_JOB_QUEUE`` and ``ANALYZER_JOB_DEFINITION``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from analyzer.errors import SettingsError
from analyzer.fleet.metrics import emit_sweep_metrics
from analyzer.fleet.submit import stale_requests, submit_request

log = logging.getLogger(__name__)

OLDER_THAN_ENV = "SWEEP_OLDER_THAN_S"
LIMIT_ENV = "SWEEP_LIMIT"
MAX_RESUBMITS_ENV = "SWEEP_MAX_RESUBMITS"
DEFAULT_OLDER_THAN_S = 600.0  # far above a live worker's heartbeat gap (30 s at the default settings)
DEFAULT_LIMIT = 100
DEFAULT_MAX_RESUBMITS = 3
# A resubmitted job that has not begun a run within this long is resubmitted again (and counted):
# it was lost (cancelled in the queue, failed to start); until then it may just wait for capacity.
PENDING_S = 3600.0


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep chooses (see the module docstring)."""

    older_than_s: float = DEFAULT_OLDER_THAN_S
    limit: int | None = DEFAULT_LIMIT
    max_resubmits: int = DEFAULT_MAX_RESUBMITS
    pending_s: float = PENDING_S

    def __post_init__(self) -> None:
        for name, valid, rule in (
            ("older_than_s", self.older_than_s > 0, "seconds > 0"),
            ("limit", self.limit is None or self.limit >= 1, "at least 1"),
            ("max_resubmits", self.max_resubmits >= 0, "0 or more"),
        ):
            if not valid:
                raise InvalidSweepSetting(name, f"must be {rule}, got {getattr(self, name)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SweepSettings:
        """The scheduled sweep's settings from the Lambda's environment (defaults when unset).

        Raises:
            SettingsError: naming the variable that is not a number or out of range.
        """
        variables = {"older_than_s": OLDER_THAN_ENV, "limit": LIMIT_ENV, "max_resubmits": MAX_RESUBMITS_ENV}
        parsers = {"older_than_s": float, "limit": int, "max_resubmits": int}
        values: dict[str, Any] = {}
        for name, variable in variables.items():
            text = env.get(variable, "").strip()
            if text:
                try:
                    values[name] = parsers[name](text)
                except ValueError:
                    raise SettingsError(f"stale sweep: invalid {variable}: {text!r} is not a number") from None
        try:
            return cls(**values)
        except InvalidSweepSetting as exc:
            raise SettingsError(f"stale sweep: invalid {variables[exc.field]}: {exc}") from None


class InvalidSweepSetting(ValueError):
    """A sweep setting out of range; ``field`` names it (each entry point names it its own way)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class SweepResult:
    """What one sweep did: the job requests (submitted, or only planned by a dry run), their job
    ids (none in a dry run), and the videos given up on by this sweep."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    given_up: list[int] = field(default_factory=list)


def sweep(
    database_url: str,
    batch_client: Any,
    settings: SweepSettings,
    *,
    job_queue: str,
    job_definition: str,
    extra_env: dict[str, str] | None = None,
    dry_run: bool = False,
    metrics: TextIO | None = None,
) -> SweepResult:
    """One sweep (see the module docstring); a dry run only reads, plans and logs. The EMF line goes
    to ``metrics`` (stdout by default: the Lambda's log).

    Raises:
        InfrastructureError: the database or Batch is unreachable (the metrics line still says
            what was done before).
        SettingsError, AccessDenied: Batch refused the queue, the definition or the caller.
    """
    from analyzer.store import db
    from analyzer.store.postgres import count_resubmit, give_up, given_up_runs, stale_runs

    result = SweepResult()
    with db.connect(database_url, "analyzer:sweep") as conn:
        rows = stale_runs(conn, settings.older_than_s, settings.limit, settings.pending_s)
        over = [row for row in rows if row["resubmits"] >= settings.max_resubmits]
        due = stale_requests(
            [row for row in rows if row["resubmits"] < settings.max_resubmits],
            job_queue=job_queue,
            job_definition=job_definition,
            extra_env=extra_env,
        )
        if dry_run:
            for row in over:
                log.info("video %s: would be given up on (%s resubmissions)", row["video_id"], row["resubmits"])
            for row in given_up_runs(conn, settings.limit):
                log.info(
                    "video %s: given up on at %s after %s resubmissions: last run %s (exit code %s): %s",
                    row["video_id"],
                    row["given_up_at"].isoformat(timespec="seconds"),
                    row["resubmits"],
                    row["status"],
                    row["exit_code"],
                    row["error"] or "no error recorded",
                    extra={"action": "stale_given_up"},
                )
            result.requests = [request for _, request in due]
            return result
        try:
            for row in over:
                if give_up(conn, row):
                    _log_given_up(row)
                    result.given_up.append(int(row["video_id"]))
            for row, request in due:
                job_id = submit_request(batch_client, request)
                result.requests.append(request)
                result.job_ids.append(job_id)
                if not count_resubmit(conn, row):  # a run began meanwhile: the job is a harmless duplicate
                    log.info("video %s: its row changed meanwhile; resubmission not counted", row["video_id"])
        finally:
            emit_sweep_metrics(
                len(result.job_ids), len(result.given_up), properties={"action": "stale_sweep"}, stream=metrics
            )
    log.info(
        "stale sweep: %d videos resubmitted, %d given up on",
        len(result.job_ids),
        len(result.given_up),
        extra={"action": "stale_sweep"},
    )
    return result


def _log_given_up(row: Mapping[str, Any]) -> None:
    log.error(
        "video %s: given up after %d resubmissions: last run %s (exit code %s): %s; "
        "resubmit it by hand once the cause is fixed (analyzer submit --video-id)",
        row["video_id"],
        row["resubmits"],
        row["status"],
        row["exit_code"],
        row["error"] or "no error recorded",
        extra={"action": "stale_given_up"},
    )
