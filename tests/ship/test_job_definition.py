"""The AWS Batch job definition: retry rules agree with the exit-code enum, resources fit a g5.xlarge."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from enum import IntEnum
from pathlib import Path
from typing import Any

import pytest

from analyzer.errors import ExitCode
from tests.ship.conftest import DEFINITION, FILL, REPO, job_env

JOB_DEFINITION = REPO / "deploy" / "batch" / "job-definition.json"
G5_XLARGE_MIB = 16 * 1024  # the instance; ECS registers somewhat less for tasks


def definition() -> dict[str, Any]:
    return json.loads(JOB_DEFINITION.read_text())


def _glob(pattern: str, value: str | None) -> bool:
    """Batch's patterns: exact, or a prefix ending in ``*``; an absent value is empty."""
    value = value or ""
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


def batch_action(
    rules: list[dict[str, str]],
    exit_code: int | None = None,
    reason: str | None = None,
    status_reason: str | None = None,
) -> str:
    """What AWS Batch does with a failed attempt: the first rule whose conditions all match."""
    for rule in rules:
        if "onExitCode" in rule and (exit_code is None or not _glob(rule["onExitCode"], str(exit_code))):
            continue
        if "onReason" in rule and not _glob(rule["onReason"], reason):
            continue
        if "onStatusReason" in rule and not _glob(rule["onStatusReason"], status_reason):
            continue
        return rule["action"].upper()
    return "RETRY"  # Batch retries a failure that no rule matches


def rules() -> list[dict[str, str]]:
    return definition()["retryStrategy"]["evaluateOnExit"]


def test_rules_in_the_file_are_the_ones_the_enum_gives(render):
    assert rules() == render.retry_rules()
    assert render.check() == []
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "render.py"), "check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("code", [c for c in ExitCode if c is not ExitCode.OK])
def test_each_exit_code_retries_exactly_when_retryable(code: ExitCode):
    action = batch_action(rules(), exit_code=int(code), reason=None, status_reason="Essential container in task exited")
    assert action == ("RETRY" if code.retryable else "EXIT")


@pytest.mark.parametrize(
    ("exit_code", "reason", "status_reason", "expected"),
    [
        (143, None, "Host EC2 (instance i-0abc) terminated.", "RETRY"),  # Spot reclaim
        (None, None, "Host EC2 (instance i-0abc) terminated.", "RETRY"),
        (1, None, "Essential container in task exited", "EXIT"),  # not ours: exit
        (137, "OutOfMemoryError: Container killed due to memory usage", "", "EXIT"),
        (None, "CannotPullContainerError: pull image manifest has been retried", "", "EXIT"),
        (None, None, None, "EXIT"),
    ],
)
def test_other_failures(exit_code, reason, status_reason, expected):
    assert batch_action(rules(), exit_code, reason, status_reason) == expected


def test_rule_shape_and_limits():
    found = rules()
    assert 1 <= len(found) <= 5
    assert found[-1] == {"onReason": "*", "action": "EXIT"}  # the catch-all, last
    for rule in found:
        assert rule["action"] in ("RETRY", "EXIT")
        assert set(rule) - {"action"} <= {"onExitCode", "onReason", "onStatusReason"}
        if "onExitCode" in rule:
            assert re.fullmatch(r"[0-9]+\*?|\*", rule["onExitCode"])
        for key in ("onReason", "onStatusReason"):
            if key in rule:
                assert re.fullmatch(r"[A-Za-z0-9.: \t]*\*?", rule[key]) and len(rule[key]) <= 512
    assert definition()["retryStrategy"]["attempts"] >= 2


def test_a_changed_enum_is_caught(render, tmp_path: Path):
    class Widened(IntEnum):
        OK = 0
        RETRYABLE = 75
        SLOW_DOWN = 76

        @property
        def retryable(self) -> bool:
            return self in (Widened.RETRYABLE, Widened.SLOW_DOWN)

    widened = render.retry_rules(tuple(Widened))
    assert {"onExitCode": "76", "action": "RETRY"} in widened
    stale = tmp_path / "job-definition.json"
    doc = definition()
    doc["retryStrategy"]["evaluateOnExit"] = [r for r in rules() if r.get("onExitCode") != "75"]
    stale.write_text(json.dumps(doc))
    assert render.check(stale)  # reported
    render.write(stale)
    assert render.check(stale) == []


