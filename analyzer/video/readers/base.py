"""The one reader interface every decoding backend implements, and what readers share."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from analyzer.video.probe import VideoInfo
from analyzer.video.sampling import TimestampSampler

logger = logging.getLogger(__name__)


@dataclass
class DecodeStats:
    """Counters the producer updates while it runs; read them during or after iteration.

    ``decoded``: pictures the decoder produced; ``skipped``: frames never decoded because the
    sampler did not need them (PyAV ``skip_frame``); ``corrupt``: frames that failed to decode or
    came out flagged corrupt; ``sampled``: frames handed to the consumer; ``decode_s``: seconds the
    producer spent demuxing/decoding/converting, not waiting on the queue; ``position_ms``: the
    timestamp reached so far.
    """

    backend: str
    decoded: int = 0
    skipped: int = 0
    corrupt: int = 0
    sampled: int = 0
    batches: int = 0
    decode_s: float = 0.0
    position_ms: int = 0

    @property
    def covered(self) -> int:
        """Frames of the video the producer has gone past (decoded, skipped or corrupt)."""
        return self.decoded + self.skipped + self.corrupt

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "decoded": self.decoded,
            "skipped": self.skipped,
            "corrupt": self.corrupt,
            "sampled": self.sampled,
            "batches": self.batches,
            "decode_s": round(self.decode_s, 3),
        }


class StopFlag(Protocol):
    """Anything with ``is_set()``: a ``threading.Event`` or the batcher's combined flag."""

    def is_set(self) -> bool: ...


class FrameReader(Protocol):
    """One decoding backend: yields the sampled frames, one at a time, then batches them."""

    name: str

    def frames(self, sampler: TimestampSampler, stats: DecodeStats, stop: StopFlag) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(frame_number, timestamp_ms, image)`` for each sampled frame, in order."""
        ...

    def collate(self, images: list[Any]) -> Any:
        """Stack images into one N x H x W x 3 uint8 BGR batch."""
        ...

    def close(self) -> None: ...


def rotate_bgr(image: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate an H x W x 3 image clockwise by ``rotation`` degrees (0/90/180/270)."""
    import cv2

    codes = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
    return image if rotation == 0 else cv2.rotate(image, codes[rotation])


class NumpyCollate:
    """Stacks H x W x 3 numpy images; refuses a picture whose size differs from the probe's."""

    info: VideoInfo

    def collate(self, images: list[np.ndarray]) -> np.ndarray:
        return np.stack(images)

    def _fits(self, image: np.ndarray, stats: DecodeStats, number: int) -> bool:
        if image.shape == (self.info.height, self.info.width, 3):
            return True
        stats.corrupt += 1
        logger.warning(
            "frame %d: size %s differs from the stream's %dx%d; skipped",
            number,
            image.shape,
            self.info.width,
            self.info.height,
        )
        return False
