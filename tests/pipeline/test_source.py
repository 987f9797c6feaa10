"""analyzer.source.inputs against local files and a real SeaweedFS S3 server on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.errors import AccessDenied, ExitCode, InfrastructureError, InputNotFound, SettingsError
from analyzer.files import FileChanged, sha256_of_regular_file
from analyzer.source.inputs import fetch_input, head_input, parse_input, stat_input
from analyzer.source.s3 import S3Config, default_s3_client, head_object, make_s3_client
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
def client(s3_env):
    """A client of its own (tests register event hooks on it) that gives up fast."""
    return make_s3_client(s3_env.endpoint_url, FAST)


def _put(s3_env, body: bytes) -> str:
    """A new object holding ``body``; its key."""
    key = _upload_key()
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=key, Body=body)
    return key


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
    with pytest.raises(SettingsError) as info:
        parse_input("videos/a\tb.mp4", "uploads")
    assert str(info.value) == "input: S3 key 'videos/a\\tb.mp4' contains control characters"


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
    head = stat_input(uploaded, s3_env.bucket, s3_env.endpoint_url)
    assert (head.fingerprint, head.size, str(head.ref)) == (expected, size, f"s3://{s3_env.bucket}/{uploaded}")


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


def test_zero_byte_object_is_let_through(s3_env, tmp_path: Path):
    key = _put(s3_env, b"")
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


def test_object_replaced_during_download_is_retryable(s3_env, tmp_path: Path, client):
    """s3transfer's ranged GETs carry IfMatch: a replaced object fails them (S3DownloadFailedError)."""
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * 1024 * 1024))
    key = _upload_key()
    s3_env.upload(source, key)
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


# --- what the download asks S3 for, and what it checks afterwards -------------------------------


def _recorder(client, event: str) -> list[tuple[str, dict]]:
    calls: list[tuple[str, dict]] = []
    client.meta.events.register(event, lambda params, **_: calls.append((threading.current_thread().name, params)))
    return calls


def test_large_object_is_fetched_in_parts_of_the_configured_size_on_worker_threads(
    s3_env, tmp_path: Path, caplog, client
):
    source = tmp_path / "six.bin"
    source.write_bytes(os.urandom(6 * 1024 * 1024))
    key = _upload_key()
    s3_env.upload(source, key)
    gets = _recorder(client, "before-parameter-build.s3.GetObject")
    mib = 1024 * 1024
    config = S3Config(multipart_threshold=5 * mib, part_size=2 * mib, max_concurrency=2)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with caplog.at_level("INFO", logger="analyzer.source.inputs"):
        with fetch_input(key, s3_env.bucket, None, workdir, config=config, client=client) as local:
            assert local.path.read_bytes() == source.read_bytes()
            assert local.size == source.stat().st_size
    assert sorted(params["Range"] for _, params in gets) == [
        f"bytes=0-{2 * mib - 1}",
        f"bytes={2 * mib}-{4 * mib - 1}",
        f"bytes={4 * mib}-",  # the last part: to the end
    ]
    threads = {name for name, _ in gets}
    assert threading.main_thread().name not in threads and len(threads) <= 2
    assert f"input s3://{s3_env.bucket}/{key}: downloading {6 * mib} bytes" in caplog.messages


def test_object_below_the_threshold_is_one_plain_get(s3_env, uploaded: str, tmp_path: Path, client):
    gets = _recorder(client, "before-parameter-build.s3.GetObject")
    with fetch_input(uploaded, s3_env.bucket, None, tmp_path, client=client):
        pass
    assert len(gets) == 1 and "Range" not in gets[0][1]


def test_object_deleted_before_the_download_names_the_input(s3_env, uploaded: str, tmp_path: Path, client):
    client.meta.events.register(
        "before-parameter-build.s3.GetObject",
        lambda **_: s3_env.client().delete_object(Bucket=s3_env.bucket, Key=uploaded),
    )
    with pytest.raises(InputNotFound) as info:
        with fetch_input(uploaded, s3_env.bucket, None, tmp_path, client=client):
            pytest.fail("a deleted object must not be analysed")
    assert str(info.value).startswith(f"input s3://{s3_env.bucket}/{uploaded}: no such object")
    assert list(tmp_path.iterdir()) == []


