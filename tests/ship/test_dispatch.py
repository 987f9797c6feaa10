"""The Lambda dispatcher against moto's SQS, S3 and Batch, and a real PostgreSQL for the lookup."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from analyzer.fleet import dispatch
from tests.ship.conftest import BUCKET, REPO, BatchStack, job_env

INCIDENT_KEY = f"videos/2025/12/29/{uuid.uuid4()}_Team Talk (final)+v2.mp4"
ID_DIRECTORY = r"videos/(?P<video_id>[0-9]+)/[^/]+"  # a deployment whose keys are videos/<id>/<file>


def lambda_records(messages: list[dict[str, Any]], queue_arn: str) -> list[dict[str, Any]]:
    """SQS ReceiveMessage results in the shape the Lambda event source mapping delivers."""
    records = []
    for message in messages:
        attributes = {
            name: {
                "stringValue": value.get("StringValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        }
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": attributes,
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        )
    return records


def deliver(stack: BatchStack) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One poll of the event source mapping: receive, invoke, delete what did not fail."""
    messages = stack.sqs.receive_message(
        QueueUrl=stack.queue_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        AttributeNames=["All"],
        VisibilityTimeout=30,
    )["Messages"]
    records = lambda_records(messages, stack.queue_arn)
    response = dispatch.handler({"Records": records}, None)
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for message in messages:
        if message["MessageId"] in failed:  # back to the queue at once
            stack.sqs.change_message_visibility(
                QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return response, records


def remaining_bodies(stack: BatchStack) -> list[str]:
    messages = stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
        "Messages", []
    )
    return sorted(m["Body"] for m in messages)


def send(stack: BatchStack, body: Any, video_id: str | None = None) -> None:
    attributes = {"video_id": {"DataType": "Number", "StringValue": video_id}} if video_id is not None else {}
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(body), MessageAttributes=attributes)


