"""Backfill manifests: format, row selection by array index, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.errors import AccessDenied, InfrastructureError, SettingsError
from analyzer.fleet.manifest import (
    ManifestRow,
    format_manifest,
    parse_manifest,
    read_manifest,
    read_manifest_row,
)
from analyzer.source.s3 import split_s3_uri

TEXT = (
    '{"video_id": 84, "key": "videos/2025/12/29/6f1c_talk, part 1.mp4"}\n'
    '{"video_id": "85", "key": "s3://other/videos/2025/12/30/\\"quoted\\".mp4"}\n'
    '{"key": "/data/local clip.mp4", "video_id": 86}\n'
    "\n"
)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_rows_in_order(manifest: Path):
    assert read_manifest(str(manifest)) == [
        ManifestRow(84, "videos/2025/12/29/6f1c_talk, part 1.mp4"),
        ManifestRow(85, 's3://other/videos/2025/12/30/"quoted".mp4'),
        ManifestRow(86, "/data/local clip.mp4"),
    ]


def test_row_by_index(manifest: Path):
    assert read_manifest_row(str(manifest), 0) == ("videos/2025/12/29/6f1c_talk, part 1.mp4", 84)
    assert read_manifest_row(str(manifest), 2) == ("/data/local clip.mp4", 86)


@pytest.mark.parametrize("index", [3, -1, 100])
def test_index_out_of_range(manifest: Path, index: int):
    with pytest.raises(SettingsError, match=rf"has 3 rows .*index {index} is out of range"):
        read_manifest_row(str(manifest), index)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not a JSON object"),
        ('[84, "k"]', "line 2: not a JSON object"),
        ('{"video_id": 0, "key": "k"}', "line 2: video_id must be a positive integer"),
        ('{"video_id": true, "key": "k"}', "positive integer"),
        ('{"video_id": "2025/12", "key": "k"}', "positive integer"),
        ('{"video_id": 84.5, "key": "k"}', "positive integer"),
        ('{"video_id": 84, "key": ""}', "key must be a non-empty string"),
        ('{"video_id": 84, "key": "videos/a\\u0000b.mp4"}', "control characters"),
        ('{"video_id": 84, "key": "s3://a b/k.mp4"}', "bucket name"),
        ('{"video_id": 2147483648, "key": "k"}', "between 1 and 2147483647"),
        ('{"video_id": "١٢", "key": "k"}', "ASCII digits"),
        ('{"video_id": 84}', "missing \\['key'\\]"),
        ('{"videoid": 84, "key": "k"}', "unknown \\['videoid'\\]"),
    ],
)
def test_bad_row_names_the_line(tmp_path: Path, line: str, message: str):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"video_id": 1, "key": "ok"}\n' + line + "\n")
    with pytest.raises(SettingsError, match=message):
        read_manifest_row(str(path), 1)
    with pytest.raises(SettingsError, match=message):
        read_manifest(str(path))
    assert read_manifest_row(str(path), 0) == ("ok", 1)  # other children are unaffected


def test_blank_line_inside_is_an_error():
    with pytest.raises(SettingsError, match="line 2: blank line"):
        parse_manifest('{"video_id": 1, "key": "a"}\n\n{"video_id": 2, "key": "b"}\n')


def test_missing_local_manifest(tmp_path: Path):
    with pytest.raises(SettingsError, match="not found"):
        read_manifest_row(str(tmp_path / "nope.jsonl"), 0)


def test_format_round_trips():
    rows = [ManifestRow(1, 'videos/ä ö,"x".mp4'), ManifestRow(2, "s3://b/k")]
    assert parse_manifest(format_manifest(rows)) == rows


def test_s3_manifest_on_seaweedfs(s3_server, monkeypatch):
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="manifests/m.jsonl", Body=TEXT.encode())
    uri = f"s3://{s3_server.bucket}/manifests/m.jsonl"
    assert read_manifest_row(uri, 1, client) == ('s3://other/videos/2025/12/30/"quoted".mp4', 85)
    for name, value in s3_server.env().items():  # the client an array child builds itself
        monkeypatch.setenv(name, value)
    assert read_manifest_row(uri, 2) == ("/data/local clip.mp4", 86)
    with pytest.raises(SettingsError, match="missing.jsonl: no such object"):
        read_manifest_row(f"s3://{s3_server.bucket}/manifests/missing.jsonl", 0, client)
    with pytest.raises(SettingsError, match="no such bucket"):
        read_manifest_row("s3://no-such-bucket-here/m.jsonl", 0, client)
    with pytest.raises(AccessDenied, match="access denied"):
        read_manifest_row(uri, 0, s3_server.client(secret_key="wrong-" + s3_server.secret_key))


def test_unreachable_s3_is_retryable(monkeypatch):
    from analyzer.source.s3 import S3Config, make_s3_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    client = make_s3_client("http://127.0.0.1:9", S3Config(connect_timeout_s=1, max_attempts=1))
    with pytest.raises(InfrastructureError, match="unreachable .*Could not connect"):
        read_manifest_row("s3://b/m.jsonl", 0, client)


@pytest.mark.parametrize("uri", ["s3://bucket", "s3:///key", "http://x/y", "s3://a b/k", "s3://b/k\x00"])
def test_bad_s3_uri(uri: str):
    with pytest.raises(SettingsError):
        split_s3_uri(uri)
