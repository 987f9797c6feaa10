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


def _help(monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--help"])
    assert info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_run_help_names_each_variable_and_default(monkeypatch, capsys):
    text = _help(monkeypatch, capsys)
    assert "[-h] [--video-id VIDEO_ID] [--bucket S3_BUCKET]" in text and text.count("[input]") == 1
    for line in (
        "input S3 key (with S3_BUCKET), s3://bucket/key URI, or a local file path [$VideoKey / $VIDEO_KEY]",
        "--video-id VIDEO_ID positive integer id of the video (never derived from the key) [$video_id / $VIDEO_ID]",
        "--bucket S3_BUCKET bucket of a bare S3 key [$S3_BUCKET]",
        "--batch-size BATCH_SIZE frames per GPU batch [$ANALYZER_BATCH_SIZE; default 32]",
        "--model-dir MODEL_DIR folder holding the model weights [$ANALYZER_MODEL_DIR; default weights]",
        "--videos-id-column VIDEOS_ID_COLUMN [$VIDEOS_ID_COLUMN; default id]",
        "--force re-analyse even if this input and model version already succeeded [$ANALYZER_FORCE]",
        "--log-format LOG_FORMAT json: one object per line; text: readable; auto: text on a terminal "
        "[$ANALYZER_LOG_FORMAT; default auto]",
    ):
        assert line in text, line
    for s in settings.SPECS:
        variables = " / ".join(f"${e}" for e in s.envs)
        shown = f"[{variables}; default {s.default}]" if s.default not in (None, False) else f"[{variables}]"
        assert shown in text, s.field
    assert "default None" not in text and "default False" not in text


EVERY_FLAG = {
    "--video-id": ("3", 3),
    "--bucket": (" bk ", "bk"),
    "--s3-endpoint-url": (" http://s3.local:9000 ", "http://s3.local:9000"),
    "--database-url": ("postgresql://u@h/db", "postgresql://u@h/db"),
    "--job-id": (" j-1 ", "j-1"),
    "--job-attempt": ("1", 1),
    "--job-queue": ("q", "q"),
    "--model-dir": ("/m", Path("/m")),
    "--sample-fps": ("0", 0.0),
    "--batch-size": ("1", 1),
    "--detector": ("yunet", "yunet"),
    "--classifier": ("insightface", "insightface"),
    "--min-gender-score": ("100", 100.0),
    "--device": ("cpu", "cpu"),
    "--precision": ("fp16", "fp16"),
    "--decoder": ("pyav", "pyav"),
    "--max-pixels": ("2", 2),
    "--max-duration": ("0.5", 0.5),
    "--min-face-px": ("0", 0.0),
    "--min-sharpness": ("12.5", 12.5),
    "--gpu-memory-mb": ("1", 1),
    "--host-buffer-mb": ("3", 3),
    "--videos-table": ("media.clips", "media.clips"),
    "--videos-id-column": ("clip_id", "clip_id"),
    "--videos-key-column": ("object_key", "object_key"),
    "--json": ("-", Path("-")),
    "--contact-sheet": ("sheet.png", Path("sheet.png")),
    "--lock-dir": ("/locks", Path("/locks")),
    "--heartbeat-interval": ("1", 1.0),
    "--log-format": ("json", "json"),
}


def _every_flag_argv() -> list[str]:
    return ["videos/a.mp4", "--force"] + [part for flag, (raw, _) in EVERY_FLAG.items() for part in (flag, raw)]


def test_every_flag_is_parsed_into_its_setting():
    s = _resolve(_every_flag_argv(), {})
    assert (s.video_key, s.force) == ("videos/a.mp4", True)
    fields = {s.flag: s.field for s in settings.SPECS}
    assert {flag: getattr(s, fields[flag]) for flag in EVERY_FLAG} == {
        f: parsed for f, (_, parsed) in EVERY_FLAG.items()
    }


def test_a_flag_wins_and_the_environment_is_then_not_read():
    env = {e: "\x00 not valid" for s in settings.SPECS for e in s.envs}
    s = _resolve(_every_flag_argv(), env)
    assert (s.video_key, s.video_id, s.batch_size, s.force) == ("videos/a.mp4", 3, 1, True)


def test_every_variable_is_read_when_no_flag_is_given():
    env = {
        settings.spec(field).envs[-1]: raw
        for field, raw in {
            "video_key": "videos/b.mp4",
            "video_id": "9",
            "s3_bucket": "bk",
            "batch_attempt": "4",
            "sample_fps": "2.5",
            "heartbeat_interval": "0.25",
            "force": "on",
            "log_format": "text",
        }.items()
    }
    s = _resolve([], env)
    assert (s.video_key, s.video_id, s.s3_bucket, s.batch_attempt) == ("videos/b.mp4", 9, "bk", 4)
    assert (s.sample_fps, s.heartbeat_interval, s.force, s.log_format) == (2.5, 0.25, True, "text")
    assert (s.batch_size, s.min_gender_score, s.json_path) == (32, settings.DEFAULT_MIN_GENDER_SCORE, None)


def test_two_spellings_of_a_setting_that_agree_are_one_setting():
    s = _resolve([], {"VideoKey": "first.mp4", "VIDEO_KEY": "first.mp4", "video_id": "52", "VIDEO_ID": "52"})
    assert (s.video_key, s.video_id) == ("first.mp4", 52)


@pytest.mark.parametrize(
    "env,names",
    [
        ({"VideoKey": "a.mp4", "video_id": "52", "VIDEO_ID": "53"}, "video_id='52' and VIDEO_ID='53'"),
        ({"VideoKey": "a.mp4", "VIDEO_KEY": "b.mp4", "video_id": "1"}, "VideoKey='a.mp4' and VIDEO_KEY='b.mp4'"),
    ],
)
def test_two_spellings_of_a_setting_that_disagree_are_a_settings_error(env, names):
    """Issue 19 item 6: video_id=52 beside VIDEO_ID=53 ran as 52, silently."""
    with pytest.raises(SettingsError) as info:
        _resolve([], env)
    assert str(info.value) == f"conflicting settings: {names} disagree; set one of them"


def test_a_flag_settles_two_spellings_that_disagree():
    assert _resolve(["--video-id", "54"], {"VideoKey": "a.mp4", "video_id": "52", "VIDEO_ID": "53"}).video_id == 54


def test_resolve_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("VideoKey", "videos/env.mp4")
    monkeypatch.setenv("video_id", "12")
    monkeypatch.setenv("ANALYZER_BATCH_SIZE", "8")
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    s = settings.resolve(parser.parse_args([]))
    assert (s.video_key, s.video_id, s.batch_size) == ("videos/env.mp4", 12, 8)
    assert settings.resolve(parser.parse_args([]), {"VideoKey": "k", "video_id": "5"}).batch_size == 32


@pytest.mark.parametrize(
    "argv,env,message",
    [
        (["  ", "--video-id", "1"], {}, "invalid setting the input argument: must not be empty"),
        ([], {"VIDEO_KEY": " ", "video_id": "1"}, "invalid setting VIDEO_KEY: must not be empty"),
        (["k", "--batch-size", "0"], {"video_id": "1"}, "invalid setting --batch-size: must be at least 1, got 0"),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_HEARTBEAT_INTERVAL": "0"},
            "invalid setting ANALYZER_HEARTBEAT_INTERVAL: must be greater than 0",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_HEARTBEAT_INTERVAL": "-1"},
            "invalid setting ANALYZER_HEARTBEAT_INTERVAL: must be a finite number >= 0, got '-1'",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_SAMPLE_FPS": "inf"},
            "invalid setting ANALYZER_SAMPLE_FPS: must be a finite number >= 0, got 'inf'",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_SAMPLE_FPS": "nan"},
            "invalid setting ANALYZER_SAMPLE_FPS: must be a finite number >= 0, got 'nan'",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_MIN_GENDER_SCORE": "100.5"},
            "invalid setting ANALYZER_MIN_GENDER_SCORE: must be a percentage 0-100, got '100.5'",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_MIN_GENDER_SCORE": "-0.1"},
            "invalid setting ANALYZER_MIN_GENDER_SCORE: must be a percentage 0-100, got '-0.1'",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_MIN_GENDER_SCORE": "nan"},
            "invalid setting ANALYZER_MIN_GENDER_SCORE: must be a percentage 0-100, got 'nan'",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "S3_ENDPOINT_URL": "ftp://s3.local"},
            "invalid setting S3_ENDPOINT_URL: must be an http(s):// URL",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "S3_ENDPOINT_URL": "http://"},
            "invalid setting S3_ENDPOINT_URL: must be an http(s):// URL",
        ),
        (
            ["k", "--detector", "mtcnn"],
            {"VIDEO_ID": "1"},
            "invalid setting --detector: must be one of retinaface, yunet, got 'mtcnn'",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_PRECISION": "FP16"},
            "invalid setting ANALYZER_PRECISION: must be one of fp32, fp16, got 'FP16'",
        ),
        (
            ["k"],
            {"VIDEO_ID": "1", "ANALYZER_FORCE": "maybe"},
            "invalid setting ANALYZER_FORCE: must be true or false, got 'maybe'",
        ),
        (["k"], {"VIDEO_ID": "1", "AWS_BATCH_JOB_ID": " "}, "invalid setting AWS_BATCH_JOB_ID: must not be empty"),
        (
            ["k"],
            {},
            "missing setting video_id / VIDEO_ID (positive integer id of the video (never derived from the key))",
        ),
        (
            ["s3://bucket-only", "--video-id", "1"],
            {},
            "invalid setting VideoKey: s3 URI needs a bucket and a key: 's3://bucket-only'"
            " (expected s3://bucket/key or a key)",
        ),
        (
            ["a\tb.mp4", "--bucket", "bk", "--video-id", "1"],
            {},
            "invalid setting VideoKey: S3 key 'a\\tb.mp4' contains control characters"
            " (expected s3://bucket/key or a key)",
        ),
    ],
)
def test_the_error_names_where_the_value_came_from(argv, env, message):
    with pytest.raises(SettingsError) as info:
        _resolve(argv, env)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "field,raw,parsed",
    [
        ("s3_endpoint_url", "https://s3.eu-west-1.amazonaws.com", "https://s3.eu-west-1.amazonaws.com"),
        ("s3_endpoint_url", "http://127.0.0.1:8333", "http://127.0.0.1:8333"),
        ("heartbeat_interval", "0.01", 0.01),
        ("heartbeat_interval", "1", 1.0),
        ("min_gender_score", "0", 0.0),
        ("min_gender_score", "99.5", 99.5),
        ("sample_fps", "0.5", 0.5),
        ("precision", "fp32", "fp32"),
        ("decoder", "opencv", "opencv"),
        ("log_format", "auto", "auto"),
    ],
)
def test_boundary_values_are_accepted(field, raw, parsed):
    s = _resolve([], {"VideoKey": "k", "video_id": "1", settings.spec(field).envs[0]: raw})
    assert getattr(s, field) == parsed


