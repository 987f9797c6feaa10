"""Run metrics for CloudWatch as Embedded Metric Format (EMF) log lines.

The worker prints one JSON object per run to stdout; the Batch job's ``awslogs`` driver sends it to
CloudWatch Logs, which extracts the metrics from it. No ``cloudwatch:PutMetricData`` call, no
agent and no extra IAM permission are needed, and the metrics cannot be lost to a network error
at the very end of a run.

Why a small writer and not the ``aws-embedded-metrics`` library: that library is built around an
async flush and picks its sink by sniffing the environment; on ECS/EC2 (where Batch runs) it sends
to a CloudWatch agent over TCP unless ``AWS_EMF_ENVIRONMENT=Local`` is set, and no agent runs in
the job. A one-shot process writing one line needs none of that: the format is a documented JSON
shape (``_aws.Timestamp`` plus ``_aws.CloudWatchMetrics`` directives of Namespace, Dimensions and
Metrics, the values as top-level members).

Metrics (namespace ``VideoAnalyzer`` unless ``ANALYZER_METRICS_NAMESPACE`` is set), every one with
dimension ``QueueName`` (``AWS_BATCH_JQ_NAME``; ``local`` outside Batch):

================  =======  =====================================================
name              unit     value
================  =======  =====================================================
RunSucceeded      Count    1 when the run analysed the video, else 0
DuplicateRunSkipped Count  1 when the run was a duplicate (lock held elsewhere, or
                           this input and model already succeeded), else 0
RunFailed         Count    1 when the run failed, else 0; also emitted with the
                           dimensions ``QueueName, ExitCode`` on failure
FramesDecoded     Count    sampled frames analysed
FacesDetected     Count    face detections over all sampled frames
EventsWritten     Count    Event rows stored
ProcessingSeconds Seconds  wall time of the run
RealtimeFactor    None     video duration / processing time (>1 is faster than real time)
================  =======  =====================================================

The stale sweep (``analyzer/fleet/sweep.py``) writes one line per sweep, without dimensions (one
sweep per deployment): ``StaleRunsResubmitted`` (Count, videos resubmitted) and ``StaleRunsGivenUp``
(Count, videos given up on by this sweep, each counted once: what the alarm watches).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TextIO

log = logging.getLogger(__name__)

NAMESPACE_ENV = "ANALYZER_METRICS_NAMESPACE"
DEFAULT_NAMESPACE = "VideoAnalyzer"
LOCAL_QUEUE_NAME = "local"  # QueueName dimension outside AWS Batch (no AWS_BATCH_JQ_NAME)
QUEUE_DIMENSION = "QueueName"
EXIT_CODE_DIMENSION = "ExitCode"


class Outcome(StrEnum):
    """How a run ended, as the runner sees it."""

    SUCCEEDED = "succeeded"
    DUPLICATE = "duplicate"  # skipped: lock held by another run, or already done for this input/model
    FAILED = "failed"


COUNTERS = {
    Outcome.SUCCEEDED: "RunSucceeded",
    Outcome.DUPLICATE: "DuplicateRunSkipped",
    Outcome.FAILED: "RunFailed",
}
# metric name -> (keyword of emit_run_metrics, CloudWatch unit)
MEASURES = {
    "FramesDecoded": ("frames", "Count"),
    "FacesDetected": ("faces", "Count"),
    "EventsWritten": ("events", "Count"),
    "ProcessingSeconds": ("seconds", "Seconds"),
    "RealtimeFactor": ("realtime_factor", "None"),
}


def build_run_metrics(
    outcome: Outcome | str,
    exit_code: int,
    *,
    queue: str | None,
    frames: int | None = None,
    faces: int | None = None,
    events: int | None = None,
    seconds: float | None = None,
    realtime_factor: float | None = None,
    namespace: str | None = None,
    properties: Mapping[str, Any] | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """The EMF document for one run (see the module docstring for names and units).

    ``outcome`` succeeded/duplicate needs ``exit_code`` 0 and failed a non-zero one (ValueError
    otherwise). Measures left ``None`` are not emitted; a non-finite one is dropped with a warning
    (JSON has no NaN). ``properties`` (e.g. ``video_id``, ``job_id``) become searchable members of
    the log line, not metrics.
    """
    outcome = Outcome(outcome)
    if (outcome is Outcome.FAILED) == (int(exit_code) == 0):
        raise ValueError(f"outcome {outcome.value} does not fit exit code {exit_code}")
    queue_name = queue or LOCAL_QUEUE_NAME
    doc: dict[str, Any] = {QUEUE_DIMENSION: queue_name}
    metrics = []
    for kind, name in COUNTERS.items():
        doc[name] = 1 if outcome is kind else 0
        metrics.append({"Name": name, "Unit": "Count"})
    given = {"frames": frames, "faces": faces, "events": events, "seconds": seconds, "realtime_factor": realtime_factor}
    for name, (keyword, unit) in MEASURES.items():
        value = given[keyword]
        if value is None:
            continue
        if not math.isfinite(value):
            log.warning("metrics: %s is %s; not emitted", name, value)
            continue
        doc[name] = value
        metrics.append({"Name": name, "Unit": unit})
    namespace = namespace or os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE
    directives = [{"Namespace": namespace, "Dimensions": [[QUEUE_DIMENSION]], "Metrics": metrics}]
    if outcome is Outcome.FAILED:
        doc[EXIT_CODE_DIMENSION] = str(int(exit_code))
        directives.append(
            {
                "Namespace": namespace,
                "Dimensions": [[QUEUE_DIMENSION, EXIT_CODE_DIMENSION]],
                "Metrics": [{"Name": COUNTERS[Outcome.FAILED], "Unit": "Count"}],
            }
        )
    for key, value in (properties or {}).items():
        if key in doc or key == "_aws":
            raise ValueError(f"property {key!r} clashes with a metric or dimension name")
        doc[key] = value
    doc["_aws"] = {
        "Timestamp": int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms),
        "CloudWatchMetrics": directives,
    }
    return doc


def emit_run_metrics(
    outcome: Outcome | str,
    exit_code: int,
    *,
    queue: str | None,
    frames: int | None = None,
    faces: int | None = None,
    events: int | None = None,
    seconds: float | None = None,
    realtime_factor: float | None = None,
    namespace: str | None = None,
    properties: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Write the run's EMF line to ``stream`` (stdout by default) and return the document.

    Called once by the runner at the end of every run, duplicates and failures included. Metrics
    are best effort: a write error (closed stdout) is logged, never raised, so it cannot change
    the run's exit code.
    """
    doc = build_run_metrics(
        outcome,
        exit_code,
        queue=queue,
        frames=frames,
        faces=faces,
        events=events,
        seconds=seconds,
        realtime_factor=realtime_factor,
        namespace=namespace,
        properties=properties,
    )
    _write(doc, stream)
    return doc


