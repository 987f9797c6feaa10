"""Settings: every bad value gives its exit code and one line naming the setting."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from analyzer import cli, settings
from analyzer.conninfo import mask_url
from analyzer.errors import ExitCode, SettingsError
from analyzer.store.db import queries
from tests.support import procs


def _resolve(argv: list[str], env: dict[str, str]) -> settings.Settings:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    return settings.resolve(parser.parse_args(argv), env)


def test_environment_as_batch_passes_it():
    s = _resolve(
        [],
        {
            "VideoKey": "videos/1/a.mp4",
            "video_id": "84",
            "S3_BUCKET": "uploads",
            "AWS_BATCH_JOB_ID": "j-1",
            "AWS_BATCH_JOB_ATTEMPT": "2",
            "ANALYZER_SAMPLE_FPS": "2.5",
        },
    )
    assert (s.video_id, s.batch_job_id, s.batch_attempt, s.sample_fps) == (84, "j-1", 2, 2.5)
    assert s.is_s3 and s.s3_location == ("uploads", "videos/1/a.mp4")


def test_flags_win_over_environment_and_uppercase_names_work():
    s = _resolve(["s3://b/k/v.mp4", "--video-id", "7"], {"VIDEO_KEY": "other", "VIDEO_ID": "8"})
    assert (s.video_key, s.video_id, s.s3_location) == ("s3://b/k/v.mp4", 7, ("b", "k/v.mp4"))


def test_local_path_without_bucket():
    s = _resolve(["/tmp/x.mp4", "--video-id", "1"], {})
    assert not s.is_s3


@pytest.mark.parametrize(
    "text,expected",
    [("true", True), ("1", True), ("YES", True), ("on", True)]
    + [("false", False), ("0", False), ("no", False), ("Off", False), ("", False)],
)
def test_flag_values(text, expected):
    s = _resolve([], {"VideoKey": "k", "video_id": "1", "ANALYZER_FORCE": text})
    assert s.force is expected


def test_flags_default_off_and_the_cli_flag_turns_them_on():
    assert _resolve([], {"VideoKey": "k", "video_id": "1"}).force is False
    assert _resolve(["--force"], {"VideoKey": "k", "video_id": "1", "ANALYZER_FORCE": "false"}).force is True


BAD = [
    ({"VideoKey": "k"}, "video_id", "missing"),
    ({"VideoKey": "k", "video_id": "abc"}, "video_id", "positive integer"),
    ({"VideoKey": "k", "video_id": "0"}, "video_id", "between 1 and"),
    ({"VideoKey": "k", "video_id": "-5"}, "video_id", "positive integer"),
    ({"VideoKey": "k", "video_id": "2147483648"}, "video_id", "between 1 and"),
    ({"VideoKey": "k", "video_id": "2025.5"}, "video_id", "positive integer"),
    ({"video_id": "1"}, "VideoKey", "missing"),
    ({"VideoKey": "  ", "video_id": "1"}, "VideoKey", "empty"),
    ({"VideoKey": "s3://bucket-only", "video_id": "1"}, "VideoKey", "s3://bucket/key"),
    ({"VideoKey": "k", "video_id": "1", "DATABASE_URL": "mysql://x@h/db"}, "DATABASE_URL", "postgresql://"),
    ({"VideoKey": "k", "video_id": "1", "DATABASE_URL": "postgresql://u:p@h:port/db"}, "DATABASE_URL", "port"),
    ({"VideoKey": "k", "video_id": "1", "S3_ENDPOINT_URL": "localhost:9000"}, "S3_ENDPOINT_URL", "http"),
    ({"VideoKey": "k", "video_id": "1", "ANALYZER_BATCH_SIZE": "0"}, "ANALYZER_BATCH_SIZE", "at least 1"),
    ({"VideoKey": "k", "video_id": "1", "ANALYZER_SAMPLE_FPS": "-1"}, "ANALYZER_SAMPLE_FPS", ">= 0"),
    ({"VideoKey": "k", "video_id": "1", "ANALYZER_DETECTOR": "mtcnn"}, "ANALYZER_DETECTOR", "one of"),
    ({"VideoKey": "k", "video_id": "1", "ANALYZER_FORCE": "maybe"}, "ANALYZER_FORCE", "true or false"),
    ({"VideoKey": "k", "video_id": "١٢"}, "video_id", "ASCII digits"),
    ({"VideoKey": "k", "video_id": "1", "VIDEOS_TABLE": "videos;"}, "VIDEOS_TABLE", "schema.table"),
    ({"VideoKey": "k", "video_id": "1", "VIDEOS_TABLE": "a.b.c"}, "VIDEOS_TABLE", "schema.table"),
    ({"VideoKey": "k", "video_id": "1", "VIDEOS_KEY_COLUMN": "s3_key)"}, "VIDEOS_KEY_COLUMN", "column"),
    ({"VideoKey": "k", "video_id": "1", "DATABASE_URL": "postgresql://u@h/db?foo=bar"}, "DATABASE_URL", "foo"),
    (
        {"VideoKey": "k", "video_id": "1", "DATABASE_URL": "postgresql://u@h/db?sslmode=bogus"},
        "DATABASE_URL",
        "sslmode",
    ),
    (
        {"VideoKey": "k", "video_id": "1", "DATABASE_URL": "postgresql://u@h/db?connect_timeout=soon"},
        "DATABASE_URL",
        "integer",
    ),
    ({"VideoKey": "k", "video_id": "1", "S3_BUCKET": "a b"}, "S3_BUCKET", "bucket name"),
    ({"VideoKey": "s3://a b/k.mp4", "video_id": "1"}, "VideoKey", "bucket name"),
    ({"VideoKey": "s3://bucket/a\x00b.mp4", "video_id": "1"}, "VideoKey", "control characters"),
    ({"VideoKey": "videos/a\nb.mp4", "video_id": "1", "S3_BUCKET": "b"}, "VideoKey", "control characters"),
]


@pytest.mark.parametrize("env,name,reason", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_settings_raise_one_line_naming_the_setting(env, name, reason):
    with pytest.raises(SettingsError) as info:
        _resolve([], env)
    assert name in str(info.value) and reason in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("env,name,reason", BAD[:6], ids=[b[1] + str(i) for i, b in enumerate(BAD[:6])])
def test_cli_exits_with_bad_settings_code_and_one_json_line(env, name, reason, monkeypatch, capfd):
    for key, value in {**env, "ANALYZER_LOG_FORMAT": "json"}.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["run"]) == ExitCode.BAD_SETTINGS
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["level"] == "ERROR" and name in record["message"] and record["exit_code"] == 2


# Reproductions of the holes of issue 14 (item 7): each was exit 9 with a traceback, or 75 (retried
# forever) against the real server; a settings error must be exit 2 and one line, before anything connects.
BAD_IN_A_PROCESS = [
    ({"VIDEOS_TABLE": "videos; DROP TABLE events"}, "VIDEOS_TABLE"),
    ({"DATABASE_URL": "{url}?foo=bar"}, "DATABASE_URL"),
    ({"DATABASE_URL": "{url}?sslmode=bogus"}, "DATABASE_URL"),
    ({"S3_BUCKET": "a b"}, "S3_BUCKET"),
    ({"video_id": "١٢"}, "video_id"),
    ({"video_id": "2147483648"}, "video_id"),
]


@pytest.mark.integration
@pytest.mark.parametrize("env,name", BAD_IN_A_PROCESS, ids=[b[1] + str(i) for i, b in enumerate(BAD_IN_A_PROCESS)])
def test_worker_process_exits_2_with_one_line_for_bad_settings(env, name, database_url, tmp_path):
    full = {
        "VideoKey": "videos/a.mp4",
        "video_id": "1",
        "DATABASE_URL": database_url,
        "S3_BUCKET": "uploads",
        "ANALYZER_LOCK_DIR": str(tmp_path),
    }
    full.update({k: v.format(url=database_url) for k, v in env.items()})
    done = procs.run(["run"], procs.worker_env(**full), timeout=60)
    assert done.returncode == ExitCode.BAD_SETTINGS, done.stderr[-2000:]
    [line] = done.stderr.strip().splitlines()
    record = json.loads(line)
    assert name in record["message"] and record["exit_code"] == 2
    password = database_url.split(":")[2].split("@")[0]
    assert password not in done.stderr


def test_a_database_url_error_never_quotes_the_password():
    for url in (
        "postgresql://u:S3CRET%zz@h/db",
        "postgresql://u@h/db?password=S3CRET%zz",
        "postgresql://u@h/db?password=S3CRET&sslmode=S3CRET",
    ):
        with pytest.raises(SettingsError) as info:
            _resolve([], {"VideoKey": "k", "video_id": "1", "DATABASE_URL": url})
        assert "DATABASE_URL" in str(info.value) and "S3CRET" not in str(info.value), str(info.value)


def test_mask_url_hides_the_password_in_userinfo_and_query():
    assert mask_url("postgresql://app:s3cr%40t@db:5432/x") == "postgresql://app:***@db:5432/x"
    assert mask_url("postgresql://app@db/x") == "postgresql://app@db/x"
    assert (
        mask_url("postgresql://app@db/x?sslmode=require&password=pw&sslpassword=k")
        == "postgresql://app@db/x?sslmode=require&password=***&sslpassword=***"
    )
    assert mask_url("postgresql://app:a@b@db/x?Password=c") == "postgresql://app:***@db/x?Password=***"


def test_every_named_query_is_parsed():
    """Each ``-- name --`` block of queries.sql is one query: none lost, none swallowing the next."""
    import re

    text = (Path(__file__).resolve().parents[2] / "analyzer/store/sql/queries.sql").read_text()
    headers = re.findall(r"^-- (\w+) --$", text, flags=re.MULTILINE)
    parsed = queries()
    assert list(parsed) == headers and len(headers) == len(set(headers)) >= 20
    verbs = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE TABLE", "SET LOCAL")
    for name, query in parsed.items():
        statement = [line for line in query.splitlines() if not line.startswith("--")]
        assert statement and statement[0].startswith(verbs), name
        assert not re.search(r"^-- \w+ --$", query, flags=re.MULTILINE), name  # a header inside a query
        assert "\n".join(statement).count(";") == 1 and query.endswith(";"), name  # exactly one statement
    assert "FOR UPDATE" in parsed["fence"] and "DO UPDATE SET" in parsed["upsert_event"]
    assert "run_id = %(run_id)s" in parsed["finish_run"] and "run_id = %(run_id)s" in parsed["heartbeat"]


def test_exit_code_table_in_readme_matches_the_enum():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for code in ExitCode:
        assert f"| {int(code)} | `{code.name}` |" in readme, code


def test_every_setting_is_in_the_readme_table():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for spec in settings.SPECS:
        assert f"`{spec.envs[0]}`" in readme and (spec.flag == "input" or f"`{spec.flag}`" in readme), spec.field


def test_every_sql_file_ships_in_the_package():
    """A non-editable install (the container) must carry the queries and every migration."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["analyzer.store"]
    store = root / "analyzer" / "store"
    sql_files = [p.relative_to(store).as_posix() for p in (store / "sql").rglob("*.sql")]
    assert sql_files and all(
        any(fnmatch.fnmatchcase(f, g) and f.count("/") == g.count("/") for g in globs) for f in sql_files
    ), sql_files