def test_too_many_rules_are_refused(render):
    class Many(IntEnum):
        A = 70
        B = 71
        C = 72
        D = 73

        @property
        def retryable(self) -> bool:
            return True

    with pytest.raises(ValueError, match="allows 5"):
        render.retry_rules(tuple(Many))


def test_resources_fit_one_g5_xlarge():
    container = definition()["containerProperties"]
    resources = {r["type"]: int(r["value"]) for r in container["resourceRequirements"]}
    assert resources["GPU"] == 1 and resources["VCPU"] == 4
    assert 12 * 1024 <= resources["MEMORY"] < G5_XLARGE_MIB - 1024
    assert definition()["platformCapabilities"] == ["EC2"]  # GPUs need EC2, not Fargate
    assert 600 <= definition()["timeout"]["attemptDurationSeconds"] <= 6 * 3600


def test_environment_and_secrets():
    container = definition()["containerProperties"]
    env = {item["name"]: item["value"] for item in container["environment"]}
    assert env["S3_BUCKET"] == "${BUCKET}"
    assert not {"VideoKey", "VIDEO_KEY", "video_id", "VIDEO_ID", "DATABASE_URL"} & set(env)
    assert [s["name"] for s in container["secrets"]] == ["DATABASE_URL"]
    assert container["logConfiguration"]["logDriver"] == "awslogs"


def test_fill_refuses_missing_and_unused_values(render):
    text = JOB_DEFINITION.read_text()
    assert render.placeholders(text) == set(FILL)
    with pytest.raises(ValueError, match="missing values for \\['REGION'\\]"):
        render.fill(text, {k: v for k, v in FILL.items() if k != "REGION"})
    with pytest.raises(ValueError, match="unused values \\['EXTRA'\\]"):
        render.fill(text, {**FILL, "EXTRA": "x"})


def test_registers_in_batch_and_jobs_inherit_it(stack):
    [registered] = stack.batch.describe_job_definitions(jobDefinitionName=DEFINITION)["jobDefinitions"]
    as_registered = registered["retryStrategy"]["evaluateOnExit"]
    assert [{**r, "action": r["action"].upper()} for r in as_registered] == rules()
    stack.batch.submit_job(
        jobName="video-process-1",
        jobQueue="video-analyzer",
        jobDefinition=DEFINITION,
        containerOverrides={"environment": [{"name": "video_id", "value": "1"}]},
    )
    [job] = stack.jobs()
    env = job_env(job)
    assert env["S3_BUCKET"] == FILL["BUCKET"] and env["video_id"] == "1"


def test_fill_command_takes_values_from_the_environment(tmp_path: Path):
    import os

    command = [sys.executable, str(REPO / "deploy" / "render.py"), "fill", str(JOB_DEFINITION)]
    env = {**os.environ, **FILL}
    done = subprocess.run([*command, "IMAGE_TAG=2.0.1"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["containerProperties"]["image"].endswith("video-analyzer:2.0.1")
    env.pop("REGION")
    refused = subprocess.run(command, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "REGION" in refused.stderr and refused.stdout == ""


def test_attempt_timeout_is_derived_from_the_duration_limit(render):
    """Every accepted video must fit in one attempt: Batch does not retry a timed-out attempt."""
    from analyzer.settings import spec

    limit = spec("max_duration_s").default
    timeout = definition()["timeout"]["attemptDurationSeconds"]
    assert render.max_duration_s(definition()) == limit
    assert timeout == render.attempt_duration_s(limit)
    assert timeout >= limit / render.WORST_REALTIME_FACTOR + render.ATTEMPT_MARGIN_S
    assert render.WORST_REALTIME_FACTOR <= 4.2 / 4  # at most the H200 figure with 4x the pixels
    assert timeout > limit / 4.2  # the case: 4 h of video at 4.2x needs 57 min plus start-up


def test_a_changed_duration_limit_is_caught(render, tmp_path: Path):
    doc = definition()
    doc["containerProperties"]["environment"].append({"name": "ANALYZER_MAX_DURATION_S", "value": "7200"})
    stale = tmp_path / "job-definition.json"
    stale.write_text(json.dumps(doc))
    [problem] = render.check(stale)
    assert "attemptDurationSeconds is 15300" in problem and "7200" in problem
    render.write(stale)
    assert render.check(stale) == []
    assert render.load(stale)["timeout"]["attemptDurationSeconds"] == 7200 + render.ATTEMPT_MARGIN_S
