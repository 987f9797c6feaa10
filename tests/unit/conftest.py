"""Fixtures of the unit tests: a forced exit that returns instead of ending the test process, and
the signal watcher thread of the ``StopSignals`` a test enters."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import pytest

from tests.support.exits import Exits


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
