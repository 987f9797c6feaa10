"""No password is ever printed: in the userinfo or the query of a URL, logged or shown on purpose."""

from __future__ import annotations

import json
import logging
import socket
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


# Issue 19 item 6: a short password was scrubbed wherever its characters appeared: with the
# password ``1``, video 1021 was logged as ``***02***``. A secret is scrubbed as a token.


@pytest.mark.parametrize(
    "line,scrubbed",
    [
        ("to postgresql://app:1@db.internal:5432/videos", "to postgresql://app:***@db.internal:5432/videos"),
        ("dsn host=db password=1 dbname=videos", "dsn host=db password=*** dbname=videos"),
        ("?sslmode=require&password=1&x=2", "?sslmode=require&password=***&x=2"),
        ('{"password": "1", "user": "app"}', '{"password": "***", "user": "app"}'),
        ("libpq said: password '1' rejected", "libpq said: password '***' rejected"),
        ("the password is 1.", "the password is ***."),
        ("p, then 1", "***, then ***"),
        ("input /tmp/clip-p.mp4: no such file", "input /tmp/clip-***.mp4: no such file"),
        ("secret 1.mp4 and /tmp/1.txt", "secret ***.mp4 and /tmp/***.txt"),
        ("video 1021 (video_id=1021) from mysql:// or postgresql://h:15432/x", None),
        ("run 1f0c-21 at 10:21:11 on 127.0.0.1, job_1, v1.1, 1_000, 1.5 s, pid p1", None),
    ],
)
def test_a_short_secret_is_scrubbed_as_a_token_never_inside_another(line, scrubbed, clean_secrets):
    logs.register_url_secrets("postgresql://app:1@db.internal:5432/videos")
    logs.register_secret("p")
    assert logs.scrub(line) == (scrubbed or line)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_video_id_survives_a_one_character_password_in_a_real_log_line(clean_secrets, monkeypatch, capfd):
    port = _closed_port()
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:1@127.0.0.1:{port}/videos")
    monkeypatch.setenv("ANALYZER_LOG_FORMAT", "json")
    assert cli.main(["run", "videos/a.mp4", "--video-id", "1021", "--bucket", "uploads"]) == ExitCode.RETRYABLE
    err = capfd.readouterr().err
    [line] = [json.loads(text) for text in err.splitlines()]
    assert line["video_id"] == 1021 and '"video_id": 1021' in err
    assert f'server at "127.0.0.1", port {port} failed' in line["message"] and "***" not in err


def test_a_secret_with_quotes_is_scrubbed_as_json_escapes_it(clean_secrets, capfd):
    secret = 'pa"ss\\word'
    logs.register_secret(secret)
    logs.configure("json")
    logging.getLogger("analyzer.test").error("password %s rejected", secret)
    assert json.loads(capfd.readouterr().err)["message"] == "password *** rejected"
