"""PyAV reader: stream timestamps; packets whose frame the sampler will drop are sent with
``skip_frame=NONREF``, so non-reference frames (B-frames) that are not needed are never decoded."""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.errors import UndecodableVideo
from analyzer.video.probe import VideoInfo
from analyzer.video.readers.base import DecodeStats, NumpyCollate, StopFlag, rotate_bgr
from analyzer.video.sampling import TimestampSampler

logger = logging.getLogger(__name__)

PYAV_LOOKAHEAD_PACKETS = 16  # packets read ahead so B-frames' timestamps are known before deciding


class _SkipPlanner:
    """Decides, from packet timestamps alone, which packets' frames the sampler may keep.

    A frame is needed when its timestamp is the smallest seen so far in its sampling slot. The
    true first frame of each slot is therefore always decoded; frames decided "needed" too early
    (before a B-frame with a smaller timestamp was read) only cost a decode.
    """

    def __init__(self, sampler: TimestampSampler) -> None:
        self._sampler = sampler
        self._first: dict[int, int] = {}

    def note(self, ts_ms: int) -> None:
        slot = self._sampler.slot(ts_ms)
        if ts_ms < self._first.get(slot, ts_ms + 1):
            self._first[slot] = ts_ms

    def needed(self, ts_ms: int) -> bool:
        return self._first.get(self._sampler.slot(ts_ms)) == ts_ms


class _FrameNumbers:
    """0-based presentation index of a pts among every packet's pts, skipped frames included."""

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._passed = 0

    def note(self, pts: int) -> None:
        heapq.heappush(self._heap, pts)

    def number(self, pts: int) -> int:
        while self._heap and self._heap[0] < pts:
            heapq.heappop(self._heap)
            self._passed += 1
        if self._heap and self._heap[0] == pts:
            heapq.heappop(self._heap)
        number = self._passed
        self._passed += 1
        return number


class PyAVReader(NumpyCollate):
    """PyAV (FFmpeg): stream timestamps, frame threads, ``skip_frame`` for unneeded frames."""

    name = "pyav"

    def __init__(self, path: Path, info: VideoInfo, *, threads: int = 0, name: str | None = None) -> None:
        import av

        self.info = info
        self._name = name or path.name
        try:
            self._container = av.open(str(path))
        except av.error.FFmpegError as exc:
            raise UndecodableVideo(f"video {self._name}: PyAV cannot open it") from exc
        self._stream = self._container.streams.video[0]
        ctx = self._stream.codec_context
        ctx.thread_type = "AUTO"
        if threads > 0:
            ctx.thread_count = threads

    def frames(
        self, sampler: TimestampSampler, stats: DecodeStats, stop: StopFlag
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        import av

        planner = None if sampler.every_frame else _SkipPlanner(sampler)
        numbers = _FrameNumbers()
        pending: deque[Any] = deque()
        packets = 0
        try:
            for packet in self._container.demux(self._stream):
                if stop.is_set():
                    return
                if packet.size == 0:
                    continue  # the demuxer's end marker; flushed below
                packets += 1
                if packet.pts is not None:
                    numbers.note(packet.pts)
                    if planner is not None:
                        planner.note(self.info.timestamp_ms(packet.pts))
                pending.append(packet)
                if len(pending) > PYAV_LOOKAHEAD_PACKETS:
                    yield from self._decode(pending.popleft(), planner, numbers, sampler, stats)
            while pending and not stop.is_set():
                yield from self._decode(pending.popleft(), planner, numbers, sampler, stats)
            if not stop.is_set():
                yield from self._decode(None, planner, numbers, sampler, stats)
        except av.error.FFmpegError as exc:
            logger.warning("video %s: demuxing stopped early: %s", self._name, exc)
        finally:
            stats.skipped = max(0, packets - stats.decoded - stats.corrupt)

    def _decode(
        self,
        packet: Any,
        planner: _SkipPlanner | None,
        numbers: _FrameNumbers,
        sampler: TimestampSampler,
        stats: DecodeStats,
    ) -> Iterator[tuple[int, int, np.ndarray]]:
        import av

        ctx = self._stream.codec_context
        if packet is not None and planner is not None and packet.pts is not None:
            ctx.skip_frame = "DEFAULT" if planner.needed(self.info.timestamp_ms(packet.pts)) else "NONREF"
        try:
            decoded = ctx.decode(packet)
        except av.error.FFmpegError as exc:
            stats.corrupt += 1
            logger.debug("video %s: packet does not decode: %s", self._name, exc)
            return
        for frame in decoded:
            if frame.pts is None:
                stats.corrupt += 1
                continue
            number = numbers.number(frame.pts)
            ts_ms = self.info.timestamp_ms(frame.pts)
            stats.position_ms = ts_ms
            if frame.is_corrupt:
                stats.corrupt += 1
                continue
            stats.decoded += 1
            if not sampler.due(ts_ms):
                continue
            image = rotate_bgr(frame.to_ndarray(format="bgr24"), self.info.rotation)
            if self._fits(image, stats, number):
                sampler.keep(ts_ms)
                yield number, ts_ms, image

    def close(self) -> None:
        self._container.close()