def test_a_local_path_is_not_held_to_the_s3_key_rules():
    long_path = "/" + "dir/" * 300 + "v.mp4"
    assert _resolve([long_path, "--video-id", "1"], {}).video_key == long_path


def test_resolve_one_can_require_any_setting_and_needs_no_flag_of_it():
    with pytest.raises(SettingsError) as info:
        settings.resolve_one(settings.spec("database_url"), argparse.Namespace(), {}, required=True)
    assert str(info.value).startswith("missing setting DATABASE_URL (PostgreSQL URL;")
    assert settings.resolve_one(settings.spec("database_url"), argparse.Namespace(), {}) is None
    url = settings.resolve_one(
        settings.spec("database_url"), argparse.Namespace(), {"DATABASE_URL": "postgresql://h/d"}
    )
    assert url == "postgresql://h/d"


def test_spec_looks_a_setting_up_by_field_with_its_default():
    assert (settings.spec("decoder").flag, settings.spec("decoder").default) == ("--decoder", "auto")
    assert (settings.spec("video_id").envs, settings.spec("video_id").default) == (("video_id", "VIDEO_ID"), None)
    assert settings.spec("sample_fps").default == 5.0
    with pytest.raises(StopIteration):
        settings.spec("no_such_setting")


def test_a_choice_accepts_only_its_own_words():
    parse = settings._choice("fp32", "fp16")
    assert (parse("fp32"), parse("fp16")) == ("fp32", "fp16")
    with pytest.raises(ValueError, match=r"^must be one of fp32, fp16, got 'fp64'$"):
        parse("fp64")