def test_object_replaced_right_after_the_download_is_refused(s3_env, tmp_path: Path, client):
    key = _put(s3_env, b"first upload")
    client.meta.events.register(
        "after-call.s3.GetObject",
        lambda **_: s3_env.client().put_object(Bucket=s3_env.bucket, Key=key, Body=b"second upload"),
    )
    with pytest.raises(InfrastructureError, match="changed since it was checked") as info:
        with fetch_input(key, s3_env.bucket, None, tmp_path, client=client):
            pytest.fail("a replaced object must not be analysed")
    assert info.value.exit_code is ExitCode.RETRYABLE and list(tmp_path.iterdir()) == []


def test_a_download_of_the_wrong_size_is_refused(s3_env, uploaded: str, tmp_path: Path, client):
    heads = _recorder(client, "before-parameter-build.s3.HeadObject")

    def grow_the_part_file(**_):
        if len(heads) == 3:  # ours, s3transfer's, and the check after the download
            for part in tmp_path.iterdir():
                with part.open("ab") as file:
                    file.write(b"x")

    client.meta.events.register("before-call.s3.HeadObject", grow_the_part_file)
    size = head_input(uploaded, s3_env.bucket, None, client=client)
    size = int(size.rsplit(":", 1)[1])
    heads.clear()
    with pytest.raises(InfrastructureError) as info:
        with fetch_input(uploaded, s3_env.bucket, None, tmp_path, client=client):
            pytest.fail("a download of the wrong size must not be analysed")
    assert str(info.value) == f"input s3://{s3_env.bucket}/{uploaded}: downloaded {size + 1} bytes, expected {size}"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB file system (tmpfs), so a download can fill it up."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_an_input_too_big_for_the_disk_is_retryable_before_any_get(s3_env, small_disk: Path, client):
    key = _put(s3_env, b"x" * ((1 << 20) + 1))
    gets = _recorder(client, "before-parameter-build.s3.GetObject")
    with pytest.raises(InfrastructureError) as info:
        with fetch_input(key, s3_env.bucket, None, small_disk, client=client):
            pytest.fail("nothing fits")
    assert str(info.value) == (
        f"input s3://{s3_env.bucket}/{key}: 1048577 bytes do not fit in the 1048576 bytes free in {small_disk}"
    )
    assert info.value.exit_code is ExitCode.RETRYABLE and gets == [] and list(small_disk.iterdir()) == []


def test_an_input_the_size_of_the_free_space_downloads(s3_env, small_disk: Path, client):
    key = _put(s3_env, b"x" * (1 << 20))
    with fetch_input(key, s3_env.bucket, None, small_disk, client=client) as local:
        assert local.path.stat().st_size == local.size == 1 << 20


def test_a_disk_that_fills_up_during_the_download_is_retryable(s3_env, uploaded: str, small_disk: Path, client):

    def fill_the_disk(**_):  # another process takes the space after the check
        with (small_disk / "filler").open("wb") as filler:
            filler.write(b"x" * (small_disk.stat().st_blksize * 200))

    client.meta.events.register("before-call.s3.GetObject", fill_the_disk)
    with pytest.raises(InfrastructureError, match="the local disk filled up during the download") as info:
        with fetch_input(uploaded, s3_env.bucket, None, small_disk, client=client):
            pytest.fail("a partial download must not be analysed")
    assert info.value.exit_code is ExitCode.RETRYABLE
    assert [p.name for p in small_disk.iterdir()] == ["filler"]


def test_a_missing_object_is_asked_again_with_a_one_byte_get(s3_env, client):
    gets = _recorder(client, "before-parameter-build.s3.GetObject")
    what = f"manifest s3://{s3_env.bucket}/missing.csv"
    with pytest.raises(SettingsError, match="^manifest s3://.*/missing.csv: no such object \\(NoSuchKey\\)$"):
        head_object(client, s3_env.bucket, "missing.csv", what, not_found=SettingsError)
    assert [params["Range"] for _, params in gets] == ["bytes=0-0"]


