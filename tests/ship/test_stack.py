"""The CloudFormation stack (deploy/stack.template.json): generated from the deploy/ files and kept
in step with them, cfn-lint clean, created in moto's CloudFormation with its wiring checked, and an
upload event driven through the created queue and the real dispatcher to a submitted job.

moto creates every resource type of the stack but two, ``AWS::CloudWatch::Alarm`` and
``AWS::SQS::QueuePolicy`` (it skips them with a warning), and does not attach a role's managed
policies: those are checked in the template. And
moto's compute environments need a ``ServiceRole``, which AWS does not (Batch's service-linked role
is the default): the tests pass one through the stack's ``BatchServiceRole`` parameter.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import json
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from analyzer.errors import ExitCode
from tests.ship.conftest import ACCOUNT_ID, BUCKET, FILL, QUEUE, REGION, REPO, BatchStack, job_env, load_deploy
from tests.ship.test_dispatch import deliver
from tests.ship.test_iam import allowed
from tests.ship.test_job_definition import batch_action

DEPLOY = REPO / "deploy"
TEMPLATE = DEPLOY / "stack.template.json"
STACK_NAME = "video-analyzer"
CODE_BUCKET = "video-analyzer-artifacts"
CODE_KEY = "dispatcher/test.zip"
DATABASE_URL_PARAMETER = "/video-analyzer/database-url"
IMAGE = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/video-analyzer:1.0.0"
LINT_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1"]
DISPATCHER_DATABASE_URL = "postgresql://dispatch@db.internal:5432/app"  # never connected to
RECLAIM = "Host EC2 (instance i-0abc123) terminated."  # the attempt's statusReason on a Spot reclaim


@pytest.fixture(scope="module")
def stack_py() -> ModuleType:
    return load_deploy("stack")


# --- the template and the files ---------------------------------------------------------------


def test_committed_template_is_what_the_files_give(stack_py):
    assert stack_py.check() == []
    done = subprocess.run([sys.executable, str(DEPLOY / "stack.py"), "check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_changed_file_makes_the_check_fail_until_rewritten(stack_py, tmp_path, monkeypatch):
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("*.py", "*.sh", "*.txt", "stack.template.json"))
    spot = copy / "batch" / "compute-environment-spot.json"
    doc = json.loads(spot.read_text())
    doc["computeResources"]["instanceTypes"].append("g6e.xlarge")
    spot.write_text(json.dumps(doc))
    monkeypatch.setattr(stack_py, "DEPLOY", copy)

    [problem] = stack_py.check(TEMPLATE)  # the committed template, against the changed files
    assert "python deploy/stack.py write" in problem
    rewritten = tmp_path / "stack.template.json"
    stack_py.write(rewritten)
    assert stack_py.check(rewritten) == []
    assert "g6e.xlarge" in rewritten.read_text()


def test_every_deploy_file_is_in_the_stack_but_the_two_that_cannot_be(stack_py, monkeypatch):
    """A new file the generator ignores would be deployed by hand only: caught here."""
    seen: set[str] = set()
    read = stack_py.read

    def recording(relative: str) -> Any:
        seen.add(relative)
        return read(relative)

    monkeypatch.setattr(stack_py, "read", recording)
    stack_py.build()
    files = {str(p.relative_to(DEPLOY)) for p in DEPLOY.glob("*/*.json")}
    # the existing bucket's notification is set outside the stack; operators' policy is theirs to attach
    assert files - seen == {"sqs/s3-notification.json", "iam/submitter-policy.json"}


def test_a_placeholder_without_a_stack_value_is_refused(stack_py):
    with pytest.raises(ValueError, match="IMAGE_TAG"):
        stack_py.cfn("video-analyzer:${IMAGE_TAG}", {})
    assert stack_py.cfn("arn:aws:sqs:${REGION}:${ACCOUNT_ID}:q", {}) == {
        "Fn::Sub": "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:q"
    }


def test_cfn_lint_is_clean():
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE, ManualArgs(regions=LINT_REGIONS))
    assert [str(match) for match in matches] == []


def test_what_moto_does_not_create_is_wired_in_the_template():
    resources = json.loads(TEMPLATE.read_text())["Resources"]
    # managed policies (moto's CloudFormation does not attach them): ECS on the instances, the VPC for Lambda
    [instance_policy] = resources["InstanceRole"]["Properties"]["ManagedPolicyArns"]
    assert instance_policy["Fn::Sub"].endswith(":policy/service-role/AmazonEC2ContainerServiceforEC2Role")
    condition, [vpc_policy], _ = resources["DispatcherRole"]["Properties"]["ManagedPolicyArns"]["Fn::If"]
    assert condition == "DispatcherReadsDatabase"
    assert vpc_policy["Fn::Sub"].endswith(":policy/service-role/AWSLambdaVPCAccessExecutionRole")
    alarms = {r["Properties"]["MetricName"]: r["Properties"] for r in resources.values() if r["Type"].endswith("Alarm")}
    assert set(alarms) == {"DuplicateRunSkipped", "RunFailed", "StaleRunsGivenUp"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "PagerTopic"}] and alarm["Namespace"] == "VideoAnalyzer"
    given_up = alarms["StaleRunsGivenUp"]
    assert (given_up["Threshold"], given_up["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert given_up["Statistic"] == "Sum" and given_up["TreatMissingData"] == "notBreaching"
    policy = resources["UploadQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "UploadQueue"}]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::Sub": "arn:aws:s3:::${Bucket}"}


# --- the GPU instances the image runs on ------------------------------------------------------

# instance type -> (GPU, compute capability, vCPUs, GiB); all x86_64, one GPU (AWS's instance pages)
GPUS = {
    "g5.xlarge": ("A10G", 8.6, 4, 16),
    "g6.xlarge": ("L4", 8.9, 4, 16),
    "g4dn.xlarge": ("T4", 7.5, 4, 16),
}
CUDA13_MIN_CAPABILITY = 7.5  # CUDA 13.0 dropped Maxwell, Pascal and Volta (sm_50-sm_70)


def test_instance_types_run_the_image_and_fit_the_job():
    dockerfile = (REPO / "Dockerfile.gpu").read_text()
    assert re.search(r"ARG CUDA_IMAGE=nvidia/cuda:13\.", dockerfile)  # the minimum below is CUDA 13's
    job = json.loads((DEPLOY / "batch" / "job-definition.json").read_text())["containerProperties"]
    need = {r["type"]: int(r["value"]) for r in job["resourceRequirements"]}
    docs = (REPO / "docs" / "deploy.md").read_text()
    for path in ("compute-environment-spot.json", "compute-environment-ondemand.json"):
        types = json.loads((DEPLOY / "batch" / path).read_text())["computeResources"]["instanceTypes"]
        assert types[0] == "g5.xlarge"
        for name in types:
            gpu, capability, vcpus, gib = GPUS[name]
            assert capability >= CUDA13_MIN_CAPABILITY, name
            assert vcpus >= need["VCPU"] and gib * 1024 > need["MEMORY"], name
            assert re.search(rf"`{re.escape(name)}`.*{gpu}", docs), f"docs/deploy.md does not say why {name}"


# --- the stack in moto ------------------------------------------------------------------------


@dataclass
class Created:
    """A stack created in moto: its outputs and its resources' physical ids."""

    outputs: dict[str, str]
    resources: dict[str, str]
    subnet: str
    security_group: str


