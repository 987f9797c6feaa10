"""No password is ever printed: in the userinfo or the query of a URL, logged or shown on purpose."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest

from analyzer import cli, logs
from analyzer.errors import ExitCode
from tests.support import procs

PASSWORD = "pa@ss w0rd/+"  # needs percent-encoding in a URL: both spellings must go


@pytest.fixture
def clean_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_SECRETS", set())


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{quote(PASSWORD, safe='')}@db.internal:5432/videos",
        f"postgresql://app@db.internal:5432/videos?sslmode=require&password={quote(PASSWORD, safe='')}",
    ],
)
def test_the_scrubber_removes_a_logged_url_password(url, clean_secrets, capfd):
    logs.configure("text")
    logs.register_url_secrets(url)
    log = logging.getLogger("analyzer.test")
    log.error("connecting to %s", url)  # a careless log line: the whole URL, password included
    log.error("libpq said: password %r rejected", PASSWORD)  # the decoded spelling
    err = capfd.readouterr().err
    assert quote(PASSWORD, safe="") not in err and PASSWORD not in err
    assert err.count("***") >= 2 and "db.internal" in err


def test_a_settings_error_names_no_password_even_before_the_run_starts(clean_secrets, monkeypatch, capfd):
    url = "postgresql://app@db.internal/videos?password=S3CRET&sslmode=S3CRET"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ANALYZER_LOG_FORMAT", "json")
    assert cli.main(["run", "x.mp4", "--video-id", "1"]) == ExitCode.BAD_SETTINGS
    err = capfd.readouterr().err
    assert "S3CRET" not in err and "sslmode" in err


@pytest.mark.integration
@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_migrate_never_prints_the_password(form, pg_server, database_url):
    """Issue 14 item 8: ``analyzer migrate`` printed a ``?password=`` given in the query."""
    dbname = database_url.rsplit("/", 1)[1]
    password = quote(pg_server.password, safe="")
    url = (
        f"postgresql://postgres:{password}@127.0.0.1:{pg_server.port}/{dbname}"
        if form == "userinfo"
        else f"postgresql://postgres@127.0.0.1:{pg_server.port}/{dbname}?password={password}"
    )
    env = procs.worker_env()
    for argv in (["migrate", "--database-url", url], ["migrate"]):
        done = procs.run(argv, {**env, "DATABASE_URL": url}, module="analyzer.cli", timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "up to date" in done.stderr
        assert pg_server.password not in done.stderr + done.stdout
        assert password not in done.stderr + done.stdout


def test_submit_dry_run_masks_secrets_in_the_job_environment(monkeypatch, capsys):
    monkeypatch.setenv("ANALYZER_JOB_QUEUE", "q")
    monkeypatch.setenv("ANALYZER_JOB_DEFINITION", "d")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    argv = [
        "submit",
        "--video-id",
        "84",
        "--key",
        "videos/a.mp4",
        "--dry-run",
        "--env",
        "DATABASE_URL=postgresql://app:S3CRET@db/x?password=S3CRET",
        "--env",
        "API_TOKEN=S3CRET",
        "--env",
        "ANALYZER_SAMPLE_FPS=4",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "S3CRET" not in out
    env = {e["name"]: e["value"] for e in json.loads(out)["submit_job"]["containerOverrides"]["environment"]}
    assert env["DATABASE_URL"] == "postgresql://app:***@db/x?password=***"
    assert env["API_TOKEN"] == "***" and env["ANALYZER_SAMPLE_FPS"] == "4"


def test_secrets_in_the_environment_are_registered(clean_secrets):
    logs.register_environment_secrets(
        {
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
            "ANALYZER_FORCE": "true",
            "S3_ENDPOINT_URL": "http://minio:longpassword@s3.local:9000",
            "DATABASE_URL": "postgresql://app@db/x?password=dbpass123",
        }
    )
    line = logs.scrub("keys wJalrXUtnFEMI/K7MDENG longpassword dbpass123 force=true")
    assert line == "keys *** *** *** force=true"