def s3_event(key_as_sent: str, bucket: str = BUCKET, event: str = "ObjectCreated:Put") -> dict:
    """An S3 event notification body; ``key_as_sent`` is URL-encoded the way S3 sends keys."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": event,
                "s3": {
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": key_as_sent, "size": 1},
                },
            }
        ]
    }


def notify_uploads_to_queue(stack: BatchStack) -> None:
    stack.s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": stack.queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )


def test_incident_two_messages_for_one_upload_give_one_job_for_video_84(stack):
    notify_uploads_to_queue(stack)  # S3 itself sends the bare event (URL-encoded key)
    send(stack, {"video": {"id": 84, "key": INCIDENT_KEY, "bucket": BUCKET}})
    stack.s3.put_object(Bucket=BUCKET, Key=INCIDENT_KEY, Body=b"not really a video")

    response, records = deliver(stack)

    assert len(records) >= 2  # the app's message, S3's event (and S3's test event)
    assert response == {"batchItemFailures": []}
    jobs = stack.jobs()
    assert [job["jobName"] for job in jobs] == ["video-process-84"]
    env = job_env(jobs[0])
    assert env["video_id"] == "84" and env["VideoKey"] == INCIDENT_KEY
    assert env["S3_BUCKET"] == BUCKET
    assert jobs[0]["tags"]["video_id"] == "84"
    assert not any("2025" in job["jobName"] or job_env(job).get("video_id") == "2025" for job in jobs)
    assert remaining_bodies(stack) == []


def test_bare_event_for_a_dated_key_alone_is_returned_not_guessed(stack):
    send(stack, s3_event("videos/2025/12/29/1234_clip2024.mp4"))
    response, records = deliver(stack)
    assert response["batchItemFailures"] == [{"itemIdentifier": records[0]["messageId"]}]
    assert stack.jobs() == []


def test_partial_batch_failure_returns_only_the_bad_messages(stack):
    send(stack, s3_event("videos/2025/12/29/abc_clip.mp4"), video_id="7")  # good: attribute
    send(stack, s3_event("videos/2025/12/29/def_clip.mp4"))  # unresolvable: date key
    send(stack, {"video": {"id": "abc", "key": "videos/x.mp4"}})  # invalid id
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{not json")  # malformed

    response, records = deliver(stack)

    by_id = {r["messageId"]: r["body"] for r in records}
    failed_bodies = sorted(by_id[f["itemIdentifier"]] for f in response["batchItemFailures"])
    assert len(failed_bodies) == 3
    assert all("abc_clip" not in body for body in failed_bodies)
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-7"]
    assert remaining_bodies(stack) == failed_bodies


def test_submit_failure_returns_the_messages_of_that_video(stack, monkeypatch):
    monkeypatch.setenv("ANALYZER_JOB_DEFINITION", "no-such-definition")
    send(stack, {"video": {"id": 5, "key": "videos/2025/12/29/a.mp4"}})
    send(stack, s3_event("videos/2025/12/29/a.mp4"))
    response, records = deliver(stack)
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {r["messageId"] for r in records}
    assert stack.jobs() == []


def test_dedupes_within_a_batch_and_keeps_different_videos_apart(stack):
    key = "videos/2025/12/29/u1_a.mp4"
    send(stack, {"video": {"id": 11, "key": key}})
    send(stack, s3_event(key), video_id="11")
    send(stack, s3_event(key))
    send(stack, {"video": {"id": 12, "key": "videos/2025/12/29/u2_b.mp4"}})
    response, _ = deliver(stack)
    assert response == {"batchItemFailures": []}
    assert sorted(job["jobName"] for job in stack.jobs()) == ["video-process-11", "video-process-12"]


def test_same_video_with_two_different_keys_submits_the_first_and_returns_the_other(stack):
    send(stack, {"video": {"id": 5, "key": "videos/5/first.mp4"}})
    send(stack, {"video": {"id": 5, "key": "videos/5/second.mp4"}})
    response, records = deliver(stack)
    [job] = stack.jobs()
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert len(failed) == 1
    kept = job_env(job)["VideoKey"]
    assert {kept} | {json.loads(r["body"])["video"]["key"] for r in records if r["messageId"] in failed} == {
        "videos/5/first.mp4",
        "videos/5/second.mp4",
    }


def test_url_encoded_key_is_decoded_and_id_taken_from_the_configured_key_layout(stack, monkeypatch):
    monkeypatch.setenv("ANALYZER_KEY_ID_PATTERN", ID_DIRECTORY)
    send(stack, s3_event("videos/42/My+Clip+%281%29+%C3%A9t%C3%A9.mp4"))
    response, _ = deliver(stack)
    assert response == {"batchItemFailures": []}
    [job] = stack.jobs()
    assert job["jobName"] == "video-process-42"
    assert job_env(job)["VideoKey"] == "videos/42/My Clip (1) été.mp4"
    assert job["tags"]["VideoKey"] == "videos/42/My Clip _1_ été.mp4"  # tag-safe copy


def test_app_message_with_an_s3_uri_key_merges_with_the_s3_event(stack):
    key = "videos/2025/12/29/u_uri.mp4"
    send(stack, {"video": {"id": 21, "key": f"s3://{BUCKET}/{key}"}})
    send(stack, s3_event(key))
    response, _ = deliver(stack)
    assert response == {"batchItemFailures": []}
    [job] = stack.jobs()
    assert (job["jobName"], job_env(job)["VideoKey"], job_env(job)["S3_BUCKET"]) == ("video-process-21", key, BUCKET)


def test_sns_envelope_and_test_event_and_removals(stack, monkeypatch):
    monkeypatch.setenv("ANALYZER_KEY_ID_PATTERN", ID_DIRECTORY)
    send(stack, {"Type": "Notification", "Message": json.dumps(s3_event("videos/9/x.mp4"))})
    send(stack, {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET})
    send(stack, s3_event("videos/8/gone.mp4", event="ObjectRemoved:Delete"))
    response, _ = deliver(stack)
    assert response == {"batchItemFailures": []}
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-9"]


def test_stated_id_for_several_objects_is_rejected(stack):
    body = s3_event("videos/2025/1/1/a.mp4")
    body["Records"] += s3_event("videos/2025/1/1/b.mp4")["Records"]
    send(stack, body, video_id="3")
    response, _ = deliver(stack)
    assert len(response["batchItemFailures"]) == 1
    assert stack.jobs() == []


def test_missing_settings_fail_the_whole_invocation(stack, monkeypatch):
    monkeypatch.delenv("ANALYZER_JOB_QUEUE")
    with pytest.raises(dispatch.SettingsError, match="ANALYZER_JOB_QUEUE"):
        dispatch.handler({"Records": []}, None)


@pytest.fixture
def configured(aws, monkeypatch):
    monkeypatch.setenv("ANALYZER_JOB_QUEUE", "q")
    monkeypatch.setenv("ANALYZER_JOB_DEFINITION", "d")


@pytest.mark.parametrize("event", [["not", "a", "mapping"], {"Records": "x"}, {"Records": None}])
def test_an_event_without_a_records_list_returns_the_whole_batch(configured, event):
    with pytest.raises(dispatch.UnreportableRecords) as info:
        dispatch.handler(event, None)
    assert str(info.value) == "the event has no Records list"


def test_an_event_without_records_fails_nothing(configured):
    assert dispatch.handler({}, None) == {"batchItemFailures": []}


@pytest.mark.parametrize(("setting", "level"), [("warning", logging.WARNING), (None, logging.INFO)])
def test_log_level_sets_the_level_of_the_analyzer_loggers(configured, monkeypatch, caplog, setting, level):
    if setting is not None:
        monkeypatch.setenv("LOG_LEVEL", setting)
    caplog.set_level(logging.DEBUG, logger="analyzer")  # restored after the test
    dispatch.handler({"Records": []}, None)
    assert logging.getLogger("analyzer").level == level


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("videos/84/clip.mp4", 84),
        ("videos/2025/12/29/6f1c_clip.mp4", None),  # not videos/<id>/<file>
        ("videos/clip_84.mp4", None),
        ("videos/84/raw/clip.mp4", None),
        ("uploads/84/clip.mp4", None),
    ],
)
def test_id_from_key_only_with_the_configured_layout(key, expected):
    assert dispatch.id_from_key(key, dispatch.key_id_pattern(ID_DIRECTORY)) == expected
    assert dispatch.id_from_key(key, None) is None  # no layout configured: never from a key


@pytest.mark.parametrize("key", ["videos/0/clip.mp4", "videos/2147483648/clip.mp4"])
def test_id_from_key_is_validated_like_any_other(key):
    with pytest.raises(dispatch.InputRejected, match="ANALYZER_KEY_ID_PATTERN"):
        dispatch.id_from_key(key, dispatch.key_id_pattern(ID_DIRECTORY))


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("videos/(?P<id>[0-9]+)/.*", "video_id"), ("videos/(?P<video_id>[0-9+/.*", "regular expression")],
)
def test_a_bad_key_layout_fails_the_invocation(pattern, message):
    with pytest.raises(dispatch.SettingsError, match=message):
        dispatch.DispatchSettings.from_env(
            {"ANALYZER_JOB_QUEUE": "q", "ANALYZER_JOB_DEFINITION": "d", "ANALYZER_KEY_ID_PATTERN": pattern}
        )


# --- issue 14: never guess, one record's failure is its own, conflicts, unsafe keys ------------------


def test_the_incident_key_without_an_id_submits_nothing(stack):
    """Item 3: ``videos/2025/<uuid>_talk.mp4`` with no id gave ``video-process-2025``."""
    for key in (f"videos/2025/{uuid.uuid4()}_talk.mp4", "videos/2025/december/t.mp4", "videos/84/clip.mp4"):
        send(stack, s3_event(key))
    response, records = deliver(stack)
    assert len(response["batchItemFailures"]) == len(records) == 3
    assert stack.jobs() == []


def test_a_poison_record_fails_alone(stack):
    """Item 4: a body of 1000 '[' (RecursionError) failed the whole batch; the good one got no job."""
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="[" * 1000)
    send(stack, s3_event("videos/2025/12/29/good.mp4"), video_id="7")
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps({"video": {"id": 8, "key": 5}}))
    stack.sqs.send_message(
        QueueUrl=stack.queue_url,
        MessageBody='{"Records": [{"s3": 1}]}',
        MessageAttributes={"video_id": {"DataType": "String", "StringValue": "9"}},
    )
    response, records = deliver(stack)
    bodies = {r["messageId"]: r["body"] for r in records}
    failed = sorted(bodies[f["itemIdentifier"]] for f in response["batchItemFailures"])
    assert len(records) == 4 and len(failed) == 2
    assert "[" * 1000 in failed and '{"Records": [{"s3": 1}]}' in failed
    assert sorted(job["jobName"] for job in stack.jobs()) == ["video-process-7", "video-process-8"]


def test_a_record_without_message_id_returns_the_whole_batch_after_the_others_are_submitted(stack):
    """A record without messageId cannot be named in batchItemFailures: Lambda must retry the batch."""
    send(stack, s3_event("videos/2025/12/29/good.mp4"), video_id="7")
    send(stack, s3_event("videos/2025/12/29/other.mp4"), video_id="8")
    messages = stack.sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    )["Messages"]
    records = lambda_records(messages, stack.queue_arn)
    del records[1]["messageId"]
    with pytest.raises(dispatch.UnreportableRecords, match="whole batch"):
        dispatch.handler({"Records": records + ["not a record"]}, None)
    assert len(stack.jobs()) == 1  # the reportable record still got its job


def test_two_ids_for_one_object_is_a_conflict(stack, caplog):
    """Item 11: one object named as video 84 and as video 85 in one batch gave two jobs."""
    key = "videos/2025/12/29/u_conflict.mp4"
    send(stack, {"video": {"id": 84, "key": key}})
    send(stack, s3_event(key), video_id="85")
    send(stack, s3_event(key))  # would inherit either id
    send(stack, {"video": {"id": 86, "key": "videos/2025/12/29/u_fine.mp4"}})
    with caplog.at_level(logging.INFO, logger="analyzer.fleet.dispatch"):
        response, records = deliver(stack)
    assert len(response["batchItemFailures"]) == 3
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-86"]
    conflicts = [r for r in caplog.records if "conflict" in r.getMessage()]
    assert len(conflicts) == 1 and "[84, 85]" in conflicts[0].getMessage()


@pytest.mark.parametrize(
    "body",
    [
        s3_event("videos/2025/12/29/a%00b.mp4"),  # S3 sends the NUL URL-encoded
        s3_event("videos/2025/12/29/a%0Ab.mp4"),
        {"video": {"id": 5, "key": "videos/2025/12/29/a\u0000b.mp4"}},
        {"video": {"id": 5, "key": "videos/a.mp4", "bucket": "a b"}},
    ],
)
def test_a_key_with_control_characters_never_reaches_a_job(stack, body):
    send(stack, body, video_id="5" if "Records" in body else None)
    response, records = deliver(stack)
    assert response["batchItemFailures"] == [{"itemIdentifier": records[0]["messageId"]}]
    assert stack.jobs() == []


@pytest.mark.parametrize(
    ("stated", "submitted"), [("2147483647", True), ("2147483648", False), ("١٢", False), ("0", False)]
)
def test_ids_have_the_workers_range(stack, stated, submitted):
    send(stack, s3_event("videos/2025/12/29/range.mp4"), video_id=stated)
    response, _ = deliver(stack)
    assert bool(stack.jobs()) is submitted and bool(response["batchItemFailures"]) is not submitted


@pytest.mark.parametrize(
    ("stated", "submitted"),
    [(84, True), ("84", True), (0, False), ("0", False), (-84, False), (2**31, False), (True, False), (84.0, False)],
)
def test_body_ids_have_the_workers_range(stack, stated, submitted, caplog):
    send(stack, {"video": {"id": stated, "key": "videos/2025/12/29/range.mp4"}})
    with caplog.at_level(logging.INFO, logger="analyzer.fleet.dispatch"):
        response, records = deliver(stack)
    assert [job["jobName"] for job in stack.jobs()] == (["video-process-84"] if submitted else [])
    assert bool(response["batchItemFailures"]) is not submitted
    if not submitted:  # refused where it is read, naming the field (not later, by the submit's own check)
        [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert error.startswith(f"message {records[0]['messageId']}: body video.id must be a positive integer")


# --- videos-table lookup (real PostgreSQL) ------------------------------------------------------


@pytest.fixture
def videos_db(database_url):
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE videos (id bigint PRIMARY KEY, s3_key text NOT NULL)")
        conn.execute(
            "INSERT INTO videos VALUES (84, %s), (85, %s)",
            (INCIDENT_KEY, f"s3://{BUCKET}/videos/2025/12/30/u_other.mp4"),
        )
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE TABLE app.uploads (video_pk bigint, object_key text)")
        conn.execute("INSERT INTO app.uploads VALUES (31, 'videos/2026/01/02/z.mp4')")
    return database_url


def test_bare_event_resolved_from_the_videos_table(stack, videos_db, monkeypatch):
    from urllib.parse import quote_plus

    monkeypatch.setenv("DATABASE_URL", videos_db)
    send(stack, s3_event(quote_plus(INCIDENT_KEY, safe="/")))
    send(stack, s3_event("videos/2025/12/30/u_other.mp4"))  # stored as an s3:// URI
    response, _ = deliver(stack)
    assert response == {"batchItemFailures": []}
    jobs = {job["jobName"]: job_env(job) for job in stack.jobs()}
    assert jobs["video-process-84"]["VideoKey"] == INCIDENT_KEY
    assert set(jobs) == {"video-process-84", "video-process-85"}


def test_lookup_table_and_columns_are_configurable(stack, videos_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", videos_db)
    monkeypatch.setenv("VIDEOS_TABLE", "app.uploads")
    monkeypatch.setenv("VIDEOS_ID_COLUMN", "video_pk")
    monkeypatch.setenv("VIDEOS_KEY_COLUMN", "object_key")
    send(stack, s3_event("videos/2026/01/02/z.mp4"))
    send(stack, s3_event("videos/2026/01/02/unknown.mp4"))  # no row, no prefix: returned
    response, _ = deliver(stack)
    assert len(response["batchItemFailures"]) == 1
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-31"]


def test_unreachable_database_returns_only_messages_that_needed_it(stack, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    send(stack, s3_event("videos/2025/12/29/a.mp4"))  # needs the lookup
    send(stack, {"video": {"id": 6, "key": "videos/2025/12/29/b.mp4"}})  # does not
    response, records = deliver(stack)
    bare = next(r["messageId"] for r in records if "Records" in json.loads(r["body"]))
    assert response["batchItemFailures"] == [{"itemIdentifier": bare}]
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-6"]


def test_unsafe_table_setting_is_refused():
    with pytest.raises(dispatch.SettingsError, match="VIDEOS_TABLE"):
        dispatch.DispatchSettings.from_env(
            {"ANALYZER_JOB_QUEUE": "q", "ANALYZER_JOB_DEFINITION": "d", "VIDEOS_TABLE": "videos; DROP TABLE videos"}
        )


# --- the Lambda package -------------------------------------------------------------------------


def test_dispatcher_imports_stay_light():
    code = (
        "import sys, analyzer.fleet.dispatch; "
        "print(sorted({'torch', 'cv2', 'numpy', 'av', 'psycopg'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.strip()
    assert out == "[]"


def _lambda_runtime_packages(folder: Path) -> Path:
    """A folder with what the Lambda Python runtime provides (boto3 and its dependencies), linked
    from this environment: the zip must bring everything else."""
    import importlib.util

    folder.mkdir()
    for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (folder / source.name).symlink_to(source)
    return folder


def test_lambda_zip_lists_what_the_handler_imports():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lambda_modules", REPO / "deploy" / "lambda_modules.py")
    lambda_modules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lambda_modules)
    files = {str(p) for p in lambda_modules.project_files("analyzer.fleet.dispatch")}
    assert {"analyzer/fleet/dispatch.py", "analyzer/source/s3.py", "analyzer/errors.py", "models/errors.py"} <= files
    assert not {f for f in files if f.startswith(("analyzer/video", "analyzer/analysis", "analyzer/job"))}
    assert "models/face_analyzer.py" not in files  # no torch-side code in the Lambda


def test_lambda_zip_is_self_contained_and_dispatches(stack, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ANALYZER_KEY_ID_PATTERN", ID_DIRECTORY)
    archive = tmp_path / "dispatcher.zip"
    subprocess.run(
        ["bash", str(REPO / "deploy" / "package-dispatcher.sh"), str(archive)], check=True, capture_output=True
    )
    event = {
        "Records": [{"messageId": "m-1", "body": json.dumps(s3_event("videos/77/a.mp4")), "messageAttributes": {}}]
    }
    runtime = _lambda_runtime_packages(tmp_path / "runtime")
    # -I -S: no site-packages, no editable install; the path is the zip, then boto3 as the runtime has it.
    code = (
        "import json, sys; sys.path[:0] = sys.argv[1:3]; import analyzer.fleet.dispatch as d; "
        "assert d.__file__.startswith(sys.argv[1]), d.__file__; "
        "assert not [p for p in sys.path if 'site-packages' in p], sys.path; "
        "print(json.dumps(d.handler(json.loads(sys.argv[3]), None)))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(archive), str(runtime), json.dumps(event)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"batchItemFailures": []}
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-77"]
