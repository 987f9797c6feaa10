"""OpenCV reader: ``grab()`` every frame, ``retrieve()`` (colour conversion) only the sampled ones."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from analyzer.errors import UndecodableVideo
from analyzer.video.probe import VideoInfo
from analyzer.video.readers.base import DecodeStats, NumpyCollate, StopFlag, rotate_bgr
from analyzer.video.sampling import TimestampSampler


class OpenCVReader(NumpyCollate):
    """``cv2.VideoCapture`` (FFmpeg): ``grab()`` every frame, ``retrieve()`` only sampled ones."""

    name = "opencv"

    def __init__(self, path: Path, info: VideoInfo, *, threads: int = 0, name: str | None = None) -> None:
        import cv2

        self.info = info
        self._name = name or path.name
        params = [cv2.CAP_PROP_N_THREADS, threads] if threads > 0 else []
        self._cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
        if not self._cap.isOpened():
            raise UndecodableVideo(f"video {self._name}: OpenCV cannot open it")
        # Rotation is applied here from the probe, the same way for every backend.
        self._cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)

    def frames(
        self, sampler: TimestampSampler, stats: DecodeStats, stop: StopFlag
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        import cv2

        number = -1
        while not stop.is_set() and self._cap.grab():
            number += 1
            stats.decoded += 1
            ts_ms = math.floor(self._cap.get(cv2.CAP_PROP_POS_MSEC) + 0.5)
            stats.position_ms = ts_ms
            if not sampler.due(ts_ms):
                continue
            ok, image = self._cap.retrieve()
            if not ok or image is None:
                stats.corrupt += 1
                stats.decoded -= 1
                continue
            image = rotate_bgr(image, self.info.rotation)
            if self._fits(image, stats, number):
                sampler.keep(ts_ms)
                yield number, ts_ms, image

    def close(self) -> None:
        self._cap.release()
