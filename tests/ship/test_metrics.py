"""EMF log lines: checked against the CloudWatch Embedded Metric Format specification."""

from __future__ import annotations

import io
import json
import logging
import math
import time
from typing import Any

import pytest

from analyzer.fleet import metrics

# CloudWatch's StandardUnit values
UNITS = {
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
}


def check_emf(doc: dict[str, Any]) -> None:
    """Assert ``doc`` is a valid EMF document (structure, limits, every reference resolved)."""
    aws = doc["_aws"]
    assert isinstance(aws["Timestamp"], int) and not isinstance(aws["Timestamp"], bool)
    assert abs(aws["Timestamp"] - time.time() * 1000) < 60_000  # milliseconds since the epoch
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(doc[name], str) and 1 <= len(doc[name]) <= 1024
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert metric["Unit"] in UNITS
            value = doc[metric["Name"]]
            assert isinstance(value, (int, float)) and not isinstance(value, bool)
            assert math.isfinite(value)


def emitted(**kwargs: Any) -> dict[str, Any]:
    stream = io.StringIO()
    doc = metrics.emit_run_metrics(stream=stream, **kwargs)
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1  # one log event
    parsed = json.loads(text)
    assert parsed == json.loads(json.dumps(doc))
    check_emf(parsed)
    return parsed


def metric_names(doc: dict[str, Any], dimensions: list[str]) -> set[str]:
    return {m["Name"] for d in doc["_aws"]["CloudWatchMetrics"] if dimensions in d["Dimensions"] for m in d["Metrics"]}


def test_succeeded_run():
    doc = emitted(
        outcome="succeeded",
        exit_code=0,
        queue="video-analyzer",
        frames=275,
        faces=412,
        events=9,
        seconds=12.5,
        realtime_factor=0.73,
        properties={"video_id": 84, "batch_job_id": "abc-1"},
    )
    assert doc["QueueName"] == "video-analyzer"
    assert (doc["RunSucceeded"], doc["DuplicateRunSkipped"], doc["RunFailed"]) == (1, 0, 0)
    assert (doc["FramesDecoded"], doc["FacesDetected"], doc["EventsWritten"]) == (275, 412, 9)
    assert (doc["ProcessingSeconds"], doc["RealtimeFactor"]) == (12.5, 0.73)
    assert doc["video_id"] == 84 and doc["batch_job_id"] == "abc-1"  # searchable, not metrics
    assert metric_names(doc, ["QueueName"]) == {
        "RunSucceeded",
        "DuplicateRunSkipped",
        "RunFailed",
        "FramesDecoded",
        "FacesDetected",
        "EventsWritten",
        "ProcessingSeconds",
        "RealtimeFactor",
    }
    units = {m["Name"]: m["Unit"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["ProcessingSeconds"] == "Seconds" and units["FramesDecoded"] == "Count"
    assert "ExitCode" not in doc and doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "VideoAnalyzer"


def test_duplicate_run_counts_and_omits_missing_measures():
    doc = emitted(outcome=metrics.Outcome.DUPLICATE, exit_code=0, queue="video-analyzer", seconds=0.21)
    assert (doc["RunSucceeded"], doc["DuplicateRunSkipped"], doc["RunFailed"]) == (0, 1, 0)
    assert "FramesDecoded" not in doc and "EventsWritten" not in doc
    assert metric_names(doc, ["QueueName"]) == {"RunSucceeded", "DuplicateRunSkipped", "RunFailed", "ProcessingSeconds"}


def test_failed_run_is_also_counted_by_exit_code():
    doc = emitted(outcome="failed", exit_code=75, queue="video-analyzer", seconds=3.0)
    assert doc["RunFailed"] == 1 and doc["ExitCode"] == "75"
    assert metric_names(doc, ["QueueName", "ExitCode"]) == {"RunFailed"}
    assert "RunFailed" in metric_names(doc, ["QueueName"])  # the total, for one alarm


def test_local_run_and_namespace_override(monkeypatch):
    monkeypatch.setenv("ANALYZER_METRICS_NAMESPACE", "VideoAnalyzerStaging")
    doc = emitted(outcome="succeeded", exit_code=0, queue=None)
    assert doc["QueueName"] == "local"
    assert {d["Namespace"] for d in doc["_aws"]["CloudWatchMetrics"]} == {"VideoAnalyzerStaging"}


def test_non_finite_measure_is_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="analyzer.fleet.metrics"):
        doc = emitted(outcome="succeeded", exit_code=0, queue="q", seconds=0.0, realtime_factor=float("inf"))
    assert "RealtimeFactor" not in doc and doc["ProcessingSeconds"] == 0.0
    assert "RealtimeFactor" in caplog.text


@pytest.mark.parametrize(("outcome", "code"), [("succeeded", 9), ("duplicate", 75), ("failed", 0), ("exploded", 0)])
def test_outcome_must_fit_exit_code(outcome, code):
    with pytest.raises(ValueError):
        metrics.build_run_metrics(outcome, code, queue="q")


def test_property_cannot_shadow_a_metric():
    with pytest.raises(ValueError, match="RunFailed"):
        metrics.build_run_metrics("succeeded", 0, queue="q", properties={"RunFailed": 3})


def test_writes_to_stdout_by_default(capsys):
    metrics.emit_run_metrics("failed", 5, queue="video-analyzer")
    check_emf(json.loads(capsys.readouterr().out))


def test_closed_stream_is_logged_not_raised(caplog):
    stream = io.StringIO()
    stream.close()
    with caplog.at_level(logging.ERROR, logger="analyzer.fleet.metrics"):
        doc = metrics.emit_run_metrics("succeeded", 0, queue="q", stream=stream)
    assert doc["RunSucceeded"] == 1
    assert "cannot write the EMF line" in caplog.text
