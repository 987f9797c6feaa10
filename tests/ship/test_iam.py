"""deploy/ templates: valid JSON, least-privilege IAM, names that agree across files."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from analyzer.fleet import metrics
from tests.ship.conftest import ACCOUNT_ID, BUCKET, FILL, REGION, REPO

DEPLOY = REPO / "deploy"
EXTRA = {"SUBNET_ID": "subnet-0abc", "SECURITY_GROUP_ID": "sg-0abc"}
POLICIES = sorted((DEPLOY / "iam").glob("*-policy.json"))
B = f"arn:aws:s3:::{BUCKET}"


def filled(path: Path) -> Any:
    from tests.ship.conftest import load_render

    render = load_render()
    text = path.read_text()
    values = {k: v for k, v in {**FILL, **EXTRA}.items() if k in render.placeholders(text)}
    return json.loads(render.fill(text, values))


def allowed(policy: dict[str, Any], action: str, resource: str) -> bool:
    """Whether an identity policy allows ``action`` on ``resource`` (conditions taken as met)."""
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if (
            statement["Effect"] == "Allow"
            and any(fnmatchcase(action.lower(), a.lower()) for a in actions)
            and any(fnmatchcase(resource, r) for r in resources)
        ):
            return True
    return False


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.json")), ids=lambda p: p.name)
def test_every_template_fills_to_valid_json(path: Path):
    filled(path)


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_policies_grant_narrowly(path: Path):
    policy = filled(path)
    assert policy["Version"] == "2012-10-17"
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and statement.get("Sid")
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(not a.endswith("*") for a in actions), actions  # no wildcard actions
        if statement["Resource"] == "*":  # only actions that have no resource scope
            assert set(actions) <= {"ecr:GetAuthorizationToken", "batch:DescribeJobs", "batch:ListJobs"}, actions


def test_job_role_reads_videos_and_manifests_only():
    policy = filled(DEPLOY / "iam" / "job-role-policy.json")
    assert allowed(policy, "s3:GetObject", f"{B}/videos/2025/12/29/6f1c_talk.mp4")
    assert allowed(policy, "s3:GetObject", f"{B}/manifests/upgrade.jsonl")
    assert not allowed(policy, "s3:GetObject", f"{B}/private/passwords.txt")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::another-bucket/videos/x.mp4")
    assert not allowed(policy, "s3:PutObject", f"{B}/videos/x.mp4")
    assert not allowed(policy, "s3:DeleteObject", f"{B}/videos/x.mp4")
    # metrics travel as EMF log lines: no PutMetricData, no logs permission on the job role
    assert not allowed(policy, "cloudwatch:PutMetricData", "*")
    assert not allowed(policy, "logs:PutLogEvents", "*")


def test_execution_role_matches_the_job_definition():
    policy = filled(DEPLOY / "iam" / "execution-role-policy.json")
    job = filled(DEPLOY / "batch" / "job-definition.json")["containerProperties"]
    group = job["logConfiguration"]["options"]["awslogs-group"]
    stream = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{group}:log-stream:worker/x/y"
    assert allowed(policy, "logs:PutLogEvents", stream)
    assert not allowed(policy, "logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/other:log-stream:s")
    assert allowed(policy, "ssm:GetParameters", job["secrets"][0]["valueFrom"])
    repository = job["image"].split("/", 1)[1].split(":")[0]
    assert allowed(policy, "ecr:BatchGetImage", f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{repository}")
    assert job["executionRoleArn"].endswith("role/video-analyzer-execution")


@pytest.mark.parametrize("name", ["dispatcher-policy.json", "submitter-policy.json"])
def test_submitters_can_submit_to_the_queue_and_definition_only(name: str):
    policy = filled(DEPLOY / "iam" / name)
    queue = filled(DEPLOY / "batch" / "job-queue.json")["jobQueueName"]
    definition = filled(DEPLOY / "batch" / "job-definition.json")["jobDefinitionName"]
    arn = f"arn:aws:batch:{REGION}:{ACCOUNT_ID}"
    assert allowed(policy, "batch:SubmitJob", f"{arn}:job-queue/{queue}")
    assert allowed(policy, "batch:SubmitJob", f"{arn}:job-definition/{definition}:7")
    assert allowed(policy, "batch:TagResource", f"{arn}:job/0b6c-1")  # tags given on submit
    assert not allowed(policy, "batch:SubmitJob", f"{arn}:job-queue/someone-elses-queue")
    assert not allowed(policy, "batch:CancelJob", f"{arn}:job/0b6c-1")


def test_dispatcher_consumes_the_queue_s3_notifies():
    policy = filled(DEPLOY / "iam" / "dispatcher-policy.json")
    notification = filled(DEPLOY / "sqs" / "s3-notification.json")["QueueConfigurations"][0]
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert allowed(policy, action, notification["QueueArn"])
    assert not allowed(policy, "sqs:SendMessage", notification["QueueArn"])
    queue_policy = json.loads(filled(DEPLOY / "sqs" / "queue-attributes.json")["Policy"])
    assert queue_policy["Statement"][0]["Resource"] == notification["QueueArn"]
    assert queue_policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == B


def test_alarms_watch_the_metrics_the_worker_emits():
    queue = filled(DEPLOY / "batch" / "job-queue.json")["jobQueueName"]
    namespace = next(
        e["value"]
        for e in filled(DEPLOY / "batch" / "job-definition.json")["containerProperties"]["environment"]
        if e["name"] == metrics.NAMESPACE_ENV
    )
    duplicate = filled(DEPLOY / "cloudwatch" / "duplicate-alarm.json")
    failure = filled(DEPLOY / "cloudwatch" / "failure-alarm.json")
    assert duplicate["MetricName"] == metrics.COUNTERS[metrics.Outcome.DUPLICATE]
    assert failure["MetricName"] == metrics.COUNTERS[metrics.Outcome.FAILED]
    for alarm in (duplicate, failure):
        assert alarm["Namespace"] == namespace == metrics.DEFAULT_NAMESPACE
        assert alarm["Dimensions"] == [{"Name": metrics.QUEUE_DIMENSION, "Value": queue}]
        assert alarm["Statistic"] == "Sum" and alarm["TreatMissingData"] == "notBreaching"


def test_placeholders_are_the_documented_ones():
    from tests.ship.conftest import load_render

    render = load_render()
    used = set().union(*(render.placeholders(p.read_text()) for p in DEPLOY.rglob("*.json")))
    assert used == set(FILL) | set(EXTRA)
    docs = (REPO / "docs" / "deploy.md").read_text()
    for name in used:
        assert re.search(rf"\b{name}=", docs), f"docs/deploy.md does not say how to set {name}"


def test_the_dispatcher_files_name_the_queue_definition_and_upload_queue():
    function = filled(DEPLOY / "lambda" / "dispatcher.json")
    env = function["Environment"]["Variables"]
    assert env["ANALYZER_JOB_QUEUE"] == filled(DEPLOY / "batch" / "job-queue.json")["jobQueueName"]
    assert env["ANALYZER_JOB_DEFINITION"] == filled(DEPLOY / "batch" / "job-definition.json")["jobDefinitionName"]
    assert "DATABASE_URL" not in env  # a secret: given to the function by the stack's NoEcho parameter
    assert function["Role"] == f"arn:aws:iam::{ACCOUNT_ID}:role/video-analyzer-dispatch"
    mapping = filled(DEPLOY / "lambda" / "event-source-mapping.json")
    notification = filled(DEPLOY / "sqs" / "s3-notification.json")["QueueConfigurations"][0]
    assert mapping["EventSourceArn"] == notification["QueueArn"]
    assert mapping["FunctionName"] == function["FunctionName"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # else Lambda ignores partial failures
    visibility = int(filled(DEPLOY / "sqs" / "queue-attributes.json")["VisibilityTimeout"])
    assert visibility >= 6 * function["Timeout"]  # AWS's advice for an SQS event source


def test_the_schedule_invokes_the_dispatcher_from_its_rule_only():
    rule = filled(DEPLOY / "events" / "sweep-rule.json")
    targets = filled(DEPLOY / "events" / "sweep-targets.json")
    permission = filled(DEPLOY / "events" / "sweep-permission.json")
    function = filled(DEPLOY / "lambda" / "dispatcher.json")["FunctionName"]
    assert rule["ScheduleExpression"] == "rate(15 minutes)" and rule["State"] == "ENABLED"
    assert targets["Rule"] == rule["Name"]
    assert [t["Arn"] for t in targets["Targets"]] == [f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function}"]
    assert permission["FunctionName"] == function and permission["Action"] == "lambda:InvokeFunction"
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule['Name']}"


def test_the_stale_run_alarm_pages_when_the_sweep_gives_up():
    alarm = filled(DEPLOY / "cloudwatch" / "stale-given-up-alarm.json")
    duplicate = filled(DEPLOY / "cloudwatch" / "duplicate-alarm.json")
    assert (alarm["Namespace"], alarm["MetricName"]) == (metrics.DEFAULT_NAMESPACE, "StaleRunsGivenUp")
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["Period"] == 900  # one sweep's interval
    assert alarm["AlarmActions"] == duplicate["AlarmActions"]  # the same pager