def test_an_object_that_appears_between_head_and_get_is_retried(s3_env, client):
    key = _upload_key()

    def upload_now(**_) -> None:  # a before-call handler's return value would replace the response
        s3_env.client().put_object(Bucket=s3_env.bucket, Key=key, Body=b"late upload")

    client.meta.events.register("before-call.s3.GetObject", upload_now)
    what = f"input s3://{s3_env.bucket}/{key}"
    with pytest.raises(InfrastructureError) as info:
        head_object(client, s3_env.bucket, key, what)
    assert str(info.value) == f"{what}: refused at first, then found; retry"


def test_head_input_uses_the_client_and_config_it_is_given(s3_env, uploaded: str):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    assert head_input(uploaded, s3_env.bucket, closed_url, client=s3_env.client()).startswith("etag:")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = S3Config(connect_timeout_s=1.0, read_timeout_s=0.2, max_attempts=1)
        started = time.monotonic()
        with pytest.raises(InfrastructureError, match="unreachable"):
            head_input(uploaded, s3_env.bucket, f"http://127.0.0.1:{silent.getsockname()[1]}", config=config)
    # The default config's first read alone waits 60 s; 0.2 s reads end in well under 30 s even on a
    # machine a few times slower than usual (CI once took 6.7 s: client set-up plus a retry's backoff).
    assert time.monotonic() - started < 30


def test_a_local_input_changed_since_it_was_checked_is_retried(hamilton_video: Path):
    with pytest.raises(InfrastructureError) as info:
        with fetch_input(str(hamilton_video), None, fingerprint="sha256:00:size:1"):
            pytest.fail("a changed input must not be analysed")
    fingerprint = head_input(str(hamilton_video), None)
    assert (
        str(info.value) == f"input {hamilton_video}: changed since it was checked (sha256:00:size:1 -> {fingerprint})"
    )
    assert info.value.exit_code is ExitCode.RETRYABLE


@pytest.mark.parametrize(
    ("path", "error", "says"),
    [
        ("/proc/self/status", InfrastructureError, "input /proc/self/status: size changed while it was read"),
        ("/dev/zero", InputNotFound, "input /dev/zero: not a regular file (a character device)"),
    ],
)
def test_a_local_input_that_is_no_regular_file_is_named(path: str, error, says: str):
    with pytest.raises(error) as info:
        head_input(path, None)
    assert str(info.value).startswith(says), str(info.value)


# --- the client: region, timeouts, retries, addressing -------------------------------------------


def test_the_client_carries_the_configured_timeouts_and_retries(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-2")
    client = make_s3_client(
        "http://127.0.0.1:8333", S3Config(connect_timeout_s=1.5, read_timeout_s=7.0, max_attempts=3)
    )
    config = client.meta.config
    assert (client.meta.endpoint_url, client.meta.region_name) == ("http://127.0.0.1:8333", "eu-west-2")
    assert (config.connect_timeout, config.read_timeout) == (1.5, 7.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}  # 3 requests: the first and 2 retries
    assert config.s3 == {"addressing_style": "path"}
    assert make_s3_client().meta.config.retries == {
        "mode": "standard",
        "total_max_attempts": 5,
    }


def test_the_region_comes_from_the_environment_then_the_session(monkeypatch: pytest.MonkeyPatch):
    import boto3

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    aws = make_s3_client()
    assert aws.meta.region_name == "us-east-1" and aws.meta.config.s3 in (None, {})
    session = boto3.session.Session(region_name="ap-south-1")
    assert make_s3_client(session=session).meta.region_name == "ap-south-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    assert make_s3_client(session=session).meta.region_name == "eu-central-1"
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    assert make_s3_client(session=session).meta.region_name == "eu-north-1"


def test_the_worker_client_honours_s3_endpoint_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:8333")
    assert default_s3_client().meta.endpoint_url == "http://127.0.0.1:8333"
    monkeypatch.setenv("S3_ENDPOINT_URL", "")
    assert default_s3_client().meta.endpoint_url == "https://s3.us-east-1.amazonaws.com"