def create_stack(**parameters: str) -> Created:
    """The network, the code zip and the bucket it needs, then the stack from the committed template."""
    import boto3

    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="video-analyzer", Description="worker", VpcId=vpc)["GroupId"]
    service_role = boto3.client("iam").create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=CODE_BUCKET)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("analyzer/__init__.py", "")  # moto keeps the code; the tests run the real handler
    s3.put_object(Bucket=CODE_BUCKET, Key=CODE_KEY, Body=archive.getvalue())
    values = {
        "Bucket": BUCKET,
        "ImageUri": IMAGE,
        "Subnets": subnet,
        "SecurityGroupIds": group,
        "DispatcherCodeBucket": CODE_BUCKET,
        "DispatcherCodeKey": CODE_KEY,
        "BatchServiceRole": service_role["Role"]["Arn"],  # moto needs one (module docstring)
        **parameters,
    }
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(
        StackName=STACK_NAME,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    [stack] = cloudformation.describe_stacks(StackName=STACK_NAME)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    summaries = cloudformation.list_stack_resources(StackName=STACK_NAME)["StackResourceSummaries"]
    return Created(
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]},
        resources={s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries},
        subnet=subnet,
        security_group=group,
    )


def role_policy(name: str) -> dict[str, Any]:
    import boto3

    iam = boto3.client("iam")
    [policy_name] = iam.list_role_policies(RoleName=name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):  # moto's CloudFormation stores a policy as Python's repr of it
        return ast.literal_eval(document)
    return document


def registered_rules(created: Created) -> list[dict[str, str]]:
    import boto3

    batch = boto3.client("batch")
    [definition] = batch.describe_job_definitions(jobDefinitions=[created.resources["JobDefinition"]])["jobDefinitions"]
    return [{**rule, "action": rule["action"].upper()} for rule in definition["retryStrategy"]["evaluateOnExit"]]