def build_sweep_metrics(
    resubmitted: int,
    given_up: int,
    *,
    namespace: str | None = None,
    properties: Mapping[str, Any] | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """The EMF document of one stale sweep: ``StaleRunsResubmitted`` and ``StaleRunsGivenUp``."""
    doc: dict[str, Any] = {"StaleRunsResubmitted": int(resubmitted), "StaleRunsGivenUp": int(given_up)}
    for key, value in (properties or {}).items():
        if key in doc or key == "_aws":
            raise ValueError(f"property {key!r} clashes with a metric name")
        doc[key] = value
    doc["_aws"] = {
        "Timestamp": int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms),
        "CloudWatchMetrics": [
            {
                "Namespace": namespace or os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{"Name": name, "Unit": "Count"} for name in ("StaleRunsResubmitted", "StaleRunsGivenUp")],
            }
        ],
    }
    return doc


def emit_sweep_metrics(
    resubmitted: int, given_up: int, *, properties: Mapping[str, Any] | None = None, stream: TextIO | None = None
) -> dict[str, Any]:
    """Write the sweep's EMF line to ``stream`` (stdout: the Lambda's log) and return the document."""
    doc = build_sweep_metrics(resubmitted, given_up, properties=properties)
    _write(doc, stream)
    return doc


def _write(doc: dict[str, Any], stream: TextIO | None) -> None:
    """One EMF line; best effort: a write error (closed stdout) is logged, never raised."""
    line = json.dumps(doc, separators=(",", ":"), allow_nan=False, default=str)
    out = stream if stream is not None else sys.stdout
    try:
        out.write(line + "\n")
        out.flush()
    except (OSError, ValueError):  # ValueError: I/O operation on closed file
        log.error("metrics: cannot write the EMF line", exc_info=True)
