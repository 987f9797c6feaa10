"""``os._exit`` recorded instead of ending the test process (the forced exit's tests)."""

from __future__ import annotations

import threading


class Exits(list):
    """The codes ``os._exit`` was called with (here it returns instead of ending the process)."""

    def __init__(self) -> None:
        super().__init__()
        self.called = threading.Event()
        self.errors: list[threading.ExceptHookArgs] = []  # exceptions raised in the forced exit's thread

    def __call__(self, code: int) -> None:
        self.append(code)
        self.called.set()