def test_the_queue_takes_spot_first_then_on_demand(aws, render):
    import boto3

    created = create_stack()
    batch = boto3.client("batch")
    [queue] = batch.describe_job_queues(jobQueues=[created.outputs["JobQueueArn"]])["jobQueues"]
    assert queue["jobQueueName"] == QUEUE
    order = sorted(queue["computeEnvironmentOrder"], key=lambda item: item["order"])
    assert [item["computeEnvironment"] for item in order] == [
        created.resources["SpotComputeEnvironment"],
        created.resources["OnDemandComputeEnvironment"],
    ]
    environments = {
        e["computeEnvironmentArn"]: e["computeResources"]
        for e in batch.describe_compute_environments()["computeEnvironments"]
    }
    spot, on_demand = (environments[item["computeEnvironment"]] for item in order)
    assert (spot["type"], spot["allocationStrategy"]) == ("SPOT", "SPOT_CAPACITY_OPTIMIZED")
    assert (on_demand["type"], on_demand["allocationStrategy"]) == ("EC2", "BEST_FIT_PROGRESSIVE")
    for resources in (spot, on_demand):
        assert resources["subnets"] == [created.subnet] and resources["securityGroupIds"] == [created.security_group]
        assert resources["minvCpus"] == 0 and resources["maxvCpus"] == 16
        assert resources["instanceRole"].endswith(f"instance-profile/{created.resources['InstanceProfile']}")
    assert registered_rules(created) == render.retry_rules()


def test_spot_off_leaves_on_demand_only(aws):
    import boto3

    created = create_stack(UseSpot="false", MaxvCpus="32")
    assert "SpotComputeEnvironment" not in created.resources
    batch = boto3.client("batch")
    [queue] = batch.describe_job_queues(jobQueues=[created.outputs["JobQueueArn"]])["jobQueues"]
    assert [item["computeEnvironment"] for item in queue["computeEnvironmentOrder"]] == [
        created.resources["OnDemandComputeEnvironment"]
    ]
    [environment] = batch.describe_compute_environments()["computeEnvironments"]
    assert environment["computeResources"]["maxvCpus"] == 32


def test_the_job_definition_names_the_stacks_roles_image_and_secret(aws):
    import boto3

    created = create_stack(DatabaseUrlParameter="/prod/analyzer-db")
    [definition] = boto3.client("batch").describe_job_definitions(jobDefinitions=[created.resources["JobDefinition"]])[
        "jobDefinitions"
    ]
    container = definition["containerProperties"]
    iam = boto3.client("iam")
    assert container["image"] == IMAGE
    assert container["jobRoleArn"] == iam.get_role(RoleName="video-analyzer-job")["Role"]["Arn"]
    assert container["executionRoleArn"] == iam.get_role(RoleName="video-analyzer-execution")["Role"]["Arn"]
    secret = f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/prod/analyzer-db"
    assert container["secrets"] == [{"name": "DATABASE_URL", "valueFrom": secret}]
    env = {item["name"]: item["value"] for item in container["environment"]}
    assert env["S3_BUCKET"] == BUCKET and env["AWS_DEFAULT_REGION"] == REGION
    execution = role_policy("video-analyzer-execution")
    assert allowed(execution, "ssm:GetParameters", secret)
    assert not allowed(execution, "ssm:GetParameters", f"arn:aws:ssm:{REGION}:{ACCOUNT_ID}:parameter/video-analyzer/x")
    logs = boto3.client("logs").describe_log_groups()["logGroups"]
    group = container["logConfiguration"]["options"]["awslogs-group"]
    assert {(g["logGroupName"], g.get("retentionInDays")) for g in logs} >= {(group, 30)}


