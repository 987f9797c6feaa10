"""Issue 19 item 5: inputs and settings that were exit 9 (a bug, with a traceback) or were refused
wrongly get their documented code, in one line, before the analysis runs.

The tests run as root, which may write in any folder whatever its mode bits, so an unwritable
folder is made two ways: a path under a regular file (always), and a read-only tmpfs mount
(where this machine lets the tests mount one; skipped elsewhere).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer import cli, settings
from analyzer.errors import ExitCode, SettingsError
from analyzer.events import AnalysisResult


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"bytes the analysis step would read")
    return path


class Recorder:
    """The analysis step; records that it ran (it must not, when a check fails first)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path, s: settings.Settings, control: object) -> AnalysisResult:
        self.calls += 1
        return AnalysisResult(events=[], frames=1, faces=0)


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch, capfd, lock_dir: Path) -> tuple[int, list[dict], Recorder]:
    monkeypatch.setenv("ANALYZER_LOG_FORMAT", "json")
    monkeypatch.setenv("ANALYZER_LOCK_DIR", str(lock_dir))
    analysis = Recorder()
    code = cli.main(["run", *argv], analyze=analysis)
    err = capfd.readouterr().err
    assert "Traceback" not in err
    return code, [json.loads(line) for line in err.splitlines() if line.startswith("{")], analysis


def _one_error(lines: list[dict]) -> dict:
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert "exc_info" not in error
    return error


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder on a read-only tmpfs mount (root cannot write there either)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# --- the input -----------------------------------------------------------------------------------


def test_a_symlink_loop_as_input_is_input_not_found(tmp_path, monkeypatch, capfd):
    loop = tmp_path / "loop.mp4"
    loop.symlink_to(loop)
    code, lines, analysis = _run([str(loop), "--video-id", "3"], monkeypatch, capfd, tmp_path)
    assert code == ExitCode.INPUT_NOT_FOUND and analysis.calls == 0
    error = _one_error(lines)
    assert str(loop) in error["message"] and "symbolic links" in error["message"]


def test_a_path_through_a_regular_file_as_input_is_input_not_found(video, monkeypatch, capfd):
    code, lines, _ = _run([str(video / "x.mp4"), "--video-id", "3"], monkeypatch, capfd, video.parent)
    assert code == ExitCode.INPUT_NOT_FOUND
    assert "Not a directory" in _one_error(lines)["message"]


# --- the decoder ---------------------------------------------------------------------------------

needs_no_nvdec = pytest.mark.skipif(
    importlib.util.find_spec("PyNvVideoCodec") is not None, reason="PyNvVideoCodec is installed here"
)


@needs_no_nvdec
def test_nvdec_without_pynvvideocodec_is_a_settings_error_before_the_analysis(video, monkeypatch, capfd):
    code, lines, analysis = _run(
        [str(video), "--video-id", "3", "--decoder", "nvdec"], monkeypatch, capfd, video.parent
    )
    assert code == ExitCode.BAD_SETTINGS and analysis.calls == 0
    error = _one_error(lines)
    assert "--decoder" in error["message"] and "PyNvVideoCodec" in error["message"]


@needs_no_nvdec
def test_the_decoder_variable_names_itself_when_nvdec_is_missing():
    args = settings.argparse.Namespace()
    with pytest.raises(SettingsError, match="ANALYZER_DECODER: nvdec needs PyNvVideoCodec"):
        settings.resolve(args, {"VideoKey": "k", "video_id": "1", "ANALYZER_DECODER": "nvdec"})
    for other in ("auto", "opencv", "pyav"):
        assert settings.resolve(args, {"VideoKey": "k", "video_id": "1", "ANALYZER_DECODER": other}).decoder == other


# --- the folders the run writes in ---------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--json", "--contact-sheet"])
def test_an_output_under_a_regular_file_is_refused_before_the_analysis(flag, video, monkeypatch, capfd):
    target = video / "out" / "events.json"  # video is a regular file: no folder can be made in it
    code, lines, analysis = _run([str(video), "--video-id", "3", flag, str(target)], monkeypatch, capfd, video.parent)
    assert code == ExitCode.BAD_SETTINGS and analysis.calls == 0
    error = _one_error(lines)
    assert flag in error["message"] and "cannot write in" in error["message"]


@pytest.mark.parametrize("flag", ["--json", "--contact-sheet"])
def test_an_output_on_a_read_only_mount_is_refused_before_the_analysis(flag, video, read_only_dir, monkeypatch, capfd):
    target = read_only_dir / "out.png"
    code, lines, analysis = _run([str(video), "--video-id", "3", flag, str(target)], monkeypatch, capfd, video.parent)
    assert code == ExitCode.BAD_SETTINGS and analysis.calls == 0
    assert "Read-only file system" in _one_error(lines)["message"]


def test_an_output_that_is_a_folder_is_refused(video, monkeypatch, capfd):
    code, lines, analysis = _run(
        [str(video), "--video-id", "3", "--json", str(video.parent)], monkeypatch, capfd, video.parent
    )
    assert code == ExitCode.BAD_SETTINGS and analysis.calls == 0
    assert "is a directory" in _one_error(lines)["message"]


def test_a_missing_output_folder_is_made_and_written(video, monkeypatch, capfd):
    target = video.parent / "new" / "deeper" / "events.json"
    code, _, analysis = _run([str(video), "--video-id", "3", "--json", str(target)], monkeypatch, capfd, video.parent)
    assert code == ExitCode.OK and analysis.calls == 1
    assert json.loads(target.read_text())["frames"] == 1


def test_a_lock_dir_that_is_a_file_is_a_settings_error(video, monkeypatch, capfd):
    code, lines, analysis = _run([str(video), "--video-id", "3"], monkeypatch, capfd, lock_dir=video)
    assert code == ExitCode.BAD_SETTINGS and analysis.calls == 0
    assert "ANALYZER_LOCK_DIR" in _one_error(lines)["message"]


def test_a_read_only_lock_dir_is_a_settings_error(video, read_only_dir, monkeypatch, capfd):
    code, lines, analysis = _run([str(video), "--video-id", "3"], monkeypatch, capfd, lock_dir=read_only_dir)
    assert code == ExitCode.BAD_SETTINGS and analysis.calls == 0
    error = _one_error(lines)
    assert "ANALYZER_LOCK_DIR" in error["message"] and "Read-only file system" in error["message"]


# --- DATABASE_URL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@h1:1,h2:5432/db",
        "postgresql://u:p@h1,h2:5433/db",
        "postgresql://u:p@[::1]:5432,h2/db?target_session_attrs=read-write",
        "postgresql://u:p@h:65535/db",
    ],
)
def test_a_libpq_multi_host_url_is_accepted(url):
    assert settings.resolve(settings.argparse.Namespace(), {"VideoKey": "k", "video_id": "1", "DATABASE_URL": url})


@pytest.mark.parametrize(
    "url,port",
    [
        ("postgresql://u:p@h:0/db", "'0'"),
        ("postgresql://u:p@h:65536/db", "'65536'"),
        ("postgresql://u:p@h1:1,h2:x/db", "'x'"),
        ("postgresql://u@h/db?port=0", "'0'"),
    ],
)
def test_a_port_that_cannot_be_is_a_settings_error(url, port):
    with pytest.raises(SettingsError) as info:
        settings.resolve(settings.argparse.Namespace(), {"VideoKey": "k", "video_id": "1", "DATABASE_URL": url})
    assert f"DATABASE_URL: has an invalid port {port}" in str(info.value)
