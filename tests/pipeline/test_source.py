"""analyzer.source against local files and a real SeaweedFS S3 server on loopback."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from analyzer.errors import AccessDenied, ExitCode, InfrastructureError, InputNotFound
from analyzer.source import S3Config, fetch_input, head_input, parse_input, stat_input

FAST = S3Config(connect_timeout_s=0.5, read_timeout_s=5.0, max_attempts=2)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _upload_key() -> str:
    # The shape of a real upload key: a date path and a uuid-prefixed file name.
    return f"videos/2025/12/29/{uuid.uuid4()}_clip name.mp4"


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    """The worker's view: credentials and region from the environment, like in AWS Batch."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def uploaded(s3_env, hamilton_video: Path) -> str:
    key = _upload_key()
    s3_env.upload(hamilton_video, key)
    return key


def test_parse_input_forms():
    assert parse_input("s3://bucket/a/b.mp4", None) == parse_input("a/b.mp4", "bucket")
    uri = parse_input("s3://other/a/b.mp4", "bucket")
    assert (uri.bucket, uri.key) == ("other", "a/b.mp4")
    assert parse_input("/tmp/x.mp4", None).path == Path("/tmp/x.mp4")
    with pytest.raises(InputNotFound):
        parse_input("s3://bucket-only", None)


def test_local_file_fingerprint_is_sha256_and_size(hamilton_video: Path):
    digest = hashlib.sha256(hamilton_video.read_bytes()).hexdigest()
    size = hamilton_video.stat().st_size
    expected = f"sha256:{digest}:size:{size}"
    assert head_input(str(hamilton_video), None) == expected
    with fetch_input(str(hamilton_video), None, None, None) as local:
        assert (local.path, local.fingerprint, local.size) == (hamilton_video, expected, size)
    assert hamilton_video.exists()  # a local input is never deleted


def test_missing_local_file_is_input_not_found(tmp_path: Path):
    with pytest.raises(InputNotFound, match="no such file") as info:
        head_input(str(tmp_path / "nope.mp4"), None)
    assert info.value.exit_code is ExitCode.INPUT_NOT_FOUND
    with pytest.raises(InputNotFound, match="directory"):
        with fetch_input(str(tmp_path), None, None, None):
            pass


def test_s3_fingerprint_is_etag_and_size(s3_env, uploaded: str, hamilton_video: Path):
    size = hamilton_video.stat().st_size
    expected = f"etag:{_md5(hamilton_video)}:size:{size}"
    assert head_input(uploaded, s3_env.bucket, s3_env.endpoint_url) == expected
    assert head_input(f"s3://{s3_env.bucket}/{uploaded}", None, s3_env.endpoint_url) == expected


def test_s3_download_to_private_temp_file_removed_afterwards(
    s3_env, uploaded: str, hamilton_video: Path, tmp_path: Path
):
    fingerprint = head_input(uploaded, s3_env.bucket, s3_env.endpoint_url)
    with fetch_input(uploaded, s3_env.bucket, s3_env.endpoint_url, tmp_path, fingerprint=fingerprint) as local:
        assert local.path.parent == tmp_path
        assert "clip" not in local.path.name and "2025" not in local.path.name
        assert local.path.read_bytes() == hamilton_video.read_bytes()
        assert local.fingerprint == fingerprint and local.size == hamilton_video.stat().st_size
        downloaded = local.path
    assert not downloaded.exists()
    assert list(tmp_path.iterdir()) == []


def test_temp_file_removed_when_the_block_fails(s3_env, uploaded: str, tmp_path: Path):
    with pytest.raises(RuntimeError):
        with fetch_input(f"s3://{s3_env.bucket}/{uploaded}", None, s3_env.endpoint_url, tmp_path):
            raise RuntimeError("analysis failed")
    assert list(tmp_path.iterdir()) == []


def test_large_object_downloads_in_concurrent_ranged_parts(s3_env, tmp_path: Path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(13 * 1024 * 1024))
    key = _upload_key()
    s3_env.upload(source, key)
    config = S3Config(multipart_threshold=5 * 1024 * 1024, part_size=5 * 1024 * 1024, max_concurrency=4)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with fetch_input(key, s3_env.bucket, s3_env.endpoint_url, workdir, config=config) as local:
        assert _md5(local.path) == _md5(source)
        assert local.size == source.stat().st_size


def test_zero_byte_object_is_let_through(s3_env, tmp_path: Path):
    key = _upload_key()
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=key, Body=b"")
    with fetch_input(key, s3_env.bucket, s3_env.endpoint_url, tmp_path) as local:
        assert local.size == 0 and local.path.stat().st_size == 0
        assert local.fingerprint.endswith(":size:0")


def test_changed_object_is_refused(s3_env, uploaded: str, tmp_path: Path):
    fingerprint = head_input(uploaded, s3_env.bucket, s3_env.endpoint_url)
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=uploaded, Body=b"another upload")
    with pytest.raises(InfrastructureError, match="changed"):
        with fetch_input(uploaded, s3_env.bucket, s3_env.endpoint_url, tmp_path, fingerprint=fingerprint):
            pass
    assert list(tmp_path.iterdir()) == []


def test_missing_key_and_bucket_are_input_not_found(s3_env, tmp_path: Path):
    with pytest.raises(InputNotFound, match="no-such-key.mp4"):
        head_input("videos/no-such-key.mp4", s3_env.bucket, s3_env.endpoint_url)
    with pytest.raises(InputNotFound, match="no-such-key.mp4"):
        with fetch_input("videos/no-such-key.mp4", s3_env.bucket, s3_env.endpoint_url, tmp_path):
            pass
    with pytest.raises(InputNotFound):
        head_input("s3://no-such-bucket-4711/a.mp4", None, s3_env.endpoint_url)
    assert list(tmp_path.iterdir()) == []


def test_wrong_credentials_are_access_denied(s3_env, uploaded: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(AccessDenied, match=uploaded) as info:
        head_input(uploaded, s3_env.bucket, s3_env.endpoint_url)
    assert not info.value.exit_code.retryable
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unknown-key")
    with pytest.raises(AccessDenied):
        stat_input(uploaded, s3_env.bucket, s3_env.endpoint_url)


def test_unreachable_endpoint_is_retryable_and_quick(s3_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(InfrastructureError, match="unreachable") as info:
        head_input("videos/a.mp4", "bucket", f"http://127.0.0.1:{closed_port}", config=FAST)
    assert info.value.exit_code.retryable
    assert time.monotonic() - started < 5.0
