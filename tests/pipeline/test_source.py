"""analyzer.source.inputs against local files and a real SeaweedFS S3 server on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from analyzer.errors import AccessDenied, ExitCode, InfrastructureError, InputNotFound, SettingsError
from analyzer.files import FileChanged, sha256_of_regular_file
from analyzer.source.inputs import fetch_input, head_input, parse_input, stat_input
from analyzer.source.s3 import S3Config, make_s3_client
from tests.support import procs

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
    for video_key, bucket in (
        ("s3://bucket-only", None),
        ("s3://a b/k.mp4", None),
        ("k.mp4", "a b"),
        ("videos/a\x00b.mp4", "bucket"),
        ("s3://bucket/a\nb.mp4", None),
    ):
        with pytest.raises(SettingsError):
            parse_input(video_key, bucket)


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


def test_missing_key_and_bucket_are_input_not_found_and_say_which(s3_env, tmp_path: Path):
    with pytest.raises(InputNotFound, match="no-such-key.mp4: no such object") as info:
        head_input("videos/no-such-key.mp4", s3_env.bucket, s3_env.endpoint_url)
    assert "bucket" not in str(info.value).replace(s3_env.bucket, "")
    with pytest.raises(InputNotFound, match="no-such-key.mp4: no such object"):
        with fetch_input("videos/no-such-key.mp4", s3_env.bucket, s3_env.endpoint_url, tmp_path):
            pass
    # A HEAD's 404 cannot tell a missing bucket from a missing key: the message must.
    with pytest.raises(InputNotFound, match="no such bucket") as info:
        head_input("s3://no-such-bucket-4711/a.mp4", None, s3_env.endpoint_url)
    assert "no such object" not in str(info.value)
    with pytest.raises(InputNotFound, match="no such bucket"):
        with fetch_input("a.mp4", "no-such-bucket-4711", s3_env.endpoint_url, tmp_path):
            pass
    assert list(tmp_path.iterdir()) == []


def test_object_replaced_during_download_is_retryable(s3_env, tmp_path: Path):
    """s3transfer's ranged GETs carry IfMatch: a replaced object fails them (S3DownloadFailedError)."""
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024))
    key = _upload_key()
    s3_env.upload(source, key)
    client = make_s3_client(s3_env.endpoint_url, FAST)
    replaced = threading.Event()

    def replace_after_first_part(params, **_):
        if "Range" in params and not replaced.is_set():  # the first ranged GET is on its way
            replaced.set()
            s3_env.client().put_object(Bucket=s3_env.bucket, Key=key, Body=b"a new upload")

    client.meta.events.register("before-parameter-build.s3.GetObject", replace_after_first_part)
    config = S3Config(multipart_threshold=5 * 1024 * 1024, part_size=5 * 1024 * 1024, max_concurrency=1)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(InfrastructureError, match="changed") as info:
        with fetch_input(key, s3_env.bucket, None, workdir, config=config, client=client):
            pytest.fail("a replaced object must not be analysed")
    assert replaced.is_set() and info.value.exit_code is ExitCode.RETRYABLE
    assert list(workdir.iterdir()) == []


def test_key_s3_refuses_as_invalid_is_bad_input_not_retried(s3_env):
    with pytest.raises(InputNotFound, match=r"refused the key as invalid \(InvalidRequest\)") as info:
        head_input("../../etc/passwd", s3_env.bucket, s3_env.endpoint_url, config=FAST)
    assert not info.value.exit_code.retryable


@pytest.mark.integration
@pytest.mark.parametrize(
    ("video_key", "bucket", "code", "says"),
    [
        ("../../etc/passwd", "session", ExitCode.INPUT_NOT_FOUND, "refused the key"),
        ("videos/a.mp4", "a b", ExitCode.BAD_SETTINGS, "S3_BUCKET"),
        ("s3://no-such-bucket-4711/a.mp4", None, ExitCode.INPUT_NOT_FOUND, "no such bucket"),
    ],
)
def test_worker_exit_code_for_bad_s3_input(s3_env, tmp_path: Path, video_key, bucket, code, says):
    env = procs.worker_env(
        **{k: v for k, v in s3_env.env().items() if k != "S3_BUCKET"}, ANALYZER_LOCK_DIR=str(tmp_path)
    )
    if bucket:
        env["S3_BUCKET"] = s3_env.bucket if bucket == "session" else bucket
    done = procs.run(["run", video_key, "--video-id", "1"], env, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr[-2000:]
    assert says in json.loads(lines[-1])["message"] and "Traceback" not in done.stderr


# --- local inputs: regular files only, read no further than their size ---------------------------


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_worker_refuses_a_local_input_that_is_not_a_regular_file(tmp_path: Path, kind: str):
    path = Path(kind)
    if kind == "fifo":
        path = tmp_path / "input.mp4"
        os.mkfifo(path)
    env = procs.worker_env(ANALYZER_LOCK_DIR=str(tmp_path))
    started = time.monotonic()
    done = procs.run(["run", str(path), "--video-id", "1"], env, timeout=60)
    assert done.returncode == ExitCode.INPUT_NOT_FOUND, done.stderr[-2000:]
    [line] = done.stderr.strip().splitlines()
    assert "not a regular file" in json.loads(line)["message"]
    assert time.monotonic() - started < 30


def test_hashing_reads_no_more_than_the_size_the_file_had():
    # /proc files say 0 bytes but have content: like a file that grows while it is hashed
    with pytest.raises(FileChanged, match="size changed"):
        sha256_of_regular_file("/proc/self/status")
    with pytest.raises(ValueError, match="character device"):
        sha256_of_regular_file("/dev/zero")


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
