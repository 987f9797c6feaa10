"""``analyzer submit`` against moto's Batch and S3: single jobs, array jobs, manifests."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from analyzer.errors import SettingsError
from analyzer.fleet import submit
from analyzer.fleet.manifest import ManifestRow, format_manifest, read_manifest_row
from tests.ship.conftest import BUCKET, job_env

ROWS = [
    ManifestRow(101, "videos/2025/12/29/a_one.mp4"),
    ManifestRow(102, "videos/2025/12/30/b_two.mp4"),
    ManifestRow(103, f"s3://{BUCKET}/videos/2025/12/31/c_three.mp4"),
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="analyzer")
    submit.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["submit", *argv])


def run(argv: list[str]) -> int:
    args = parse(argv)
    return args.handler(args)


def test_single_job(stack, capsys):
    assert run(["--video-id", "84", "--key", "videos/2025/12/29/x_talk.mp4", "--env", "ANALYZER_SAMPLE_FPS=4"]) == 0
    [job] = stack.jobs()
    assert job["jobName"] == "video-process-84"
    env = job_env(job)
    assert (env["video_id"], env["VideoKey"], env["ANALYZER_SAMPLE_FPS"]) == ("84", "videos/2025/12/29/x_talk.mp4", "4")
    assert env["S3_BUCKET"] == BUCKET  # the job definition's default
    assert job["tags"] == {"video_id": "84", "VideoKey": "videos/2025/12/29/x_talk.mp4"}
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"jobName": "video-process-84", "jobId": job["jobId"]}


def test_array_job_over_an_s3_manifest_and_each_child_reads_its_row(stack):
    uri = f"s3://{BUCKET}/manifests/upgrade.jsonl"
    stack.s3.put_object(Bucket=BUCKET, Key="manifests/upgrade.jsonl", Body=format_manifest(ROWS).encode())
    assert run(["--manifest", uri]) == 0
    [job] = stack.jobs()
    assert job["jobName"] == "video-backfill-upgrade"
    assert job["arrayProperties"]["size"] == 3
    env = job_env(job)
    assert env["ANALYZER_MANIFEST"] == uri
    children = stack.batch.list_jobs(arrayJobId=job["jobId"])["jobSummaryList"]
    assert sorted(c["jobId"] for c in children) == [f"{job['jobId']}:{i}" for i in range(3)]
    # what child i does with ANALYZER_MANIFEST and AWS_BATCH_JOB_ARRAY_INDEX=i
    import boto3

    s3 = boto3.client("s3")
    assert [read_manifest_row(env["ANALYZER_MANIFEST"], i, s3) for i in range(3)] == [
        (row.key, row.video_id) for row in ROWS
    ]


def test_local_manifest_is_uploaded_then_submitted(stack, tmp_path: Path):
    manifest = tmp_path / "backfill 2026-11.jsonl"
    manifest.write_text(format_manifest(ROWS))
    assert run(["--manifest", str(manifest), "--upload-to", f"s3://{BUCKET}/manifests/run1"]) == 0
    [job] = stack.jobs()
    assert job["jobName"] == "video-backfill-backfill-2026-11"
    uri = job_env(job)["ANALYZER_MANIFEST"]
    assert uri == f"s3://{BUCKET}/manifests/run1/video-backfill-backfill-2026-11.jsonl"
    body = stack.s3.get_object(Bucket=BUCKET, Key=uri.split("/", 3)[3])["Body"].read().decode()
    assert body == format_manifest(ROWS)


def test_local_manifest_without_upload_target_is_refused(stack, tmp_path: Path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(format_manifest(ROWS))
    with pytest.raises(SettingsError, match="--upload-to"):
        run(["--manifest", str(manifest)])
    assert stack.jobs() == []


def test_single_row_manifest_is_a_plain_video_job(stack, tmp_path: Path):
    manifest = tmp_path / "one.jsonl"
    manifest.write_text(format_manifest(ROWS[:1]))
    assert run(["--manifest", str(manifest)]) == 0
    [job] = stack.jobs()
    assert job["jobName"] == "video-process-101"
    assert not job.get("arrayProperties")


def test_dry_run_prints_and_submits_nothing(stack, tmp_path: Path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(format_manifest(ROWS))
    assert run(["--manifest", str(manifest), "--upload-to", f"s3://{BUCKET}/manifests/", "--dry-run"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == {"upload": f"s3://{BUCKET}/manifests/video-backfill-m.jsonl", "rows": 3}
    assert lines[1]["submit_job"]["arrayProperties"] == {"size": 3}
    assert stack.jobs() == []
    assert "Contents" not in stack.s3.list_objects_v2(Bucket=BUCKET)


def test_large_manifests_are_split_into_parts():
    rows = [ManifestRow(i, f"videos/{i}/v.mp4") for i in range(1, 6)]
    plan = submit.plan_backfill(
        rows, "all.jsonl", job_queue="q", job_definition="d", upload_to="s3://b/p/", max_array_size=2
    )
    assert [u.uri for u in plan.uploads] == [
        "s3://b/p/video-backfill-all-part-0001.jsonl",
        "s3://b/p/video-backfill-all-part-0002.jsonl",
    ]
    assert [r.get("arrayProperties", {}).get("size") for r in plan.requests] == [2, 2, None]
    assert plan.requests[2]["jobName"] == "video-process-5"  # a lone last row: a plain job
    assert plan.uploads[1].text == format_manifest(rows[2:4])


def test_argument_errors(stack, tmp_path: Path, monkeypatch):
    with pytest.raises(SettingsError, match="--key"):
        run(["--video-id", "3"])
    with pytest.raises(SettingsError, match="positive"):
        run(["--video-id", "-3", "--key", "k"])
    duplicate = tmp_path / "dup.jsonl"
    duplicate.write_text(format_manifest([ROWS[0], ROWS[1], ROWS[0]]))
    with pytest.raises(SettingsError, match="line 3: video_id 101 already listed on line 1"):
        run(["--manifest", str(duplicate), "--upload-to", f"s3://{BUCKET}/m/"])
    monkeypatch.delenv("ANALYZER_JOB_QUEUE")
    with pytest.raises(SettingsError, match="job queue"):
        run(["--video-id", "3", "--key", "k"])
    with pytest.raises(SystemExit):  # argparse: --video-id and --manifest are exclusive
        parse(["--video-id", "3", "--manifest", "m.jsonl"])
    assert stack.jobs() == []


def test_unknown_job_definition_is_a_settings_error(stack):
    with pytest.raises(SettingsError, match="SubmitJob failed"):
        run(["--video-id", "3", "--key", "k", "--job-definition", "nope"])


def test_through_the_analyzer_cli(stack, capsys):
    from analyzer import cli

    assert cli.main(["submit", "--video-id", "84", "--key", "videos/2025/12/29/x.mp4"]) == 0
    assert json.loads(capsys.readouterr().out)["jobName"] == "video-process-84"
    assert cli.main(["submit", "--video-id", "85", "--key", "k", "--job-definition", "nope"]) == 2
    assert [job["jobName"] for job in stack.jobs()] == ["video-process-84"]


# --- analyzer submit --stale: videos whose run died, against moto's Batch and a real PostgreSQL


def test_stale_runs_are_resubmitted_one_job_per_video(stack, analyses, capsys):
    assert run(["--stale", "--database-url", analyses]) == 0
    jobs = sorted(stack.jobs(), key=lambda job: job["jobName"])
    assert [job["jobName"] for job in jobs] == ["video-process-201", "video-process-203", "video-process-204"]
    for job in jobs:
        env = job_env(job)
        video_id = job["jobName"].rsplit("-", 1)[1]
        assert (env["video_id"], env["VideoKey"]) == (video_id, f"videos/2025/12/29/{video_id}_v.mp4")
        assert env["S3_BUCKET"] == BUCKET
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["jobName"] for line in printed] == ["video-process-203", "video-process-201", "video-process-204"]


def test_stale_dry_run_lists_and_submits_nothing(stack, analyses, capsys):
    assert run(["--stale", "--database-url", analyses, "--older-than", "1", "--limit", "3", "--dry-run"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["submit_job"]["jobName"] for line in lines] == [
        "video-process-203",
        "video-process-201",
        "video-process-204",
    ]  # oldest first, at most 3
    assert stack.jobs() == []


def test_stale_with_a_short_threshold_includes_the_silent_running_row(stack, analyses, capsys):
    assert run(["--stale", "--database-url", analyses, "--older-than", "1", "--dry-run"]) == 0
    names = [json.loads(line)["submit_job"]["jobName"] for line in capsys.readouterr().out.splitlines()]
    assert sorted(names) == ["video-process-201", "video-process-202", "video-process-203", "video-process-204"]


def test_stale_argument_errors(stack, analyses, monkeypatch):
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        run(["--stale"])
    with pytest.raises(SettingsError, match="--older-than"):
        run(["--stale", "--database-url", analyses, "--older-than", "0"])
    with pytest.raises(SettingsError, match="--key"):
        run(["--stale", "--database-url", analyses, "--key", "k"])
    assert stack.jobs() == []


def test_stale_through_the_cli_with_an_unreachable_database_is_retryable(stack, capsys):
    from analyzer import cli

    assert cli.main(["submit", "--stale", "--database-url", "postgresql://u:hunter2@127.0.0.1:1/db"]) == 75
    assert "hunter2" not in capsys.readouterr().err
    assert stack.jobs() == []
