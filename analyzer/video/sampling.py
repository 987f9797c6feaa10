"""Which frames are kept: the first of every ``1 / sample_fps`` seconds of presentation time."""

from __future__ import annotations

import math
from fractions import Fraction


class TimestampSampler:
    """Keeps the first frame of every ``1 / sample_fps`` seconds of presentation time.

    Slot ``k`` covers ``[k / sample_fps, (k + 1) / sample_fps)`` s; ``sample_fps == 0`` keeps every
    frame. The decision depends only on the timestamps, so backends that see the same
    timestamps keep the same frames.
    """

    def __init__(self, sample_fps: float) -> None:
        if sample_fps < 0 or not math.isfinite(sample_fps):
            raise ValueError(f"sample_fps must be >= 0, got {sample_fps}")
        self.rate = Fraction(sample_fps).limit_denominator(1000) if sample_fps > 0 else None
        self._last_slot: int | None = None

    @property
    def every_frame(self) -> bool:
        return self.rate is None

    def slot(self, ts_ms: int) -> int:
        if self.rate is None:
            return ts_ms
        return (ts_ms * self.rate.numerator) // (1000 * self.rate.denominator)

    def due(self, ts_ms: int) -> bool:
        """True when a frame at ``ts_ms`` would be kept (call ``keep`` once it is)."""
        return self.rate is None or self._last_slot is None or self.slot(ts_ms) > self._last_slot

    def keep(self, ts_ms: int) -> None:
        self._last_slot = self.slot(ts_ms)
