"""What the analysis asks of whoever runs it: a check between batches (the job's signals and lock)."""

from __future__ import annotations

from typing import Protocol


class Control(Protocol):
    """What the analysis checks between batches: raises Interrupted or LockLost to stop it."""

    def check(self) -> None: ...
