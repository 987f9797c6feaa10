"""Fixtures for the deployment tests: moto on loopback for AWS Batch, SQS and S3.

moto stands in for AWS, which cannot be reached here: one ThreadedMotoServer per session, reset
before each test, with Batch in its no-Docker mode (jobs are recorded and marked succeeded).
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
BUCKET = "video-uploads-test"
QUEUE = "video-analyzer"
DEFINITION = "video-analyzer"
CLEARED = (
    "DATABASE_URL",
    "S3_BUCKET",
    "ANALYZER_JOB_QUEUE",
    "ANALYZER_JOB_DEFINITION",
    "ANALYZER_MANIFEST",
    "ANALYZER_METRICS_NAMESPACE",
    "LOG_LEVEL",
)
FILL = {
    "ACCOUNT_ID": ACCOUNT_ID,
    "REGION": REGION,
    "BUCKET": BUCKET,
    "IMAGE_TAG": "test",
    "DATABASE_URL_PARAMETER": "/video-analyzer/database-url",
}


def load_deploy(name: str) -> ModuleType:
    """deploy/<name>.py as a module (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", REPO / "deploy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_render() -> ModuleType:
    return load_deploy("render")


@pytest.fixture(scope="session")
def render() -> ModuleType:
    return load_render()


def _post(url: str, payload: dict[str, Any] | None = None) -> None:
    data = json.dumps(payload or {}).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10):
        pass


def reset_moto(url: str) -> None:
    """Moto's state emptied, its Batch set to run no containers."""
    _post(f"{url}/moto-api/reset")
    _post(f"{url}/moto-api/config", {"batch": {"use_docker": False}})


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh moto state, and the environment that points boto3 (and S3_ENDPOINT_URL) at it."""
    reset_moto(moto_url)
    for name in list(os.environ):
        if name.startswith(("AWS_", "VIDEOS_")) or name in CLEARED:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_url)
    return moto_url


@dataclass
class BatchStack:
    """The AWS resources of one test: queue + job definition (from deploy/), bucket, SQS queue."""

    url: str
    batch: Any
    s3: Any
    sqs: Any
    queue_url: str
    queue_arn: str

    def jobs(self) -> list[dict[str, Any]]:
        """Every job in the queue (array children included), described."""
        summaries = []
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"):
            summaries += self.batch.list_jobs(jobQueue=QUEUE, jobStatus=status)["jobSummaryList"]
        ids = sorted({s["jobId"] for s in summaries if ":" not in s["jobId"]})
        return self.batch.describe_jobs(jobs=ids)["jobs"] if ids else []


def job_env(job: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in job["container"]["environment"]}


def create_job_queue(iam: Any, batch: Any, render: ModuleType) -> None:
    """The job queue (on an unmanaged compute environment) and the job definition, in moto."""
    role = iam.create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    environment = batch.create_compute_environment(
        computeEnvironmentName="video-analyzer-g5", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    batch.create_job_queue(
        jobQueueName=QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}],
    )
    template = (REPO / "deploy" / "batch" / "job-definition.json").read_text()
    batch.register_job_definition(**json.loads(render.fill(template, FILL)))


@pytest.fixture
def stack(aws: str, render: ModuleType, monkeypatch: pytest.MonkeyPatch) -> BatchStack:
    import boto3

    batch = boto3.client("batch")
    create_job_queue(boto3.client("iam"), batch, render)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="video-uploads")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    monkeypatch.setenv("ANALYZER_JOB_QUEUE", QUEUE)
    monkeypatch.setenv("ANALYZER_JOB_DEFINITION", DEFINITION)
    return BatchStack(aws, batch, s3, sqs, queue_url, queue_arn)


@pytest.fixture
def analyses(pg_server) -> str:
    """A migrated database with one video_analyses row per case (video_id: what it stands for)."""
    import psycopg

    from analyzer.store import db
    from analyzer.store.migrate import migrate

    url = pg_server.create_database()
    with db.connect(url, "test") as conn:
        migrate(conn)
    rows = [  # video_id, status, heartbeat age (s), exit code
        (201, "running", 3600, None),  # worker killed, instance lost: heartbeat stopped an hour ago
        (202, "running", 5, None),  # alive
        (203, "interrupted", 7200, 143),  # SIGTERM: cancel, Batch timeout
        (204, "failed", 1800, 75),  # retryable, Batch ran out of attempts
        (205, "failed", 1800, 5),  # undecodable: a retry cannot help
        (206, "succeeded", 9000, 0),
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        for video_id, status, age, code in rows:
            conn.execute(
                "INSERT INTO video_analyses (video_id, run_id, status, input_key, model_version,"
                " heartbeat_at, exit_code, batch_job_id)"
                " VALUES (%s, gen_random_uuid(), %s, %s, 'm', now() - make_interval(secs => %s), %s,"
                " %s)",
                (video_id, status, f"videos/2025/12/29/{video_id}_v.mp4", age, code, f"job-{video_id}"),
            )
    return url
