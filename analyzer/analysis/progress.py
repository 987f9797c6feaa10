"""Progress of a run: a tqdm bar on a terminal, a JSON log line every few seconds in the container."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger(__name__)

LOG_EVERY = 5.0  # seconds between progress log lines when not on a terminal


class Progress:
    """Tracks video time covered; ``update`` is called once per batch with the last timestamp."""

    def __init__(self, video_id: int, duration_ms: int, log_format: str = "auto") -> None:
        self.video_id = video_id
        self.duration_ms = max(duration_ms, 1)
        self.started = time.monotonic()
        self.frames = 0
        self._last_log = self.started
        self._bar = None
        if log_format != "json" and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=round(self.duration_ms / 1000, 1), unit="s video", leave=False)

    def update(self, position_ms: int, frames: int) -> None:
        self.frames += frames
        done_s = min(position_ms, self.duration_ms) / 1000
        if self._bar is not None:
            self._bar.update(round(done_s - self._bar.n, 1))
            return
        now = time.monotonic()
        if now - self._last_log < LOG_EVERY:
            return
        self._last_log = now
        elapsed = now - self.started
        fraction = done_s * 1000 / self.duration_ms
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        log.info(
            "video %s: %.0f%% analysed, %.1f frames/s, ETA %s s",
            self.video_id,
            100 * fraction,
            self.frames / elapsed,
            "?" if eta is None else round(eta),
            extra={
                "action": "progress",
                "percent": round(100 * fraction, 1),
                "frames_per_s": round(self.frames / elapsed, 2),
                "eta_s": None if eta is None else round(eta),
            },
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
