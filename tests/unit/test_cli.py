"""``analyzer.cli.main``: each kind of failure ends in its documented exit code and says why once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer import cli
from analyzer.errors import ExitCode, InputRejected
from analyzer.events import AnalysisResult
from analyzer.settings import Settings


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"bytes the failing analysis never reads")
    return path


def _run(video: Path, analyze, monkeypatch, capfd) -> tuple[int, list[dict]]:
    monkeypatch.setenv("ANALYZER_LOG_FORMAT", "json")
    monkeypatch.setenv("ANALYZER_LOCK_DIR", str(video.parent))
    code = cli.main(["run", str(video), "--video-id", "7", "--json", str(video.parent / "out.json")], analyze=analyze)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
    return code, lines


def _raising(exc: BaseException):
    def analyze(path: Path, s: Settings, control: object) -> AnalysisResult:
        raise exc

    return analyze


def test_a_bug_exits_9_with_its_traceback_never_retried(video, monkeypatch, capfd):
    code, lines = _run(video, _raising(KeyError("boxes")), monkeypatch, capfd)
    assert code == ExitCode.INTERNAL_ERROR == 9 and not ExitCode(code).retryable
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert error["message"] == "internal error: KeyError: 'boxes'" and error["action"] == "error"
    assert "Traceback" in error["exc_info"] and error["video_id"] == 7
    assert not (video.parent / "out.json").exists()


def test_an_analyzer_error_exits_with_its_own_code_in_one_line(video, monkeypatch, capfd):
    code, lines = _run(video, _raising(InputRejected("too long: 7 h")), monkeypatch, capfd)
    assert code == ExitCode.INPUT_REJECTED
    [error] = [line for line in lines if line["level"] == "ERROR"]
    assert error["message"] == "too long: 7 h" and error["exit_code"] == int(ExitCode.INPUT_REJECTED)
    assert "exc_info" not in error


def test_a_keyboard_interrupt_exits_as_interrupted(video, monkeypatch, capfd):
    code, lines = _run(video, _raising(KeyboardInterrupt()), monkeypatch, capfd)
    assert code == ExitCode.INTERRUPTED
    assert [line["message"] for line in lines if line["level"] == "ERROR"] == ["interrupted"]
