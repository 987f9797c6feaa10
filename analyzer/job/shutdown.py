"""Stopping on SIGTERM (Batch cancel, Spot reclaim) within seconds.

Python runs signal handlers only between bytecodes of the main thread, which may sit inside
one long torch call; so the signals are blocked in every thread and a watcher thread takes
them with ``sigwait``. The first SIGTERM/SIGINT sets ``stop`` (the pipeline checks it between
batches) and arms a deadline; if the run has not wound down by then, or a second signal comes,
``force`` runs (mark the run interrupted) and the process exits at once: 143, or the code ``on_force``
returns (0 when the run's final write committed just before). Transactions make that safe: a
write cut short is rolled back by the server.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import TracebackType

from analyzer.errors import ExitCode, Interrupted

log = logging.getLogger(__name__)

STOP_GRACE = 3.0  # seconds from SIGTERM to a forced exit; Batch's own kill comes after 30 s
SIGNALS = {signal.SIGTERM, signal.SIGINT}


class StopSignals:
    """Context manager owning SIGTERM/SIGINT for the duration of a run."""

    def __init__(self, grace: float = STOP_GRACE) -> None:
        self.grace = grace
        self.stop = threading.Event()
        self.on_force: Callable[[], ExitCode | None] = lambda: None  # returns the exit code, None: 143
        self._done = threading.Event()
        self._old_mask: set[int | signal.Signals] = set()

    def __enter__(self) -> StopSignals:
        self._old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        threading.Thread(target=self._watch, name="signals", daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old_mask)

    def check(self) -> None:
        """Raise Interrupted once a stop was requested."""
        if self.stop.is_set():
            raise Interrupted("stopped by signal; nothing written")

    def _watch(self) -> None:
        sig = signal.sigwait(SIGNALS)
        if self._done.is_set():
            return
        log.warning("received %s: stopping", signal.Signals(sig).name, extra={"action": "stop"})
        self.stop.set()
        timer = threading.Timer(self.grace, self._force, args=("did not stop in time",))
        timer.daemon = True
        timer.start()
        signal.sigwait(SIGNALS)
        self._force("second signal")

    def _force(self, why: str) -> None:
        if self._done.is_set():
            return
        log.warning("forced exit (%s)", why, extra={"action": "stop"})
        code = ExitCode.INTERRUPTED
        try:
            chosen = self.on_force()
            if chosen is not None:
                code = chosen
        finally:
            logging.shutdown()
            os._exit(code)
