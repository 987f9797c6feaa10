"""Fixtures of the unit tests: a forced exit that returns instead of ending the test process."""

from __future__ import annotations

import os
import threading

import pytest

from tests.support.exits import Exits


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> Exits:
    codes = Exits()
    monkeypatch.setattr(os, "_exit", codes)
    monkeypatch.setattr(threading, "excepthook", codes.errors.append)
    return codes