def test_iam_scopes_of_the_created_roles(aws):
    created = create_stack()
    arn = f"arn:aws:batch:{REGION}:{ACCOUNT_ID}"
    dispatcher = role_policy("video-analyzer-dispatch")
    assert allowed(dispatcher, "batch:SubmitJob", created.outputs["JobQueueArn"])
    assert allowed(dispatcher, "batch:SubmitJob", created.resources["JobDefinition"])  # ...:job-definition/NAME:1
    assert not allowed(dispatcher, "batch:SubmitJob", f"{arn}:job-queue/another-queue")
    assert allowed(dispatcher, "sqs:ReceiveMessage", created.outputs["UploadQueueArn"])
    assert not allowed(dispatcher, "sqs:SendMessage", created.outputs["UploadQueueArn"])
    job = role_policy("video-analyzer-job")
    assert allowed(job, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/videos/2025/12/29/x.mp4")
    assert not allowed(job, "s3:GetObject", f"arn:aws:s3:::{BUCKET}/private/x")
    assert not allowed(job, "s3:PutObject", f"arn:aws:s3:::{BUCKET}/videos/x.mp4")
    for name in ("video-analyzer-dispatch", "video-analyzer-job", "video-analyzer-execution"):
        for statement in role_policy(name)["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in actions if a.endswith("*")], (name, actions)


def test_the_dispatcher_its_queue_and_its_schedule(aws):
    import boto3

    created = create_stack(DispatcherDatabaseUrl=DISPATCHER_DATABASE_URL)
    lam = boto3.client("lambda")
    function_arn = created.outputs["DispatcherFunctionArn"]
    config = lam.get_function_configuration(FunctionName=function_arn)
    env = config["Environment"]["Variables"]
    assert env["ANALYZER_JOB_QUEUE"] == QUEUE and env["DATABASE_URL"] == DISPATCHER_DATABASE_URL
    assert created.resources["JobDefinition"].split("/")[-1].split(":")[0] == env["ANALYZER_JOB_DEFINITION"]
    assert {env[name] for name in ("SWEEP_OLDER_THAN_S", "SWEEP_LIMIT", "SWEEP_MAX_RESUBMITS")} == {"600", "100", "3"}
    assert config["Handler"] == "analyzer.fleet.dispatch.handler" and config["Timeout"] == 60
    assert config["VpcConfig"]["SubnetIds"] == [created.subnet]  # to reach the database
    assert config["VpcConfig"]["SecurityGroupIds"] == [created.security_group]
    [mapping] = lam.list_event_source_mappings()["EventSourceMappings"]
    assert mapping["FunctionArn"] == function_arn
    assert mapping["EventSourceArn"] == created.outputs["UploadQueueArn"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BatchSize"] == 10

    sqs = boto3.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="video-uploads")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    dead_letter_url = sqs.get_queue_url(QueueName="video-uploads-dlq")["QueueUrl"]
    dead_letter = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"]
    assert redrive["deadLetterTargetArn"] == dead_letter["QueueArn"] and int(redrive["maxReceiveCount"]) == 5
    assert attributes["VisibilityTimeout"] == "360"  # 6 x the Lambda's timeout

    events = boto3.client("events")
    [rule] = events.list_rules(NamePrefix="video-analyzer")["Rules"]
    assert rule["ScheduleExpression"] == "rate(15 minutes)" and rule["State"] == "ENABLED"
    assert [t["Arn"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]] == [function_arn]
    [permission] = json.loads(lam.get_policy(FunctionName=function_arn)["Policy"])["Statement"]
    assert permission["Principal"] == {"Service": "events.amazonaws.com"}
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["Condition"]["ArnLike"]["AWS:SourceArn"] == rule["Arn"]  # this rule only


def test_without_a_database_the_dispatcher_has_no_schedule_and_stays_out_of_the_vpc(aws):
    import boto3

    created = create_stack()
    assert not {"SweepSchedule", "SweepPermission"} & set(created.resources)
    assert boto3.client("events").list_rules(NamePrefix="video-analyzer")["Rules"] == []
    config = boto3.client("lambda").get_function_configuration(FunctionName=created.outputs["DispatcherFunctionArn"])
    assert "DATABASE_URL" not in config["Environment"]["Variables"]
    assert not config.get("VpcConfig", {}).get("SubnetIds")


# --- events through the created stack ----------------------------------------------------------


def created_batch_stack(url: str, created: Created) -> BatchStack:
    """The created resources as test_dispatch's BatchStack, for its deliver()."""
    import boto3

    sqs = boto3.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=created.outputs["UploadQueueArn"].rsplit(":", 1)[1])["QueueUrl"]
    return BatchStack(url, boto3.client("batch"), boto3.client("s3"), sqs, queue_url, created.outputs["UploadQueueArn"])


def use_lambda_environment(created: Created, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the created function would run the handler with."""
    import boto3

    config = boto3.client("lambda").get_function_configuration(FunctionName=created.outputs["DispatcherFunctionArn"])
    for name, value in config["Environment"]["Variables"].items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def registered_video(database_url: str) -> tuple[str, int]:
    import psycopg

    key = "videos/2026/12/06/5d1e_stack smoke.mp4"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE videos (id bigint PRIMARY KEY, s3_key text NOT NULL)")
        conn.execute("INSERT INTO videos VALUES (%s, %s)", (84, key))
    return key, 84


@pytest.mark.integration
def test_an_upload_goes_through_the_stack_to_one_job(aws, database_url, registered_video, render, monkeypatch):
    import boto3

    key, video_id = registered_video
    created = create_stack(DispatcherDatabaseUrl=database_url)
    use_lambda_environment(created, monkeypatch)
    assert boto3.client("lambda").get_function_configuration(FunctionName=created.outputs["DispatcherFunctionArn"])[
        "VpcConfig"
    ]["SubnetIds"] == [created.subnet]  # with the database, in the VPC
    # the documented bucket notification (outside the stack) names the stack's queue
    text = (DEPLOY / "sqs" / "s3-notification.json").read_text()
    notification = json.loads(render.fill(text, {k: v for k, v in FILL.items() if k in render.placeholders(text)}))
    assert notification["QueueConfigurations"][0]["QueueArn"] == created.outputs["UploadQueueArn"]
    stack = created_batch_stack(aws, created)
    stack.s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=notification)
    stack.s3.put_object(Bucket=BUCKET, Key=key, Body=b"an upload")

    response, records = deliver(stack)

    assert response == {"batchItemFailures": []}
    assert any(json.loads(r["body"]).get("Records", [{}])[0].get("eventSource") == "aws:s3" for r in records)
    [job] = stack.jobs()
    assert job["jobName"] == f"video-process-{video_id}"
    assert job["jobQueue"] == created.outputs["JobQueueArn"]
    assert job["jobDefinition"] == created.resources["JobDefinition"]
    env = job_env(job)
    assert (env["VideoKey"], env["video_id"], env["S3_BUCKET"]) == (key, str(video_id), BUCKET)


@pytest.mark.integration
def test_a_reclaimed_run_is_retried_and_a_cancelled_one_is_not(aws, database_url, media_dir, tmp_path):
    """Spot first, the retry rules as the stack registered them, and the worker's own SIGTERM exit."""
    import boto3

    from tests.integration.test_exactly_once import VIDEO_ID, _status_is
    from tests.support import procs

    created = create_stack()
    batch = boto3.client("batch")
    [queue] = batch.describe_job_queues(jobQueues=[created.outputs["JobQueueArn"]])["jobQueues"]
    first = min(queue["computeEnvironmentOrder"], key=lambda item: item["order"])["computeEnvironment"]
    [environment] = batch.describe_compute_environments(computeEnvironments=[first])["computeEnvironments"]
    assert environment["computeResources"]["type"] == "SPOT"  # jobs land on Spot first: reclaims happen
    rules = registered_rules(created)
    video = tmp_path / "clip.mp4"
    shutil.copy(media_dir / "short_hamilton_clip.mp4", video)
    env = procs.worker_env(DATABASE_URL=database_url, TEST_ANALYSIS_STEPS="300", TEST_ANALYSIS_PAUSE="0.1")
    worker = procs.start(["run", str(video), "--video-id", str(VIDEO_ID)], env)
    procs.wait_for(_status_is(database_url, "running"), what="the run to start")
    worker.send_signal(signal.SIGTERM)  # what Batch sends on a Spot reclaim and on a cancel alike
    code = worker.wait(10)
    assert code == ExitCode.INTERRUPTED == 143

    assert batch_action(rules, exit_code=code, status_reason=RECLAIM) == "RETRY"
    assert batch_action(rules, status_reason=RECLAIM) == "RETRY"  # the instance went before the container exited
    for cancelled in ("Essential container in task exited", "Cancelled by operator", None):
        assert batch_action(rules, exit_code=code, status_reason=cancelled) == "EXIT", cancelled


@pytest.mark.integration
@pytest.mark.skipif(
    importlib.util.find_spec("analyzer.fleet.sweep") is None,
    reason="enable after merging the stale-run sweep (analyzer/fleet/sweep.py, issue 19 item 4)",
)
def test_the_schedule_runs_the_stale_sweep_through_the_dispatcher(aws, analyses, monkeypatch):
    """The rule's event, as EventBridge delivers it to the created function, resubmits stale runs."""
    import boto3

    created = create_stack(DispatcherDatabaseUrl=analyses)
    use_lambda_environment(created, monkeypatch)
    [rule] = boto3.client("events").list_rules(NamePrefix="video-analyzer")["Rules"]
    event = {
        "version": "0",
        "id": "5c1f6e0e-0000-4000-8000-000000000000",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": "2026-12-06T12:00:00Z",
        "region": REGION,
        "resources": [rule["Arn"]],
        "detail": {},
    }
    from analyzer.fleet import dispatch

    dispatch.handler(event, None)
    stack = created_batch_stack(aws, created)
    assert sorted(job["jobName"] for job in stack.jobs()) == [
        "video-process-201",
        "video-process-203",
        "video-process-204",
    ]
